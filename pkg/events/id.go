package events

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"
)

// crockford is the ULID alphabet: sortable as text, no ambiguous letters.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

var idGen struct {
	sync.Mutex
	ms   uint64
	rand [10]byte
}

// NewID returns prefix + "-" + a ULID: 48 bits of milliseconds then 80 bits
// that are random for a new millisecond and incremented within one, so ids
// sort by creation time as text and never repeat within a process.
func NewID(prefix string) string {
	now := uint64(time.Now().UnixMilli())
	idGen.Lock()
	if now <= idGen.ms {
		now = idGen.ms
		for i := len(idGen.rand) - 1; i >= 0; i-- {
			idGen.rand[i]++
			if idGen.rand[i] != 0 {
				break
			}
		}
	} else {
		idGen.ms = now
		_, _ = rand.Read(idGen.rand[:])
	}
	random := idGen.rand
	idGen.Unlock()
	return encodeID(prefix, now, random)
}

// IDAt returns the smallest id NewID(prefix) could return at t: every id
// made before t's millisecond sorts before it, every one made at or after
// it does not. A bound for a pass over resources in _id order that may stop
// at those created after t (the API's job retention).
func IDAt(prefix string, t time.Time) string {
	return encodeID(prefix, uint64(max(t.UnixMilli(), 0)), [10]byte{})
}

// encodeID is prefix + "-" + the ULID of ms and random.
func encodeID(prefix string, ms uint64, random [10]byte) string {
	var raw [16]byte
	binary.BigEndian.PutUint16(raw[0:2], uint16(ms>>32))
	binary.BigEndian.PutUint32(raw[2:6], uint32(ms))
	copy(raw[6:], random[:])

	out := make([]byte, 0, len(prefix)+27)
	if prefix != "" {
		out = append(out, prefix...)
		out = append(out, '-')
	}
	// 128 bits as 26 base32 digits, most significant first (the first digit carries 3 bits).
	hi := binary.BigEndian.Uint64(raw[0:8])
	lo := binary.BigEndian.Uint64(raw[8:16])
	var digits [26]byte
	for i := 25; i >= 0; i-- {
		digits[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(append(out, digits[:]...))
}
