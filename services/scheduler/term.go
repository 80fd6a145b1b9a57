package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/services/scheduler/internal/lease"
	"github.com/nats-io/nats.go/jetstream"
)

// postControllerSuffix makes the lease holder of a job's post controller.
const postControllerSuffix = "/post-controller"

// Post controller statuses (see docs/job-record.md for who writes which).
const (
	pcPending  = events.PostControllerPending
	pcAdmitted = events.PostControllerAdmitted
	pcRunning  = events.PostControllerRunning
	pcStopped  = events.PostControllerStopped
)

// Condition types and reasons the scheduler sets.
const (
	condAdmitted               = jobdoc.CondAdmitted
	condPostControllerAdmitted = jobdoc.CondPostControllerAdmitted
	reasonAdmitted             = "Admitted"
	reasonCancelled            = "Cancelled"
)

// term is one leadership: the in-memory picture and the loop that acts on it.
// Only the loop goroutine touches the picture; the event handler hands events
// over through the inbox.
type term struct {
	s     *Scheduler
	epoch int64
	log   *slog.Logger

	ledger  lease.Ledger             // a copy of the document, kept equal by Apply
	queues  map[string]*events.Queue // by id
	jobs    map[string]*events.Job   // the jobs that need the scheduler, by id
	retired map[string]int64         // jobs dropped from jobs, with their last version; math.MaxInt64 if deleted
	gone    map[string]bool          // deleted queues

	endSeen map[string]bool // jobs whose end this leadership saw in the stream (causal.go)
	passed  bool            // a pass has run: the first one logs its timing

	waitWrites waitWrites // how often waiting jobs may be rewritten (jobs.go)

	est *estimator // the start estimates' state (pending.go)

	deployments     map[string]*deployment // live deployments, by id (deployments.go)
	goneDeployments map[string]bool        // deleted deployments
	g               *gate                  // dependencies' outcomes and arrays' limits (deps.go)

	// The job writes under way (writes.go). inflight, more and failures
	// are the loop's; the writes hand their results over through results.
	inflight map[writeKey]bool
	more     bool // a pass left writes out: the next one writes them
	failures int  // passes and writes failed in a row
	retrying bool // a retry after failed writes is set
	writers  sync.WaitGroup
	slots    [2]chan struct{} // admissions, the rest: parallelWrites each

	mu      sync.Mutex
	inbox   []events.Event
	results []writeResult
	retry   bool // a failed write's retry is due
	due     bool // the last pass asked for the next (passDue)
	kick    chan struct{}
}

// lead schedules as leader with epoch until ctx ends or an error makes it
// step down (ErrFenced: another scheduler took over).
func (s *Scheduler) lead(ctx context.Context, epoch int64) error {
	t := &term{
		s: s, epoch: epoch, log: s.log.With("epoch", epoch),
		queues: map[string]*events.Queue{}, jobs: map[string]*events.Job{},
		retired: map[string]int64{}, gone: map[string]bool{},
		kick: make(chan struct{}, 1), est: newEstimator(), waitWrites: newWaitWrites(),
		deployments: map[string]*deployment{}, goneDeployments: map[string]bool{},
		inflight: map[writeKey]bool{}, slots: [2]chan struct{}{make(chan struct{}, parallelWrites), make(chan struct{}, parallelWrites)},
	}
	// The epoch goes on the ledger first, so that whatever the previous
	// leader still writes from now on is refused.
	start := time.Now()
	l, err := s.ledger.RaiseEpoch(ctx, epoch)
	if err != nil {
		return err
	}
	t.ledger = l
	s.epoch.Store(epoch)

	consumed, consumeErr, stopConsumer, err := t.startConsumer(ctx)
	if err != nil {
		return err
	}
	defer stopConsumer()
	consuming := time.Now()

	if err := t.resync(ctx); err != nil {
		return err
	}
	resynced := time.Now()
	s.prepareHistoryIndexes(ctx) // made while standing by, else now
	t.check()
	s.takeovers.Add(1)
	s.leading.Store(true)
	s.metrics.leader.Set(1)
	// How long the takeover took, and where: the time from a leader's
	// death to the first admission is the election's TTL plus this.
	ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	t.log.Info("leading", "leases", len(t.ledger.Leases), "jobs", len(t.jobs), "queues", len(t.queues),
		"took", ms(time.Since(start)), "epoch_and_consumer", ms(consuming.Sub(start)), "resync", ms(resynced.Sub(consuming)),
		"indexes", ms(time.Since(resynced)))

	return t.loop(ctx, consumed, consumeErr)
}

// startConsumer starts this leadership's consumer of job and queue events.
// Each leadership starts a fresh consumer at the end of the stream: the
// picture is loaded from MongoDB anyway, and a dead leader's consumer state
// (a pull request the server still serves, messages waiting for AckWait
// before redelivery) would otherwise hold events back from the new one. The
// consumer starts before the picture is loaded, so that no change is missed
// between the two: events that arrive meanwhile wait in the inbox and count
// only if newer than what was loaded. consumed closes when it stops, with
// *consumeErr saying why.
func (t *term) startConsumer(ctx context.Context) (consumed <-chan struct{}, consumeErr *error, stop func(), err error) {
	s := t.s
	if err := s.deps.JS.DeleteConsumer(ctx, events.StreamName, s.cfg.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, nil, nil, fmt.Errorf("reset consumer %s: %w", s.cfg.Durable, err)
	}
	cctx, stopConsumer := context.WithCancel(ctx)
	done := make(chan struct{})
	consumeErr = new(error)
	go func() {
		s.consuming.Store(true)
		defer s.consuming.Store(false)
		defer close(done)
		*consumeErr = events.Consume(cctx, s.deps.JS, events.ConsumerSpec{
			Durable: s.cfg.Durable,
			Filters: []string{events.FilterSubject(events.KindJob, "", ""), events.FilterSubject(events.KindQueue, "", ""),
				events.FilterSubject(events.KindDeployment, "", "")},
			MaxAckPending: 256,
			DeliverNew:    true,
		}, t.receive, t.log)
	}()
	return done, consumeErr, func() { stopConsumer(); <-done }, nil
}

// passRetry is the wait before a failed admission pass is run again, the
// step by which it grows while the failures are not the store's absence.
const passRetry = 100 * time.Millisecond

// loop runs passes when the picture changes, ticks and resyncs until ctx
// ends or the leadership must end.
func (t *term) loop(ctx context.Context, consumed <-chan struct{}, consumeErr *error) error {
	s := t.s
	tick := time.NewTicker(s.cfg.TickInterval)
	defer tick.Stop()
	resync := time.NewTicker(s.cfg.ResyncInterval)
	defer resync.Stop()
	var reading <-chan backgroundResync
	// The job writes end with the leadership (writes.go).
	ctx, cancel := context.WithCancel(ctx)
	defer t.writers.Wait()
	defer cancel()
	dirty := true
	for {
		if dirty {
			if err := t.pass(ctx); err != nil {
				if errors.Is(err, lease.ErrFenced) || ctx.Err() != nil {
					return err
				}
				// A pass that could not reach the store (restarting) waits
				// for it in the driver's server selection: its retry need
				// not wait longer the longer the store is away.
				wait := t.retryWait(err)
				t.log.Warn("admission pass failed; retrying", "err", err, "failures", t.failures)
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(wait):
				}
				t.poke()
			} else {
				t.failures = 0
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-consumed:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("event consumer stopped: %v", *consumeErr)
		case <-t.kick:
			dirty = t.drain()
		case <-tick.C:
			dirty = t.drain() || t.waiting()
		case <-resync.C:
			if reading == nil {
				reading = t.startResync(ctx) // resync_background.go
			}
		case r := <-reading:
			reading = nil
			if err := t.applyResync(r.snapshot, r.base); err != nil {
				if errors.Is(err, lease.ErrFenced) {
					return err
				}
				if ctx.Err() != nil {
					return nil
				}
				t.log.Warn("resync failed", "err", err)
			} else if err := t.loadDeployments(ctx); err != nil {
				t.log.Warn("resync failed", "err", err)
			}
			t.drain()
			dirty = true
		}
	}
}

// receive is the event handler of the scheduler's consumer. Events are
// triggers: the handler only hands them to the loop, which reconciles the
// picture with them by version, so a duplicate or late event changes nothing.
//
// Ack policy: an event whose data is not the resource it names: Permanent
// (Term and dead-letter); anything else: Ack at once. Nothing is lost if the
// process dies before the loop acts: a new leader loads everything from
// MongoDB, where every fact the events announce is stored first.
func (t *term) receive(_ context.Context, e events.Event) error {
	switch e.Kind() {
	case events.KindJob:
		var j events.Job
		if err := e.DecodeData(&j); err != nil {
			return events.Permanent(err)
		}
		if j.ID == "" {
			return events.Permanent(fmt.Errorf("%w: %s event without a job id", events.ErrMalformed, e.Type))
		}
		// Before the loop can act on it: no write may start from a cached
		// job older than this event's (of no version: from none at all).
		v := j.Version
		if v == 0 {
			v = math.MaxInt64
		}
		t.s.record.Forget(j.ID, v)
	case events.KindQueue:
		var q events.Queue
		if err := e.DecodeData(&q); err != nil {
			return events.Permanent(err)
		}
	case events.KindDeployment:
	default:
		return nil
	}
	t.mu.Lock()
	t.inbox = append(t.inbox, e)
	t.mu.Unlock()
	t.poke()
	return nil
}

// settledHere reports whether a cancellation or requeue of p was written
// and settled within its pass, so that the pass after it is due now. One
// still in flight is not: it asks for that pass as it settles, and a pass
// asked for meanwhile would plan the same write again and again.
func (t *term) settledHere(p plan) bool {
	settled := func(id string, kind writeKind) bool { return !t.inflight[writeKey{id, kind}] }
	for _, id := range p.cancels {
		if settled(id, writeCancel) {
			return true
		}
	}
	for _, w := range p.depCancels {
		if settled(w.id, writeDependencyCancel) {
			return true
		}
	}
	for _, id := range p.requeues {
		if settled(id, writeRequeue) {
			return true
		}
	}
	return false
}

// passDue asks the loop for another pass, whatever the next drain finds.
func (t *term) passDue() {
	t.mu.Lock()
	t.due = true
	t.mu.Unlock()
	t.poke()
}

func (t *term) poke() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// drain applies the results of the job writes and the events of the inbox
// and reports whether a pass is due: the picture changed, or a retry.
func (t *term) drain() bool {
	t.mu.Lock()
	evs, rs, dirty, due := t.inbox, t.results, t.retry, t.due
	t.inbox, t.results, t.retry, t.due = nil, nil, false, false
	t.mu.Unlock()
	if dirty {
		t.retrying = false
	}
	dirty = t.settleLate(rs) || dirty || due
	for _, e := range evs {
		switch e.Kind() {
		case events.KindJob:
			var j events.Job
			if err := e.DecodeData(&j); err == nil && !endAhead(e.Type, &j) {
				t.est.observe(&j, t.s.deps.Now())
				dirty = t.applyJob(&j, e.Type == events.TypeJobDeleted) || dirty
				t.noteFinal(&j, e.Type == events.TypeJobDeleted)
				t.noteEndSeen(e.Type, j.ID)
			}
		case events.KindQueue:
			var q events.Queue
			if err := e.DecodeData(&q); err == nil {
				dirty = t.applyQueue(&q, e.Type == events.TypeQueueDeleted) || dirty
			}
		case events.KindDeployment:
			dirty = t.applyDeployment(e) || dirty
		}
	}
	return dirty
}

// applyJob takes j into the picture if it is newer than what the picture has.
func (t *term) applyJob(j *events.Job, deleted bool) bool {
	if v, ok := t.retired[j.ID]; ok && j.Version <= v {
		return false
	}
	if cur := t.jobs[j.ID]; cur != nil && j.Version <= cur.Version && !deleted {
		return false
	}
	if deleted {
		delete(t.jobs, j.ID)
		t.retired[j.ID] = math.MaxInt64
		return true
	}
	delete(t.retired, j.ID)
	j.Runtime = events.RuntimeSpec{}
	t.jobs[j.ID] = j
	return true
}

func (t *term) applyQueue(q *events.Queue, deleted bool) bool {
	if t.gone[q.ID] {
		return false
	}
	if deleted {
		delete(t.queues, q.ID)
		t.gone[q.ID] = true
		return true
	}
	if cur := t.queues[q.ID]; cur != nil && q.Version <= cur.Version {
		return false
	}
	t.queues[q.ID] = q
	return true
}

// waiting reports whether a job or post controller waits for capacity, which
// the passage of time alone can concern (the starvation guard).
func (t *term) waiting() bool {
	for _, j := range t.jobs {
		if j.Status == events.JobSubmitted || j.Status == events.JobPending ||
			(j.PostController != nil && j.PostController.Status == pcPending) {
			return true
		}
	}
	return false
}

// activeJobs selects the jobs the scheduler has something to do with:
// each clause is served by an index (see package indexed), so finished jobs
// are not read.
func activeJobs(holders []string) indexed.Filter {
	ids := make([]string, 0, len(holders))
	for _, h := range holders {
		ids = append(ids, jobOf(h))
	}
	return indexed.Filter{
		All: []indexed.Cond{{Path: "_deleted", Missing: true}},
		Any: []indexed.Clause{
			{jobdoc.ActiveStatus(events.JobSubmitted, events.JobPending, events.JobAdmitted, events.JobRunning)},
			jobdoc.CleanupPending(),
			jobdoc.PostControllerStatus(pcPending, pcAdmitted, pcRunning),
		},
		IDs: ids,
	}
}

// resync reloads the ledger, the queues and the jobs that need the scheduler
// from MongoDB. Events applied meanwhile with a newer version win.
func (t *term) resync(ctx context.Context) error {
	// The picture and the writes start from the store.
	t.s.record.ForgetAll()
	if err := t.loadDeployments(ctx); err != nil { // deployments are few: read in the loop
		return err
	}
	return t.applyResync(t.s.readResync(ctx, t.versions()), nil)
}

// check reports states that cannot happen if every write went as designed:
// an admitted or running job without a lease. Such a job is given its lease
// (it runs, so its instances count) and the violation is logged and counted.
func (t *term) check() {
	for _, j := range t.jobs {
		if (j.Status == events.JobAdmitted || j.Status == events.JobRunning) && t.ledger.Leases[j.ID] == nil {
			t.s.metrics.violations.Inc()
			t.log.Error("invariant violated: admitted job without a lease; adopting its claims", "job", j.ID, "status", j.Status)
			claims := []lease.Claim{{Queue: j.QueueID, Count: j.WorkerInstances}, {Queue: t.queueID(events.ControllerQueue), Count: 1}}
			// Best effort: a failure shows up again at the next resync.
			_ = t.s.ledger.Apply(context.Background(), &t.ledger, lease.Change{Grants: map[string][]lease.Claim{j.ID: claims}})
		}
	}
}

// queueID returns the id of the queue called name, or name if there is none.
func (t *term) queueID(name string) string { return queueIDIn(t.queues, name) }

func queueIDIn(queues map[string]*events.Queue, name string) string {
	for id, q := range queues {
		if q.Name == name {
			return id
		}
	}
	return name
}

func jobOf(holder string) string {
	id, _, _ := strings.Cut(holder, "/")
	return id
}

func isPostControllerHolder(holder string) bool {
	return strings.HasSuffix(holder, postControllerSuffix)
}

// releasable reports whether the lease of holder must end: its job is gone,
// cleaned or final (for the job's own lease), or its post controller stopped.
func releasable(jobs map[string]*events.Job, holder string) bool {
	j := jobs[jobOf(holder)]
	switch {
	case j == nil || j.CleanedAt != nil:
		return true
	case isPostControllerHolder(holder):
		return j.PostController == nil || j.PostController.Status == pcStopped || j.PostController.StopRequested
	default:
		return events.JobFinal(j.Status)
	}
}

func notAdmitted(j *events.Job) bool {
	return j.Status == events.JobSubmitted || j.Status == events.JobPending
}

func wantsOut(j *events.Job) bool { return j.CancelRequested || j.CleanupRequested }

// pass is one round of the scheduler: decide (planPass, pure), write the
// ledger once (grants and releases, all or nothing), then bring the jobs in
// line with it.
func (t *term) pass(ctx context.Context) error {
	t.s.metrics.passes.Inc()
	var steps passSteps
	steps.mark()
	if err := t.loadGates(ctx); err != nil {
		return err
	}
	steps.mark()
	ends, err := t.publishUnseenEnds(ctx)
	if err != nil {
		return err
	}
	steps.mark()
	p := planPassWith(t.ledger, t.queues, t.jobs, t.deployments, t.s.deps.Now(), t.gate())
	t.log.Debug("admission pass", "jobs", len(t.jobs), "grants", len(p.change.Grants),
		"releases", len(p.change.Releases), "waiting", len(p.waits), "cancels", len(p.cancels))
	steps.mark()
	if err := t.s.ledger.Apply(ctx, &t.ledger, p.change); err != nil {
		if errors.Is(err, lease.ErrConflict) {
			if l, lerr := t.s.ledger.Load(ctx); lerr == nil && l.Epoch == t.epoch {
				t.ledger = l
			}
		}
		return err
	}
	steps.mark()
	writes, more := t.writes(ctx, p)
	t.more = more
	if len(writes) > 0 {
		wait := time.NewTimer(passWriteWait)
		select {
		case <-t.start(writes):
		case <-wait.C: // the rest go on beside the loop (writes.go)
		case <-ctx.Done():
		}
		wait.Stop()
	}
	_, errs := t.settle(t.takeResults())
	steps.mark()
	if !t.passed {
		// The first pass of a leadership: with the takeover ("leading"),
		// the time from a leader's death to the first admission.
		t.passed = true
		t.log.Info("first pass", append([]any{"grants", len(p.change.Grants), "releases", len(p.change.Releases),
			"ends_checked", ends, "job_writes", len(writes)}, steps.attrs()...)...)
	}
	switch {
	case t.settledHere(p):
		// Their leases, if any, are released by the next pass; requeued
		// jobs ask again. A poke alone would not do: their writes, settled
		// in this pass, leave the next drain nothing new (a requeued job
		// waited for the tick).
		t.passDue()
	case len(p.cancels)+len(p.depCancels)+len(p.requeues) > 0 || more:
		// Writes still under way ask for the pass as they settle (settle);
		// the waits left out are written then.
		t.poke()
	}
	t.retire()
	t.report(p.pendingByQueue)
	t.publishEstimates(ctx)
	return errors.Join(errs...)
}

// passSteps times the steps of a pass, in the order of passStepNames,
// without allocating: every pass takes the times, the first one logs them.
type passSteps struct {
	at [len(passStepNames) + 1]time.Time
	n  int
}

var passStepNames = [...]string{"gates", "ends", "plan", "ledger", "writes"}

func (p *passSteps) mark() {
	p.at[p.n] = time.Now()
	p.n++
}

// attrs are the steps' times as log attributes.
func (p *passSteps) attrs() []any {
	var a []any
	for i := 1; i < p.n; i++ {
		a = append(a, passStepNames[i-1], p.at[i].Sub(p.at[i-1]).Round(time.Millisecond).String())
	}
	return a
}

// retire drops from the picture the jobs the scheduler has nothing more to do
// with, remembering their version to ignore stale events about them.
func (t *term) retire() {
	for id, j := range t.jobs {
		if !events.JobFinal(j.Status) || (j.CleanupRequested && j.CleanedAt == nil) {
			continue
		}
		if t.ledger.Leases[id] != nil || t.ledger.Leases[id+postControllerSuffix] != nil {
			continue
		}
		if pc := j.PostController; pc != nil && pc.Status != pcStopped && j.CleanedAt == nil {
			continue
		}
		delete(t.jobs, id)
		t.retired[id] = j.Version
	}
	t.forgetEnds()
}

// report sets the gauges.
func (t *term) report(pendingByQueue map[string]int) {
	m := t.s.metrics
	m.pendingJobs.Reset()
	m.allocated.Reset()
	alloc := t.ledger.Allocated()
	for _, id := range slices.Sorted(maps.Keys(t.queues)) {
		name := t.queues[id].Name
		m.pendingJobs.WithLabelValues(name).Set(float64(pendingByQueue[id]))
		m.allocated.WithLabelValues(name).Set(float64(alloc[id]))
	}
}
