package ferretembed

import (
	"net"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Why the proxy bounds the reads that run at once.
//
// FerretDB runs a read to its end even when its client gave up: the proxy
// strips maxTimeMS (maxtime.go), and a closed connection does not stop the
// command it was running. Under load a client's read times out, the client
// tries again, and the abandoned read keeps a core busy; on the fault
// suite's stack (docs/faults.md) ten full scans of the jobs collection ran
// at once for clients long gone and the store answered nobody.
//
// So at most readSlots of the heavy reads (readLimited) run inside FerretDB
// at once; a slot is held until FerretDB has replied, whether or not the
// client is still there, so abandoned reads count too. A read that finds no
// free slot waits, but only as long as its client may still use the answer:
// half its maxTimeMS (the time left on the client's deadline when it sent
// the command), at most readWaitMax. A read that could not start in that
// time is answered at once with MaxTimeMSExpired (50), saying the store is
// busy, and never runs: the client sees the error it would have seen after
// its timeout, sooner, and backs off, and the store finishes what it has
// instead of piling up more. Light commands (hello, ping, killCursors, …),
// reads of one document by _id (pointRead) and writes (the write lock
// serializes them) are not counted.
const (
	defaultReadSlots = 4
	readWaitMax      = 10 * time.Second
)

// readLimited are the commands that may read a whole collection.
var readLimited = map[string]bool{
	"find": true, "getMore": true, "aggregate": true, "count": true, "distinct": true,
}

// pointRead reports whether msg is a find whose filter is exactly
// {_id: <string or ObjectId>}: FerretDB looks that up in SQLite by the _id
// (EnsureIDIndex) and reads one document, so it takes no read slot. In the
// fault suite such reads were nearly all the reads, and queued behind each
// other for the four slots: a scheduler's takeover read 431 jobs one by one
// in 4.6 s (docs/faults.md).
func pointRead(cmd string, msg []byte) bool {
	if cmd != "find" {
		return false
	}
	doc := opMsgCommand(msg)
	if doc == nil {
		return false
	}
	f, ok := bsoncore.Document(doc).Lookup("filter").DocumentOK()
	if !ok {
		return false
	}
	els, err := f.Elements()
	if err != nil || len(els) != 1 || els[0].Key() != "_id" {
		return false
	}
	t := els[0].Value().Type
	return t == bsoncore.TypeString || t == bsoncore.TypeObjectID
}

// readStats counts what the read limit did.
type readStats struct {
	started atomic.Int64 // limited reads forwarded to FerretDB
	refused atomic.Int64 // answered busy without running
	logged  atomic.Int64 // unix nanoseconds of the last busy warning
}

// ReadStats is what the proxy's read limit has done since the store started.
type ReadStats struct {
	Started, Refused int64
}

// ReadStats returns the read limit's counters.
func (s *Server) ReadStats() ReadStats {
	p := s.proxy
	return ReadStats{Started: p.reads.started.Load(), Refused: p.reads.refused.Load()}
}

// readWait is how long read msg may wait for a slot.
func readWait(msg []byte) time.Duration {
	if d, ok := commandMaxTime(msg); ok {
		return min(d/2, readWaitMax)
	}
	return readWaitMax
}

// startRead takes a read slot for request id, waiting at most wait. It
// reports false when none came free in time; the read must then not run.
func (c *proxyConn) startRead(id int32, wait time.Duration) (bool, error) {
	select {
	case c.p.readSlots <- struct{}{}:
	default:
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case c.p.readSlots <- struct{}{}:
		case <-t.C:
			return false, nil
		case <-c.done:
			return false, net.ErrClosed
		}
	}
	c.mu.Lock()
	c.reads[id] = true
	c.mu.Unlock()
	c.p.reads.started.Add(1)
	return true, nil
}

// endRead frees the slot of request id once FerretDB has replied to it.
func (c *proxyConn) endRead(id int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reads[id] {
		delete(c.reads, id)
		<-c.p.readSlots
		c.idle.Broadcast()
	}
}

// endAllReadsLocked frees every slot this connection holds: only once its
// upstream connection is closed and its reader has stopped.
func (c *proxyConn) endAllReadsLocked() {
	for id := range c.reads {
		delete(c.reads, id)
		<-c.p.readSlots
	}
}

// busyReply answers read request id without running it.
func (c *proxyConn) busyReply(id int32, cmd string) []byte {
	n := c.p.reads.refused.Add(1)
	now := time.Now().UnixNano()
	if last := c.p.reads.logged.Load(); now-last > int64(10*time.Second) && c.p.reads.logged.CompareAndSwap(last, now) {
		c.p.log.Warn("proxy refused a read: the store is busy with as many reads as it runs at once",
			"command", cmd, "slots", cap(c.p.readSlots), "refused_so_far", n)
	}
	return opMsgReply(id, bsoncore.BuildDocument(nil,
		bsoncore.AppendDoubleElement(nil, "ok", 0),
		bsoncore.AppendStringElement(nil, "errmsg", "store busy: "+cmd+" could not start before half its time limit, as many reads are running as the store runs at once; try again later"),
		bsoncore.AppendInt32Element(nil, "code", 50),
		bsoncore.AppendStringElement(nil, "codeName", "MaxTimeMSExpired")))
}

// commandMaxTime returns the maxTimeMS of an OP_MSG command, if it has one.
func commandMaxTime(msg []byte) (time.Duration, bool) {
	doc := opMsgCommand(msg)
	if doc == nil {
		return 0, false
	}
	els, _, err := elements(doc, 0)
	if err != nil {
		return 0, false
	}
	for _, e := range els {
		if e.key == "maxTimeMS" {
			if ms, ok := e.value.AsInt64OK(); ok && ms > 0 {
				return time.Duration(ms) * time.Millisecond, true
			}
		}
	}
	return 0, false
}
