package ferretembed

import (
	"bytes"
	"encoding/binary"
)

// Why the proxy removes maxTimeMS.
//
// The Go driver sends maxTimeMS with every command whose context has a
// deadline. FerretDB v1.24 turns a find's (and aggregate's, count's, …)
// maxTimeMS into a context canceled when the time is up, and the SQLite
// driver it named, modernc.org/sqlite v1.32, interrupts the connection from a
// goroutine when that context ends. Two faults followed, both seen on
// FerretDB's own port until pkg/embedded moved to modernc.org/sqlite v1.62
// (2026-12-02), which has neither (TestFerretDBReadsStayFreshWhenQueriesTimeOut,
// build tag storefault, asserts it now):
//
//   - stmt.query returns ctx.Err() when the context ended while it stepped
//     the statement, and drops the rows it had made without finalizing the
//     statement. The pooled SQLite connection keeps that statement active,
//     and with it a read transaction: every later read on that connection
//     sees the database as it was then (a stale read), and no statement
//     ever clears the interrupt flag again.
//   - The interrupt lands on whatever statement runs next on the
//     connection, so an unrelated read or write fails with "interrupted".
//
// A stale read of the fast path's lookup (fastpath.go) is a lost update: a
// condition that no longer holds is judged true and the write is forwarded
// with its filter reduced to {_id}; a stale client read breaks
// linearizability. TestProxyIsLinearizable found it under load.
//
// The proxy still removes it, as a guard that costs a byte search of each
// command (and a parse only of one that holds the key): without maxTimeMS
// FerretDB never cancels a command's context while the store runs (only
// when it shuts down, and its connection pool is closed then). The client
// keeps its own deadline: the driver still gives up on time; only the
// server-side limit is gone, and a read that the client abandoned runs to
// its end.

var keyMaxTimeMS = []byte("maxTimeMS\x00")

// stripMaxTimeMS returns msg without a top-level maxTimeMS field in its
// OP_MSG command document (and then without its checksum), or msg itself
// when there is none or the message is not an OP_MSG that can be parsed.
func stripMaxTimeMS(msg []byte) []byte {
	if !bytes.Contains(msg, keyMaxTimeMS) {
		return msg
	}
	body, end := opMsgBody(msg)
	if body < 0 {
		return msg
	}
	els, _, err := elements(msg[:end], body)
	if err != nil {
		return msg
	}
	for _, e := range els {
		if e.key != "maxTimeMS" {
			continue
		}
		le := binary.LittleEndian
		n, _ := int32At(msg, body)
		start := e.off - len(e.key) - 2 // type byte, key, NUL
		stop := e.off + len(e.value.Data)
		out := make([]byte, 0, end-(stop-start))
		out = append(out, msg[:start]...)
		out = append(out, msg[stop:end]...)
		le.PutUint32(out[body:], uint32(n-(stop-start)))
		le.PutUint32(out[0:], uint32(len(out)))
		le.PutUint32(out[16:], le.Uint32(msg[16:20])&^uint32(flagChecksumPresent))
		return out
	}
	return msg
}
