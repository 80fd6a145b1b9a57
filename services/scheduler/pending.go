package scheduler

import (
	"context"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/backoff"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/services/scheduler/internal/lease"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The pending snapshots: after a pass, the leader estimates the start of
// every pending job (estimateStarts) and writes, per queue, one
// events.QueueEstimates document when the order, a basis or an estimate
// changed; the API joins it into the jobs it returns. A pending job is
// never written for its estimate.

const (
	// estimateEvery bounds how often the estimates are computed (and more
	// when one takes long: see publishEstimates); the tick
	// (TickInterval) runs a pass while jobs wait, so a snapshot lags the
	// picture by at most about that.
	estimateEvery = 500 * time.Millisecond
	// estimateWriteSpacing: the snapshots' writes take at most a hundredth
	// of the time (estimateSpacing). A snapshot is one document per queue,
	// about 120 bytes per pending job, and the embedded store holds its one
	// write lock while it writes one: about 7 ms for 900 jobs (110 KB), much
	// of it SQLite parsing the document's JSON for the indexes on its _id.
	// Every other write, a hand-over's included, waits meanwhile.
	estimateWriteSpacing = 100
	// maxEstimateSpacing bounds how stale the writes' cost lets a snapshot
	// get. A write's time includes its wait for the store's lock, so a busy
	// store spaces the snapshots most when its users submit most; with 30 s
	// a job submitted under load showed no estimate for half a minute
	// (TestQueuePendingList, 2026-12-05, at a load of 12 on 2 CPUs).
	maxEstimateSpacing = 5 * time.Second
	// estimateSlack: an estimate that moved by less is not rewritten.
	estimateSlack = 2 * time.Second
	// historyRuns is how many finished jobs of an application on a queue
	// the median run time is taken from.
	historyRuns = 20
)

// estimator is a leadership's state for the snapshots.
type estimator struct {
	busy    atomic.Bool                  // a computation runs
	mu      sync.Mutex                   // guards next
	next    time.Time                    // no computation starts before
	written map[string][]pendingEstimate // the snapshot last written, by queue id; the computation's
	runs    map[string]*runHistory       // by historyKey
	lags    map[string]*queueLags        // by queue id
	reads   backoff.Doubling             // the history reads (lastFinished, readbackoff.go); the loop's
}

// queueLags are the recent lags of a queue's finished jobs: admitted_at to
// started_at, and how long past its max_run_seconds a job was seen to end.
type queueLags struct {
	loaded     bool
	start, end runHistory
}

// runHistory is the run times of the last finished jobs of an application
// on a queue, newest last.
type runHistory struct {
	loaded bool // the stored history was read
	ids    []string
	runs   []time.Duration
}

func newEstimator() *estimator {
	return &estimator{written: map[string][]pendingEstimate{}, runs: map[string]*runHistory{}, lags: map[string]*queueLags{},
		reads: backoff.Doubling{Min: readBackoffMin, Max: readBackoffMax}}
}

// historyKey names an application on a queue.
func historyKey(j *events.Job) string {
	a := j.Application
	if a.ID != "" {
		return j.QueueID + "\x00" + a.ID
	}
	return j.QueueID + "\x00\x00" + a.Name + "\x00" + a.Version
}

// ranFor is how long a finished job ran, false if it did not run.
func ranFor(j *events.Job) (time.Duration, bool) {
	if (j.Status != events.JobSucceeded && j.Status != events.JobFailed) || j.StartedAt == nil || j.FinishedAt == nil {
		return 0, false
	}
	return j.FinishedAt.Sub(*j.StartedAt), true
}

// observe takes the run time of job j, if it just finished, into its
// history; now is when its event arrived. Called with every job event;
// duplicates count once.
func (e *estimator) observe(j *events.Job, now time.Time) {
	d, ok := ranFor(j)
	if !ok {
		return
	}
	h := e.runs[historyKey(j)]
	if h == nil {
		h = &runHistory{}
		e.runs[historyKey(j)] = h
	}
	h.add(j.ID, d)
	// The event's delay is part of the end's lag: capacity is given back
	// when the scheduler sees the job end, not when it ended. A late event
	// (a replay) says nothing about it.
	seen := now.Sub(*j.FinishedAt)
	if seen < 0 || seen > 10*time.Second {
		seen = 0
	}
	e.lagsOf(j.QueueID).observe(j, d+seen)
}

func (e *estimator) lagsOf(queueID string) *queueLags {
	l := e.lags[queueID]
	if l == nil {
		l = &queueLags{}
		e.lags[queueID] = l
	}
	return l
}

// observe takes the lags of job j, which ran (or was seen to run) for d.
func (l *queueLags) observe(j *events.Job, d time.Duration) {
	if j.AdmittedAt == nil {
		return
	}
	l.start.add(j.ID, max(0, j.StartedAt.Sub(*j.AdmittedAt)))
	if j.MaxRunSeconds != nil {
		l.end.add(j.ID, max(0, d-time.Duration(*j.MaxRunSeconds)*time.Second))
	}
}

func (h *runHistory) add(id string, d time.Duration) {
	if slices.Contains(h.ids, id) {
		return
	}
	h.ids, h.runs = append(h.ids, id), append(h.runs, d)
	if n := len(h.ids) - historyRuns; n > 0 {
		h.ids, h.runs = h.ids[n:], h.runs[n:]
	}
}

func (h *runHistory) median() (time.Duration, bool) {
	if len(h.runs) == 0 {
		return 0, false
	}
	s := slices.Sorted(slices.Values(h.runs))
	if len(s)%2 == 1 {
		return s[len(s)/2], true
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2, true
}

// loadHistory reads the last finished jobs of j's application on its queue,
// once per leadership; later ones come from events (observe).
func (t *term) loadHistory(ctx context.Context, j *events.Job) *runHistory {
	key := historyKey(j)
	h := t.est.runs[key]
	if h == nil {
		h = &runHistory{}
		t.est.runs[key] = h
	}
	if h.loaded || !t.est.reads.May(t.s.deps.Now()) {
		return h
	}
	done, err := t.lastFinished(ctx, j.QueueID, appConds(j.Application)...)
	if err != nil {
		wait := t.est.reads.FailedWith(t.s.deps.Now(), err)
		t.log.Warn("read run history for start estimates; trying again later", "queue", j.QueueID, "err", err, "retry_in", wait)
		return h
	}
	t.est.reads.Succeeded()
	loaded := &runHistory{loaded: true}
	for _, d := range done {
		if r, ok := ranFor(d); ok {
			loaded.add(d.ID, r)
		}
	}
	for i, id := range h.ids { // seen in events meanwhile: newer
		loaded.add(id, h.runs[i])
	}
	t.est.runs[key] = loaded
	return loaded
}

// appConds are the conditions on the application a that the run history
// reads: by id if it has one, else by name and version.
func appConds(a events.JobApplication) []indexed.Cond {
	if a.ID != "" {
		return []indexed.Cond{{Path: "application.id", In: []any{a.ID}}}
	}
	return []indexed.Cond{{Path: "application.name", In: []any{a.Name}}, {Path: "application.version", In: []any{a.Version}}}
}

// finishedOn is the clause of the jobs that ran and ended on queue queueID
// and meet app, which leads the index lastFinished reads.
func finishedOn(queueID string, app ...indexed.Cond) indexed.Clause {
	return append(append(indexed.Clause{{Path: "queue_id", In: []any{queueID}}}, app...), jobdoc.RanStatus())
}

// prepareHistoryIndexes asks for what lastFinished reads, with a queue
// that matches nothing, so that on the embedded store the three indexes it
// reads (by application id, by name and version, and the queue's alone for
// the lags) are made now (each once per store), before the scheduler admits
// anything, rather than by the first estimate: made then on a store of
// 100,000 jobs, the build held SQLite's write lock for seconds while
// submissions waited (docs/benchmarks.md, "History"). A scheduler asks
// while it stands by (Run), and a leadership only if that did not succeed
// yet, so that a takeover does not wait for it. A failure is only logged:
// the next leadership, or the estimates, make them. On MongoDB (no Lookup)
// there is nothing to make: the API made its indexes.
func (s *Scheduler) prepareHistoryIndexes(ctx context.Context) {
	if s.finished.Lookup == nil {
		return
	}
	s.prepareMu.Lock()
	defer s.prepareMu.Unlock()
	if s.prepared {
		return
	}
	for _, app := range [][]indexed.Cond{appConds(events.JobApplication{ID: "none"}), appConds(events.JobApplication{}), nil} {
		// As long as a build takes (it is not cut short by a deadline).
		pctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		_, err := s.finished.Latest(pctx, finishedOn("", app...), "finished_at", 1)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("prepare the run history's index; the first estimate will make it", "err", err)
			}
			return
		}
	}
	s.prepared = true
}

// lastFinished reads the last historyRuns jobs that finished on queue
// queueID and also meet app (conditions on the application), of which it
// returns those that ran (started and finished), oldest first. It reads
// through the index on (queue_id, application, status, finished_at): on
// the embedded store a filter would decode every job ever stored, which
// took longer than the timeout with 100,000 finished jobs, every time the
// estimates were computed.
func (t *term) lastFinished(ctx context.Context, queueID string, app ...indexed.Cond) ([]*events.Job, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	docs, err := t.s.finished.Latest(ctx, finishedOn(queueID, app...), "finished_at", historyRuns)
	if err != nil {
		return nil, err
	}
	var done []*events.Job
	for _, d := range docs {
		var j events.Job
		if err := bson.Unmarshal(d, &j); err != nil {
			return nil, err
		}
		if j.StartedAt != nil && j.FinishedAt != nil {
			done = append(done, &j)
		}
	}
	slices.Reverse(done) // oldest first
	return done, nil
}

// lags returns the median lags of queue queueID (see queueLags), read
// from the store once per leadership, then from events.
func (t *term) lags(ctx context.Context) lagFunc {
	return func(queueID string) (time.Duration, time.Duration) {
		l := t.est.lagsOf(queueID)
		if !l.loaded && t.est.reads.May(t.s.deps.Now()) {
			done, err := t.lastFinished(ctx, queueID)
			if err != nil {
				wait := t.est.reads.FailedWith(t.s.deps.Now(), err)
				t.log.Warn("read lags for start estimates; trying again later", "queue", queueID, "err", err, "retry_in", wait)
			} else {
				t.est.reads.Succeeded()
				fresh := &queueLags{loaded: true}
				for _, j := range done {
					if d, ok := ranFor(j); ok {
						fresh.observe(j, d)
					}
				}
				for i, id := range l.start.ids { // seen in events meanwhile: newer
					fresh.start.add(id, l.start.runs[i])
				}
				for i, id := range l.end.ids {
					fresh.end.add(id, l.end.runs[i])
				}
				t.est.lags[queueID], l = fresh, fresh
			}
		}
		start, _ := l.start.median()
		end, _ := l.end.median()
		return start, end
	}
}

// runTime is the expected run time of job j: its max_run_seconds, else its
// queue's default_max_run_seconds, else the median run time of the last
// finished jobs of its application on its queue.
func (t *term) runTime(ctx context.Context) runTimeFunc {
	return func(j *events.Job) (time.Duration, string, bool) {
		if j.MaxRunSeconds != nil {
			return time.Duration(*j.MaxRunSeconds) * time.Second, events.BasisMaxRunSeconds, true
		}
		if q := t.queues[j.QueueID]; q != nil && q.Scheduling.DefaultMaxRunSeconds != nil {
			return time.Duration(*q.Scheduling.DefaultMaxRunSeconds) * time.Second, events.BasisDefaultMaxRunSeconds, true
		}
		if d, ok := t.loadHistory(ctx, j).median(); ok {
			return d, events.BasisMedianRunTime, true
		}
		return 0, events.BasisUnknown, false
	}
}

// publishEstimates starts a computation of the estimates unless one runs
// or the last ended too recently, and writes the snapshots that changed. The
// run times and lags are taken here, in the loop (they may read the store
// once); the simulation and the writes run apart on copies, so that a long
// queue never holds up admission. The next computation waits at least
// estimateEvery and ten times what the last one took, so that estimates
// cost the scheduler at most about a tenth of its time. A failed write is
// logged: the next computation writes again what differs.
func (t *term) publishEstimates(ctx context.Context) {
	now := t.s.deps.Now()
	t.est.mu.Lock()
	wait := now.Before(t.est.next)
	t.est.mu.Unlock()
	if wait || !t.est.busy.CompareAndSwap(false, true) {
		return
	}
	runTime, lags := t.runTime(ctx), t.lags(ctx)
	type known struct {
		d     time.Duration
		basis string
		ok    bool
	}
	runs := make(map[string]known, len(t.jobs))
	queueLag := map[string][2]time.Duration{}
	for id, j := range t.jobs {
		d, b, ok := runTime(j)
		runs[id] = known{d, b, ok}
		if _, done := queueLag[j.QueueID]; !done {
			s, e := lags(j.QueueID)
			queueLag[j.QueueID] = [2]time.Duration{s, e}
		}
	}
	ledger := lease.Ledger{Leases: maps.Clone(t.ledger.Leases)}
	queues, jobs, maxParallel := maps.Clone(t.queues), maps.Clone(t.jobs), maps.Clone(t.gate().maxParallel)
	go func() {
		defer t.est.busy.Store(false)
		began := time.Now()
		ests := estimateStarts(ledger, queues, jobs, now,
			func(j *events.Job) (time.Duration, string, bool) { k := runs[j.ID]; return k.d, k.basis, k.ok },
			func(q string) (time.Duration, time.Duration) { l := queueLag[q]; return l[0], l[1] }, maxParallel)
		computed := time.Since(began)
		wrote := t.writeEstimates(ctx, ests, now)
		t.est.mu.Lock()
		t.est.next = now.Add(estimateSpacing(computed, wrote))
		t.est.mu.Unlock()
	}()
}

// estimateSpacing is the time from one computation of the estimates to the
// next, after one that took computed and whose writes took wrote: at least
// estimateEvery, ten times the computation (the CPU) and a hundred times the
// writes (the store's write lock). The writes alone never space them by more
// than maxEstimateSpacing, so a store that is slow for a while does not
// stop the snapshots for long. Before 2026-12-04 it was ten times computed
// and wrote together: the writes could hold the store a tenth of the time.
func estimateSpacing(computed, wrote time.Duration) time.Duration {
	return max(estimateEvery, 10*computed, min(estimateWriteSpacing*wrote, maxEstimateSpacing))
}

// writeEstimates writes the snapshots of ests that differ from what was
// written last, and returns how long the writes that succeeded took. Only
// one runs at a time (estimator.busy).
func (t *term) writeEstimates(ctx context.Context, ests map[string][]pendingEstimate, now time.Time) (took time.Duration) {
	coll := t.s.deps.DB.Collection(events.EstimatesCollection)
	for _, qid := range queueIDsOf(ests, t.est.written) {
		cur := ests[qid]
		if sameEstimates(t.est.written[qid], cur) {
			continue
		}
		doc := events.QueueEstimates{QueueID: qid, Epoch: t.epoch, ComputedAt: now, Jobs: make([]events.JobEstimate, len(cur))}
		for i, e := range cur {
			doc.Jobs[i] = events.JobEstimate{JobID: e.jobID, Position: e.position, StartAt: e.start, Basis: e.basis}
		}
		wctx, cancel := context.WithTimeout(ctx, writeTimeout)
		began := time.Now()
		_, err := coll.ReplaceOne(wctx, bson.D{{Key: "_id", Value: qid}}, doc, options.Replace().SetUpsert(true))
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				t.log.Warn("write start estimates", "queue", qid, "err", err)
			}
			continue
		}
		took += time.Since(began)
		if len(cur) == 0 {
			delete(t.est.written, qid)
		} else {
			t.est.written[qid] = cur
		}
	}
	return took
}

func queueIDsOf(a, b map[string][]pendingEstimate) []string {
	ids := map[string]bool{}
	for id := range a {
		ids[id] = true
	}
	for id := range b {
		ids[id] = true
	}
	out := make([]string, 0, len(ids))
	for id := range ids {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// sameEstimates reports whether b says what a says: same jobs in the same
// order with the same bases, and starts within estimateSlack.
func sameEstimates(a, b []pendingEstimate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.jobID != y.jobID || x.position != y.position || x.basis != y.basis || (x.start == nil) != (y.start == nil) {
			return false
		}
		if x.start != nil && (x.start.Sub(*y.start) > estimateSlack || y.start.Sub(*x.start) > estimateSlack) {
			return false
		}
	}
	return true
}
