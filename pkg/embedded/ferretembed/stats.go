package ferretembed

import (
	"sync/atomic"
	"time"
)

// writeStats counts what went through the write lock.
type writeStats struct {
	commands atomic.Int64 // write commands (each took or shared the lock)
	held     atomic.Int64 // nanoseconds the lock was held, in total
}

// WriteStats is what the proxy has serialized since the store started.
type WriteStats struct {
	Commands int64         // write commands forwarded or answered by the fast path
	Held     time.Duration // total time the write lock was held
	// Fast path: writes answered without FerretDB (conditions false),
	// forwarded with the filter rewritten to {_id}, or left unchanged.
	FastReplied, FastRewritten, FastUnchanged int64
	// Writes made in SQL by the proxy (fastpath_direct.go), the commits
	// that made them durable (groupcommit.go), and the finds answered in
	// SQL (finddirect.go).
	DirectWrites, DirectCommits, DirectFinds int64
}

// WriteStats returns the proxy's counters, for benchmarks: the number of
// store writes per unit of work and the time each holds the write lock.
func (s *Server) WriteStats() WriteStats {
	p := s.proxy
	return WriteStats{
		Commands: p.stats.commands.Load(), Held: time.Duration(p.stats.held.Load()),
		FastReplied: p.fast.replied.Load(), FastRewritten: p.fast.rewritten.Load(), FastUnchanged: p.fast.unchanged.Load(),
		DirectWrites: s.sqlLookups.direct.Load(), DirectCommits: s.commits.commits.Load(), DirectFinds: s.sqlLookups.findDirect.Load(),
	}
}

// HeldPerWrite is the write lock held per write command since an earlier
// reading (0 when no command went through).
func (w WriteStats) HeldPerWrite(since WriteStats) time.Duration {
	n := w.Commands - since.Commands
	if n <= 0 {
		return 0
	}
	return (w.Held - since.Held) / time.Duration(n)
}
