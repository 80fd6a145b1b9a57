package local

import (
	"cmp"
	"context"
	"math"
	"slices"
	"sync"
)

// gate admits at most n launches at a time, job by job: a waiting launch of
// the job that asked first goes before those of jobs that asked after it,
// and launches of one job go in the order they came.
//
// A job holds all its workers from its admission until its last instance
// ends, so every millisecond one instance waits for its launch is paid by
// every worker of the job. The launcher starts a job's instances 16 at a
// time (launch.Config.StartParallelism); with a plain first-come queue the
// 17th instance of a job of 21 queued behind the first 16 of a job admitted
// just after it, and each of two jobs admitted together held its workers
// until both had started. Started job by job, the first holds its workers
// for its own launches only, and the second no longer than before. The
// price: a small job admitted just after a big one now waits for all the big
// one's launches, where it waited for the 16 under way; in worker-time held,
// which is what capacity pays, the order is the cheaper one.
type gate struct {
	size int // slots

	mu      sync.Mutex
	free    int
	tickets map[string]*ticket // the jobs with a launch waiting or under way
	next    uint64             // the next job's ticket
	seq     uint64             // arrivals, for the order within a job
	waiting []*waiter          // by ticket, then arrival
}

// ticket is a job's place in line while it has launches waiting or under
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

// lastTicket places work that is no job's (the spare directories) after
// every job's launches.
const lastTicket = math.MaxUint64

func newGate(n int) *gate {
	return &gate{size: n, free: n, tickets: map[string]*ticket{}}
}

// acquire waits for a launch slot for job ("" for work of no job) and
// returns nil once it holds one, which release gives back; or ctx's error,
// holding none.
func (g *gate) acquire(ctx context.Context, job string) error {
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
			g.release(job)
			return ctx.Err()
		}
		g.waiting = slices.DeleteFunc(g.waiting, func(x *waiter) bool { return x == w })
		g.dropLocked(job)
		g.mu.Unlock()
		return ctx.Err()
	}
}

// release gives back a slot that acquire for job returned.
func (g *gate) release(job string) {
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

// waiters is how many launches wait for a slot.
func (g *gate) waiters() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.waiting)
}

// ticketLocked counts one more launch of job and returns its place in line.
func (g *gate) ticketLocked(job string) uint64 {
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

// dropLocked counts one launch of job fewer; a job with none left loses its
// place.
func (g *gate) dropLocked(job string) {
	t, ok := g.tickets[job]
	if !ok {
		return
	}
	if t.refs--; t.refs <= 0 {
		delete(g.tickets, job)
	}
}
