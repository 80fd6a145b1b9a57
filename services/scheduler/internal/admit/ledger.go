package admit

import (
	"errors"
	"fmt"
	"maps"
	"slices"
)

var (
	// ErrLeaseHeld means the id already holds a lease: granting again would admit
	// the same request twice.
	ErrLeaseHeld = errors.New("admit: lease already held")
	// ErrInvalidClaim means a claim has a negative count.
	ErrInvalidClaim = errors.New("admit: invalid claim")
)

// Ledger records which id holds which claims, so that the allocated count of every
// queue is always the sum of the live leases and each lease is released exactly
// once. The scheduler rebuilds it at start and feeds Allocated into each Snapshot.
//
// The zero value is an empty ledger ready to use. A Ledger is not safe for
// concurrent use; its owner serialises access.
type Ledger struct {
	leases    map[string][]Claim // by id
	allocated map[string]int     // by queue id; absent means 0
}

// Grant records a lease for id on claims. It fails, changing nothing, if id already
// holds a lease or a claim has a negative count. Grant does not check limits: that
// is Admit's decision, and a ledger rebuilt at start must accept leases that exceed
// a limit lowered since.
func (l *Ledger) Grant(id string, claims []Claim) error {
	if _, ok := l.leases[id]; ok {
		return fmt.Errorf("grant %q: %w", id, ErrLeaseHeld)
	}
	for _, c := range claims {
		if c.Count < 0 {
			return fmt.Errorf("grant %q: %d on queue %q: %w", id, c.Count, c.Queue, ErrInvalidClaim)
		}
	}
	if l.leases == nil {
		l.leases = make(map[string][]Claim)
		l.allocated = make(map[string]int)
	}
	// A copy, so that the caller reusing its slice cannot change what is released.
	l.leases[id] = slices.Clone(claims)
	for _, c := range claims {
		if c.Count > 0 {
			l.allocated[c.Queue] += c.Count
		}
	}
	return nil
}

// Release gives back the lease id holds. It reports whether there was one, so a
// repeated release (a redelivered event, a cleanup after a cancel) is a no-op that
// returns false.
func (l *Ledger) Release(id string) (released bool) {
	claims, ok := l.leases[id]
	if !ok {
		return false
	}
	delete(l.leases, id)
	for _, c := range claims {
		if c.Count == 0 {
			continue
		}
		if n := l.allocated[c.Queue] - c.Count; n > 0 {
			l.allocated[c.Queue] = n
		} else {
			delete(l.allocated, c.Queue)
		}
	}
	return true
}

// Allocated is the number of instances live leases hold on queue.
func (l *Ledger) Allocated(queue string) int { return l.allocated[queue] }

// Holds reports whether id holds a lease.
func (l *Ledger) Holds(id string) bool {
	_, ok := l.leases[id]
	return ok
}

// Leases returns the ids that hold a lease, sorted.
func (l *Ledger) Leases() []string { return slices.Sorted(maps.Keys(l.leases)) }
