package scheduler

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/backoff"
	"github.com/avxrm/rm/services/scheduler/internal/admit"
)

// A pass decides and writes the ledger; the job writes that carry its
// decisions out run beside the loop, and the pass waits for them at most
// passWriteWait. Almost always they are done by then, and the pass ends as
// it did when it waited for every one: the writes of one pass at a time,
// which keeps the store's queue short for the writes on a hand-over's path
// (passes that did not wait at all made the 1,000-job load's hand-over
// slower; docs/benchmarks.md). But one write that hangs (a connection
// stalled, a document slow to answer) no longer holds every admission back
// until it returns: past the wait the loop goes on, and the write's result
// reaches the picture when it comes (TestSlowJobWriteDoesNotHoldAdmissionBack:
// 5 s before).
//
// What keeps it right: every write is the job record's update loop, which
// reads the job as stored and changes it only if the change still applies
// (jobs.go), so a write the next pass plans again, or one racing another
// write of the same job, changes nothing twice. The ledger, the capacity's
// truth, is written by the loop alone and before the jobs' writes. The
// writes only read what they are given: the picture (jobs, ledger) stays
// the loop's, and their results reach it by version, like the events. A
// write of a job and kind still under way is not started again (inflight).

// passWriteWait bounds how long a pass waits for its job writes: well past
// what they take under load (p99 14.6 ms in the 1,000-job load; the store's
// commits stalled for up to 72 ms there on 2026-12-04).
const passWriteWait = 250 * time.Millisecond

// writeKind says what a job write does.
type writeKind uint8

const (
	writeAdmission writeKind = iota
	writePostControllerAdmission
	writeCancel
	writeDependencyCancel
	writeWait
	writePostControllerWait
	writeClean
	writeRequeue
)

// writeKey names a job write: one of each per job is under way at a time.
type writeKey struct {
	id   string
	kind writeKind
}

// jobWrite is one job write of a pass. run returns the job as stored after
// it (as read, if it had nothing to do), nil if the job no longer exists.
type jobWrite struct {
	key writeKey
	run func() (*events.Job, error)
}

// writeResult is a finished job write, handed to the loop.
type writeResult struct {
	key writeKey
	job *events.Job
	err error
}

// maxWaitWrites bounds the waits written at once: a new leader found 262
// waits to write (the jobs submitted while none led, and reasons that had
// moved); they go a batch at a time, each pass adding what fits, so that
// they do not crowd out the admissions on a busy store (docs/faults.md).
const maxWaitWrites = 32

// queueLag is how long after its submission a job whose queue the picture
// lacks is taken to be ahead of its queue's event rather than on a queue
// that is gone: the API found the queue when it took the job, and the
// queue's creation may be published after the job's submission (each
// write's outbox publishes on its own). The passes every TickInterval look
// again; past queueLag the job is written pending with QueueNotFound.
// Before, a job submitted right after its queue's creation could go
// pending, "queue … does not exist", for the few milliseconds until the
// queue's event came.
const queueLag = 5 * time.Second

// queueOnItsWay says whether a wait of job id for reason is not to be
// written yet: its queue is missing from the picture, and the job was
// submitted less than queueLag ago.
func (t *term) queueOnItsWay(id, reason string) bool {
	if reason != admit.ReasonQueueNotFound {
		return false
	}
	j := t.jobs[id]
	return j != nil && t.s.deps.Now().Sub(j.SubmittedAt) < queueLag
}

// parallelWrites bounds the admissions, and apart from them the other job
// writes, under way at once.
const parallelWrites = 8

// writes are the job writes that carry out plan p, but for those under way
// already; more says whether waits were left for a later pass.
func (t *term) writes(ctx context.Context, p plan) (writes []jobWrite, more bool) {
	add := func(id string, kind writeKind, run func() (*events.Job, error)) {
		k := writeKey{id, kind}
		if !t.inflight[k] {
			writes = append(writes, jobWrite{k, run})
		}
	}
	for _, id := range p.admitJobs {
		add(id, writeAdmission, func() (*events.Job, error) { return t.recordAdmission(ctx, id) })
	}
	for _, id := range p.admitPCs {
		add(id, writePostControllerAdmission, func() (*events.Job, error) { return t.recordPostControllerAdmission(ctx, id) })
	}
	for _, id := range p.cancels {
		leased := t.ledger.Leases[id] != nil || t.ledger.Leases[id+postControllerSuffix] != nil
		add(id, writeCancel, func() (*events.Job, error) { return t.cancel(ctx, id, leased) })
	}
	for _, w := range p.depCancels {
		leased := t.ledger.Leases[w.id] != nil
		add(w.id, writeDependencyCancel, func() (*events.Job, error) { return t.cancelForDependency(ctx, w.id, w.message, leased) })
	}
	waits := 0
	for k := range t.inflight {
		if k.kind == writeWait || k.kind == writePostControllerWait {
			waits++
		}
	}
	for _, w := range p.waits {
		pc := isPostControllerHolder(w.id)
		id, kind := jobOf(w.id), writeWait
		if pc {
			kind = writePostControllerWait
		}
		if t.inflight[writeKey{id, kind}] || t.waitUnchanged(id, pc, w.reason, w.message) || t.queueOnItsWay(id, w.reason) {
			continue
		}
		if waits == maxWaitWrites {
			more = true
			break
		}
		waits++
		if pc {
			add(id, kind, func() (*events.Job, error) { return t.recordPostControllerWait(ctx, id, w.reason, w.message) })
		} else {
			add(id, kind, func() (*events.Job, error) { return t.recordWait(ctx, id, w.reason, w.message) })
		}
	}
	for _, id := range p.cleans {
		add(id, writeClean, func() (*events.Job, error) { return t.clean(ctx, id) })
	}
	for _, id := range p.requeues {
		add(id, writeRequeue, func() (*events.Job, error) { return t.requeue(ctx, id) })
	}
	return writes, more
}

// start runs ws beside the loop, in their order, at most parallelWrites
// admissions and parallelWrites others at a time (so that writes left
// hanging by an earlier pass do not hold admissions back), each handing
// its result to the loop (results). It returns a channel closed when all
// of ws have ended.
func (t *term) start(ws []jobWrite) <-chan struct{} {
	var these sync.WaitGroup
	var admissions, others []jobWrite
	for _, w := range ws {
		t.inflight[w.key] = true
		if w.key.kind == writeAdmission || w.key.kind == writePostControllerAdmission {
			admissions = append(admissions, w)
		} else {
			others = append(others, w)
		}
	}
	dispatch := func(ws []jobWrite, slots chan struct{}) {
		for _, w := range ws {
			slots <- struct{}{}
			go func() {
				defer these.Done()
				j, err := w.run()
				<-slots
				t.mu.Lock()
				t.results = append(t.results, writeResult{w.key, j, err})
				t.mu.Unlock()
				t.poke()
			}()
		}
	}
	these.Add(len(ws))
	go dispatch(admissions, t.slots[0])
	go dispatch(others, t.slots[1])
	done := make(chan struct{})
	t.writers.Add(1) // the leadership ends when these have
	go func() {
		defer t.writers.Done()
		these.Wait()
		close(done)
	}()
	return done
}

// takeResults takes the results handed over so far.
func (t *term) takeResults() []writeResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	rs := t.results
	t.results = nil
	return rs
}

// settle takes finished writes into the picture and returns their errors
// (a write canceled with the leadership is not one). changed says whether
// a job changed, or a write asks for a pass after it: the leases of
// cancelled jobs are released, and requeued jobs ask again, by the pass
// after their write, and a pass that left waits out writes them then.
func (t *term) settle(rs []writeResult) (changed bool, errs []error) {
	for _, r := range rs {
		delete(t.inflight, r.key)
		switch {
		case r.err != nil:
			if !errors.Is(r.err, context.Canceled) {
				errs = append(errs, r.err)
			}
			continue
		case r.job == nil:
			if t.jobs[r.key.id] != nil {
				delete(t.jobs, r.key.id)
				changed = true
			}
		default:
			changed = t.applyJob(r.job, false) || changed
		}
		switch r.key.kind {
		case writeCancel, writeDependencyCancel, writeRequeue:
			changed = true
		}
		changed = changed || t.more
	}
	if len(errs) == 0 && len(rs) > 0 {
		t.failures = 0
	}
	return changed, errs
}

// settleLate takes the results of writes that outlasted their pass and
// reports whether a pass is due. A failed one is made again by a later
// pass, after the wait a failed pass gets: the ledger says what each job
// is owed, the picture what it waits for.
func (t *term) settleLate(rs []writeResult) bool {
	changed, errs := t.settle(rs)
	if len(errs) == 0 {
		return changed
	}
	err := errors.Join(errs...)
	wait := t.retryWait(err)
	t.log.Warn("job writes failed; retrying", "writes", len(errs), "err", err, "failures", t.failures)
	if !t.retrying {
		t.retrying = true
		time.AfterFunc(wait, func() {
			t.mu.Lock()
			t.retry = true
			t.mu.Unlock()
			t.poke()
		})
	}
	return changed
}

// retryWait counts a failure and returns the wait before the pass that
// makes up for it: passRetry while the store is away (the driver's server
// selection waits for it), growing by passRetry per failure otherwise.
func (t *term) retryWait(err error) time.Duration {
	if backoff.Unreachable(err) {
		return passRetry
	}
	t.failures++
	return min(time.Duration(t.failures)*passRetry, 5*time.Second)
}
