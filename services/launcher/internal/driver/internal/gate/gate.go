// Package gate bounds a driver's concurrent starts and admits them job by
// job. It imports nothing but the standard library.
package gate

import (
	"cmp"
	"context"
	"math"
	"slices"
	"sync"
)

// Gate admits at most n starts at a time, job by job: a waiting start of the
// job that asked first goes before those of jobs that asked after it, and
// starts of one job go in the order they came.
//
// A job holds all its workers from its admission until its last instance
// ends, so every millisecond one instance waits for its start is paid by
// every worker of the job. The launcher starts a job's instances 16 at a
// time (launch.Config.StartParallelism). Served first come first served,
// the 17th instance of a job of 21 queued behind the first 16 of a job
// admitted just after it, and jobs admitted together all held their
// workers until every one had started. Started job by job, the first holds
// its workers for its own starts only, and the last no longer than before.
// The price: a small job admitted just after a big one waits for all the
// big one's starts, where it waited for those under way; in worker-time
// held, which is what capacity pays, the order is the cheaper one.
type Gate struct {
	size int // slots

	mu      sync.Mutex
	free    int
	tickets map[string]*ticket // the jobs with a start waiting or under way
	next    uint64             // the next job's ticket
	seq     uint64             // arrivals, for the order within a job
	waiting []*waiter          // by ticket, then arrival
}

// ticket is a job's place in line while it has starts waiting or under
// way (refs).
type ticket struct {
	n    uint64
	refs int
}

type waiter struct {
	job     string
	n, seq  uint64
	ready   chan struct{} // closed when admitted
	granted bool          // under mu
}

// lastTicket places work that is no job's (the local driver's spare
// directories) after every job's starts.
const lastTicket = math.MaxUint64

// New returns a gate of n slots.
func New(n int) *Gate {
	return &Gate{size: n, free: n, tickets: map[string]*ticket{}}
}

// Acquire waits for a slot for job ("" for work of no job) and returns nil
// once it holds one, which Release gives back; or ctx's error, holding none.
func (g *Gate) Acquire(ctx context.Context, job string) error {
	g.mu.Lock()
	t := g.ticketLocked(job)
	if g.free > 0 && len(g.waiting) == 0 {
		g.free--
		g.mu.Unlock()
		return nil
	}
	g.seq++
	w := &waiter{job: job, n: t, seq: g.seq, ready: make(chan struct{})}
	i, _ := slices.BinarySearchFunc(g.waiting, w, func(a, b *waiter) int {
		return cmp.Or(cmp.Compare(a.n, b.n), cmp.Compare(a.seq, b.seq))
	})
	g.waiting = slices.Insert(g.waiting, i, w)
	g.mu.Unlock()

	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		g.mu.Lock()
		if w.granted {
			g.mu.Unlock()
			g.Release(job)
			return ctx.Err()
		}
		g.waiting = slices.DeleteFunc(g.waiting, func(x *waiter) bool { return x == w })
		g.dropLocked(job)
		g.mu.Unlock()
		return ctx.Err()
	}
}

// Release gives back a slot that Acquire for job returned.
func (g *Gate) Release(job string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.dropLocked(job)
	g.free++
	if len(g.waiting) > 0 {
		w := g.waiting[0]
		g.waiting = g.waiting[1:]
		g.free--
		w.granted = true
		close(w.ready)
	}
}

// Waiters is how many starts wait for a slot.
func (g *Gate) Waiters() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.waiting)
}

// ticketLocked counts one more start of job and returns its place in line.
func (g *Gate) ticketLocked(job string) uint64 {
	if job == "" {
		return lastTicket
	}
	t, ok := g.tickets[job]
	if !ok {
		t = &ticket{n: g.next}
		g.next++
		g.tickets[job] = t
	}
	t.refs++
	return t.n
}

// dropLocked counts one start of job fewer; a job with none left loses its
// place.
func (g *Gate) dropLocked(job string) {
	t, ok := g.tickets[job]
	if !ok {
		return
	}
	if t.refs--; t.refs <= 0 {
		delete(g.tickets, job)
	}
}

// HoldAll takes every slot of g, as starts under way would, until release
// is called: tests use it to make starts wait.
func (g *Gate) HoldAll() (release func()) {
	for range g.size {
		_ = g.Acquire(context.Background(), "") // never cancelled
	}
	return func() {
		for range g.size {
			g.Release("")
		}
	}
}
