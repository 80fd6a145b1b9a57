package scheduler

import (
	"cmp"
	"container/heap"
	"slices"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/scheduler/internal/admit"
	"github.com/avxrm/rm/services/scheduler/internal/lease"
)

// Start estimates (docs/scheduling.md, "Position and start estimate").
//
// estimateStarts simulates the queues forward from now with the scheduler's
// own decision core (admit.Admit): at each instant when a lease is expected
// to end, the capacity it holds is given back and the pending jobs are
// decided again, by priority, with backfill and the starvation guard as the
// scheduler applies them, all-or-nothing on every queue a job claims. A job
// admitted in the simulation at time t is estimated to start at t; it then
// holds its claims for its own expected run time. A lease whose end is not
// known never ends in the simulation, so the jobs that need its capacity
// get no estimate (basis unknown): the estimate never guesses.
//
// Not foreseen: jobs submitted later that go ahead (higher priority),
// cancellations, changes of limits, and the time the launcher takes to start
// and stop instances.

// runTimeFunc gives the expected run time of job j and what it rests on;
// ok false when nothing is known.
type runTimeFunc func(j *events.Job) (d time.Duration, basis string, ok bool)

// lagFunc gives, for a queue, how long after its admission a job starts
// running and how long after its run time it is seen to end (and its lease
// released): the control plane's and the runtime's share of a job's hold.
type lagFunc func(queueID string) (start, end time.Duration)

// estimateSteps bounds the instants one estimate simulates; the jobs still
// pending after them get no estimate (basis unknown).
const estimateSteps = 2000

// jobEstimate is the outcome for one pending job.
type jobEstimate struct {
	position int
	start    *time.Time
	basis    string
}

// basisRank orders bases from the most certain to the least.
var basisRank = map[string]int{
	events.BasisFreeCapacity: 0, events.BasisMaxRunSeconds: 1, events.BasisDefaultMaxRunSeconds: 2,
	events.BasisMedianRunTime: 3, events.BasisUnknown: 4,
}

func weaker(a, b string) string {
	if basisRank[b] > basisRank[a] {
		return b
	}
	return a
}

// release is a lease expected to end at a time.
type release struct {
	at     time.Time
	claims []admit.Claim
	basis  string
	array  string // the job's array, if any
}

type releases []release

func (r releases) Len() int           { return len(r) }
func (r releases) Less(i, j int) bool { return r[i].at.Before(r[j].at) }
func (r releases) Swap(i, j int)      { r[i], r[j] = r[j], r[i] }
func (r *releases) Push(x any)        { *r = append(*r, x.(release)) }
func (r *releases) Pop() any {
	old := *r
	x := old[len(old)-1]
	*r = old[:len(old)-1]
	return x
}

// estimateStarts returns, by queue id, the waiting jobs of the queue in the
// order the scheduler considers them, with their estimates. ledger is the
// ledger after this pass's change; runTime the expected run times;
// maxParallel the arrays' limits (by array id; absent or 0: none).
//
// Every waiting job has its position, counted as GET /queues/{id}/pending
// counts it: those that ask for no capacity yet (held by a dependency)
// included, with no estimate. The jobs of an array beyond its max_parallel
// ask for capacity in the simulation only as the array's jobs end.
func estimateStarts(ledger lease.Ledger, queues map[string]*events.Queue, jobs map[string]*events.Job, now time.Time, runTime runTimeFunc, lags lagFunc, maxParallel map[string]int) map[string][]pendingEstimate {
	var p plan
	p.pendingByQueue = map[string]int{}
	var ordered []admit.Request
	for _, r := range p.requests(ledger, queues, jobs) {
		if r.Kind == admit.KindJob {
			ordered = append(ordered, r)
		}
	}
	var waiting []admit.Request // every job not admitted: the positions
	for _, j := range jobs {
		if notAdmitted(j) && ledger.Leases[j.ID] == nil && !wantsOut(j) {
			waiting = append(waiting, admit.Request{ID: j.ID, Priority: j.Priority, SubmittedAt: j.SubmittedAt})
		}
	}
	out := map[string][]pendingEstimate{}
	if len(waiting) == 0 {
		return out
	}

	// The order: as admit considers them.
	byOrder := func(a, b admit.Request) int {
		if c := cmp.Compare(b.Priority, a.Priority); c != 0 {
			return c
		}
		if c := a.SubmittedAt.Compare(b.SubmittedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	}
	slices.SortFunc(ordered, byOrder)
	slices.SortFunc(waiting, byOrder)

	// The arrays' jobs that hold capacity now, against their max_parallel.
	active := map[string]int{}
	limited := false
	for _, j := range jobs {
		if j.ArrayID != "" && maxParallel[j.ArrayID] > 0 && ledger.Leases[j.ID] != nil {
			active[j.ArrayID]++
		}
		if j.ArrayID != "" && maxParallel[j.ArrayID] > 0 && notAdmitted(j) {
			limited = true
		}
	}

	ends := heldNow(ledger, jobs, now, runTime, lags)

	snap := snapshot(ledger, nil, queues, now)
	snap.NoMessages = true // decided again at every step; only Admit and Reason are read
	starts := map[string]jobEstimate{}
	// remaining and spare take turns as the requests still pending, so that
	// a step does not grow a new slice of them. They start in admit's own
	// order, so its sort at every step finds them sorted.
	remaining, spare := slices.Clone(ordered), make([]admit.Request, 0, len(ordered))
	// basis: by queue, the least certain run time among the leases that gave
	// capacity back on it so far. A job's estimate rests on those of the
	// limited queues it claims (an unlimited one never held it back), not
	// on leases that ended elsewhere.
	t, basis := now, map[string]string{}
	basisOf := func(r admit.Request) string {
		b := events.BasisFreeCapacity
		for _, c := range r.Claims {
			if snap.Queues[c.Queue].Limit != nil && basis[c.Queue] != "" {
				b = weaker(b, basis[c.Queue])
			}
		}
		return b
	}
	var ad admit.Admitter // one memory for all the steps' decisions
	var asking []admit.Request
	var held []bool
	for step := 0; len(remaining) > 0 && step < estimateSteps; step++ {
		snap.Now = t
		still := spare[:0]
		// An array's jobs beyond its free max_parallel slots do not ask at
		// this instant (admitArrays): the first ones in the order do.
		asking, held = remaining, held[:0]
		if limited {
			asking = asking[:0:0]
			free := map[string]int{}
			for _, r := range remaining {
				a := jobs[r.ID].ArrayID
				n, ok := free[a]
				if !ok {
					n = maxParallel[a] - active[a]
				}
				hold := a != "" && maxParallel[a] > 0 && n <= 0
				if a != "" && !hold {
					free[a] = n - 1
				}
				held = append(held, hold)
				if !hold {
					asking = append(asking, r)
				}
			}
		}
		ds := ad.Admit(snap, asking)
		k := 0
		for i, r := range remaining {
			if len(held) > 0 && held[i] {
				still = append(still, r)
				continue
			}
			d := ds[k]
			k++
			if !d.Admit {
				if d.Reason != admit.ReasonExceedsQueueLimit && d.Reason != admit.ReasonQueueNotFound && d.Reason != admit.ReasonInvalidClaim {
					still = append(still, r)
				}
				continue
			}
			at, b := t, basisOf(r)
			starts[r.ID] = jobEstimate{start: &at, basis: b}
			for _, c := range r.Claims {
				q := snap.Queues[c.Queue]
				q.Allocated += c.Count
				snap.Queues[c.Queue] = q
			}
			array := jobs[r.ID].ArrayID
			active[array]++
			if dur, rb, ok := runTime(jobs[r.ID]); ok {
				startLag, endLag := lags(jobs[r.ID].QueueID)
				heap.Push(&ends, release{at: t.Add(startLag + dur + endLagFor(rb, endLag)), claims: r.Claims, basis: weaker(b, rb), array: array})
			}
		}
		remaining, spare = still, remaining
		if len(remaining) == 0 || ends.Len() == 0 {
			break
		}
		// Next instant: every lease that ends then gives its capacity back.
		t = ends[0].at
		for ends.Len() > 0 && !ends[0].at.After(t) {
			e := heap.Pop(&ends).(release)
			for _, c := range e.claims {
				q := snap.Queues[c.Queue]
				q.Allocated -= c.Count
				snap.Queues[c.Queue] = q
				basis[c.Queue] = weaker(cmp.Or(basis[c.Queue], events.BasisFreeCapacity), e.basis)
			}
			active[e.array]--
		}
	}

	return placed(waiting, jobs, starts)
}

// heldNow is what holds capacity now and when it ends, as a heap by end: a
// lease of a job whose run time is known (a post controller's, or one of a
// job without one, holds for ever and is left out).
func heldNow(ledger lease.Ledger, jobs map[string]*events.Job, now time.Time, runTime runTimeFunc, lags lagFunc) releases {
	var ends releases
	for holder, claims := range ledger.Leases {
		j := jobs[jobOf(holder)]
		if j == nil || isPostControllerHolder(holder) {
			continue // ends when nobody knows: holds for ever
		}
		d, basis, ok := runTime(j)
		if !ok {
			continue
		}
		startLag, endLag := lags(j.QueueID)
		start := now.Add(startLag)
		if j.StartedAt != nil {
			start = *j.StartedAt
		} else if j.AdmittedAt != nil {
			start = j.AdmittedAt.Add(startLag)
		}
		end := start.Add(d + endLagFor(basis, endLag))
		if end.Before(now) {
			end = now // overdue: it may end at any moment
		}
		cs := make([]admit.Claim, len(claims))
		for i, c := range claims {
			cs[i] = admit.Claim{Queue: c.Queue, Count: c.Count}
		}
		ends = append(ends, release{at: end, claims: cs, basis: basis, array: j.ArrayID})
	}
	heap.Init(&ends)
	return ends
}

// placed gives each waiting job of ordered its position in its queue and its
// estimate (unknown when the simulation never admitted it), per queue.
func placed(ordered []admit.Request, jobs map[string]*events.Job, starts map[string]jobEstimate) map[string][]pendingEstimate {
	out := map[string][]pendingEstimate{}
	positions := map[string]int{}
	for _, r := range ordered {
		j := jobs[r.ID]
		positions[j.QueueID]++
		e, ok := starts[r.ID]
		if !ok {
			e = jobEstimate{basis: events.BasisUnknown}
		}
		e.position = positions[j.QueueID]
		out[j.QueueID] = append(out[j.QueueID], pendingEstimate{jobID: r.ID, jobEstimate: e})
	}
	return out
}

// endLagFor: a median run time, measured from started_at to finished_at,
// has the end's lag in it already; a limit has not.
func endLagFor(basis string, endLag time.Duration) time.Duration {
	if basis == events.BasisMedianRunTime {
		return 0
	}
	return endLag
}

// pendingEstimate is a job of a queue's snapshot.
type pendingEstimate struct {
	jobID string
	jobEstimate
}
