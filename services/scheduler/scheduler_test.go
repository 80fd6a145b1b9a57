package scheduler

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/scheduler/internal/lease"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Service-level tests: each rule of the scheduler through the real store and
// the real event stream.

func TestAdmitsPendsAndHandsOver(t *testing.T) {
	e := newEnv(t)
	q := e.queue("Default", ptr(10))
	e.start(testConfig())

	j1 := e.submit(q, 10)
	got := e.waitStatus(j1, events.JobAdmitted)
	if c := admittedCond(got); c.Status != "True" || got.AdmittedAt == nil {
		t.Errorf("admitted job: condition %+v, admitted_at %v", c, got.AdmittedAt)
	}
	if got.Runtime.Image != "sim:1" {
		t.Errorf("the scheduler's write lost the runtime spec: %+v", got.Runtime)
	}
	j2 := e.submit(q, 8)
	got = e.waitStatus(j2, events.JobPending)
	want := events.Condition{Type: condAdmitted, Status: "False", Reason: "InsufficientWorkerCapacity",
		Message: "queue Default allows 10 worker instances, 10 in use, job needs 8", LastTransitionTime: t0}
	if diff := cmp.Diff([]events.Condition{want}, got.Conditions); diff != "" {
		t.Errorf("pending conditions (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{want.Message}, got.Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	// Passes go on (ticks, its own events); the reason does not change, so
	// neither does the job.
	time.Sleep(300 * time.Millisecond)
	if v := e.job(j2).Version; v != got.Version {
		t.Errorf("pending job rewritten without a change: version %d → %d", got.Version, v)
	}

	e.finish(j1, events.JobSucceeded)
	e.waitStatus(j2, events.JobAdmitted)
	e.eventually("j1's lease released", func() bool { _, held := e.ledger().Leases[j1]; return !held })
	l := e.ledger()
	if diff := cmp.Diff(map[string][]lease.Claim{j2: {{Queue: q, Count: 8}, {Queue: e.ctlID, Count: 1}}}, l.Leases); diff != "" {
		t.Errorf("leases (-want +got):\n%s", diff)
	}
	// The event follows the stored change (outbox): wait for it.
	want2 := []string{events.TypeJobSubmitted, events.TypeJobPending, events.TypeJobAdmitted}
	var got2 []string
	e.eventually("admitted event", func() bool { got2 = e.jobEvents(j2); return len(got2) >= len(want2) })
	if diff := cmp.Diff(want2, got2); diff != "" {
		t.Errorf("events of job 2 (-want +got):\n%s", diff)
	}
}

func TestControllerQueueFull(t *testing.T) {
	e := newEnv(t)
	q := e.queue("Default", ptr(100))
	e.updateQueue(e.ctlID, func(q *events.Queue) { q.MaximumAllowedWorkerInstances = ptr(1) })
	e.start(testConfig())
	j1 := e.submit(q, 1)
	e.waitStatus(j1, events.JobAdmitted)
	j2 := e.submit(q, 1)
	got := e.waitStatus(j2, events.JobPending)
	c := admittedCond(got)
	if c.Reason != "InsufficientControllerCapacity" || c.Message != "queue simulation-controller-queue allows 1 instance, 1 in use, job needs 1" {
		t.Errorf("condition %+v", c)
	}
}

func TestPriorityThenSubmissionOrder(t *testing.T) {
	e := newEnv(t)
	q := e.queue("Default", ptr(4))
	e.start(testConfig())
	blocker := e.submit(q, 4)
	e.waitStatus(blocker, events.JobAdmitted)
	e.clock.Advance(time.Second)
	early := e.submit(q, 4)
	e.clock.Advance(time.Second)
	urgent := e.submit(q, 4, func(j *events.Job) { j.Priority = 5 })
	e.waitStatus(early, events.JobPending)
	e.waitStatus(urgent, events.JobPending)
	e.finish(blocker, events.JobSucceeded)
	e.waitStatus(urgent, events.JobAdmitted)
	if s := e.job(early).Status; s != events.JobPending {
		t.Errorf("lower priority job %s", s)
	}
	e.finish(urgent, events.JobFailed)
	e.waitStatus(early, events.JobAdmitted)
}

func TestBackfillAndStarvationGuard(t *testing.T) {
	e := newEnv(t)
	q := e.queue("Default", ptr(10), func(q *events.Queue) { q.Scheduling.StarvationSeconds = ptr(60) })
	e.start(testConfig())
	big := e.submit(q, 7)
	e.waitStatus(big, events.JobAdmitted)
	four := e.submit(q, 4)
	e.waitStatus(four, events.JobPending)
	three := e.submit(q, 3) // backfilled: fits in the 3 free
	e.waitStatus(three, events.JobAdmitted)
	e.finish(three, events.JobSucceeded)

	// Past the starvation limit the job needing 4 pauses backfill on the queue.
	e.clock.Advance(2 * time.Minute)
	two := e.submit(q, 2)
	got := e.waitStatus(two, events.JobPending)
	if c := admittedCond(got); c.Reason != "BlockedByStarvingJob" {
		t.Errorf("backfill during starvation: %+v", c)
	}
	e.finish(big, events.JobSucceeded)
	e.waitStatus(four, events.JobAdmitted)
	e.waitStatus(two, events.JobAdmitted)
}

func TestLimitChangesTakeEffectAtOnceAndStopNothing(t *testing.T) {
	e := newEnv(t)
	q := e.queue("Default", ptr(10))
	e.start(testConfig())
	a := e.submit(q, 6)
	e.waitStatus(a, events.JobAdmitted)
	b := e.submit(q, 6)
	e.waitStatus(b, events.JobPending)

	e.updateQueue(q, func(q *events.Queue) { q.MaximumAllowedWorkerInstances = ptr(4) })
	got := e.waitStatus(b, events.JobPending)
	e.eventually("reason follows the lowered limit", func() bool {
		got = e.job(b)
		return admittedCond(got).Reason == "ExceedsQueueLimit"
	})
	if s := e.job(a).Status; s != events.JobAdmitted {
		t.Errorf("running job after the limit was lowered: %s", s)
	}
	if l := e.ledger(); len(l.Leases[a]) != 2 {
		t.Errorf("lease of the running job: %+v", l.Leases[a])
	}
	e.updateQueue(q, func(q *events.Queue) { q.MaximumAllowedWorkerInstances = nil })
	e.waitStatus(b, events.JobAdmitted)
}

func TestCancelAndCleanupBeforeAdmission(t *testing.T) {
	e := newEnv(t)
	q := e.queue("Default", ptr(2))
	e.start(testConfig())
	a := e.submit(q, 2)
	e.waitStatus(a, events.JobAdmitted)
	b := e.submit(q, 2)
	c := e.submit(q, 2)
	e.waitStatus(b, events.JobPending)
	e.change(b, events.TypeJobCancelRequested, func(j *events.Job) bool { j.CancelRequested = true; return true })
	got := e.waitStatus(b, events.JobCancelled)
	if got.FinishedAt == nil || got.CleanedAt != nil {
		t.Errorf("cancelled job: finished_at %v cleaned_at %v", got.FinishedAt, got.CleanedAt)
	}
	e.change(c, events.TypeJobUpdated, func(j *events.Job) bool { j.CancelRequested, j.CleanupRequested = true, true; return true })
	got = e.waitStatus(c, events.JobCancelled)
	if got.CleanedAt == nil {
		t.Errorf("cleanup of a pending job: cleaned_at not set")
	}
	// Cleanup of a final job releases nothing twice and sets cleaned_at.
	e.finish(a, events.JobSucceeded)
	e.change(a, events.TypeJobUpdated, func(j *events.Job) bool { j.CleanupRequested = true; return true })
	e.eventually("cleaned", func() bool { return e.job(a).CleanedAt != nil })
	if l := e.ledger(); len(l.Leases) != 0 {
		t.Errorf("leases left: %+v", l.Leases)
	}
	types := e.jobEvents(a)
	if n := count(types, events.TypeJobCleaned); n != 1 {
		t.Errorf("cleaned events of job a: %v", types)
	}
}

func TestDuplicateAndLateEventsChangeNothing(t *testing.T) {
	e := newEnv(t)
	q := e.queue("Default", ptr(5))
	s, _ := e.start(testConfig())
	a := e.submit(q, 5)
	e.waitStatus(a, events.JobAdmitted)
	e.finish(a, events.JobSucceeded)
	e.eventually("released", func() bool { return len(e.ledger().Leases) == 0 })
	before := e.ledger()

	// Re-publish every event of the job (new ids, so JetStream does not drop
	// them): the submitted one would admit a finished job again if events
	// were taken for state.
	pub := events.NewPublisher(e.js)
	for _, typ := range []string{events.TypeJobSubmitted, events.TypeJobAdmitted, events.TypeJobSucceeded} {
		j := e.job(a)
		j.Status = map[string]string{events.TypeJobSubmitted: events.JobSubmitted, events.TypeJobAdmitted: events.JobAdmitted, events.TypeJobSucceeded: events.JobSucceeded}[typ]
		j.Version = 1
		ev, err := events.New(typ, "/rm/test", q, a, &j)
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	passes := testutil.ToFloat64(s.metrics.passes)
	e.eventually("events consumed", func() bool { return testutil.ToFloat64(s.metrics.passes) > passes+2 })
	if got := e.ledger(); got.Version != before.Version || len(got.Leases) != 0 {
		t.Errorf("ledger changed by stale events: %+v → %+v", before, got)
	}
	if got := e.job(a); got.Status != events.JobSucceeded {
		t.Errorf("job after stale events: %s", got.Status)
	}
	if n := count(e.jobEvents(a), events.TypeJobAdmitted); n != 2 { // the real one and the re-published one
		t.Errorf("admitted events: %d", n)
	}
}

// A crash between the ledger write and the job writes leaves leases whose
// jobs do not say so yet; a new leader completes or undoes them.
func TestReconcilesAtStart(t *testing.T) {
	e := newEnv(t)
	q := e.queue("Default", ptr(10))
	granted := e.submit(q, 3)   // lease written, job not yet marked admitted
	finished := e.submit(q, 2)  // lease of a job that finished meanwhile
	cancelled := e.submit(q, 1) // lease of a job whose cancel was requested meanwhile
	orphan := e.submit(q, 4)    // admitted without a lease: cannot happen
	gone := "job-deleted"       // lease of a job deleted meanwhile
	e.change(finished, events.TypeJobFailed, func(j *events.Job) bool { j.Status = events.JobFailed; return true })
	e.change(cancelled, events.TypeJobCancelRequested, func(j *events.Job) bool { j.CancelRequested = true; return true })
	e.change(orphan, events.TypeJobAdmitted, func(j *events.Job) bool { j.Status = events.JobAdmitted; return true })
	st := lease.New(e.db)
	if err := st.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	l, err := st.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	claims := func(n int) []lease.Claim { return []lease.Claim{{Queue: q, Count: n}, {Queue: e.ctlID, Count: 1}} }
	if err := st.Apply(context.Background(), &l, lease.Change{Grants: map[string][]lease.Claim{
		granted: claims(3), finished: claims(2), cancelled: claims(1), gone: claims(1),
	}}); err != nil {
		t.Fatal(err)
	}

	s, _ := e.start(testConfig())
	e.waitStatus(granted, events.JobAdmitted)
	e.waitStatus(cancelled, events.JobCancelled)
	e.eventually("leases reconciled", func() bool {
		return slices.Equal(e.ledger().Holders(), []string{granted, orphan})
	})
	if n := testutil.ToFloat64(s.metrics.violations); n != 1 {
		t.Errorf("violations counted: %v, want 1 (the admitted job without a lease)", n)
	}
	if a := e.ledger().Allocated()[q]; a != 7 {
		t.Errorf("allocated on the queue: %d, want 7", a)
	}
}

func TestPostController(t *testing.T) {
	e := newEnv(t)
	q := e.queue("Default", nil)
	e.updateQueue(e.pcID, func(q *events.Queue) { q.MaximumAllowedWorkerInstances = ptr(1) })
	e.start(testConfig())
	a, b := e.submit(q, 1), e.submit(q, 1)
	e.waitStatus(a, events.JobAdmitted)
	e.waitStatus(b, events.JobAdmitted)
	request := func(id string) {
		e.change(id, events.TypeJobUpdated, func(j *events.Job) bool {
			j.PostController = &events.PostController{Status: pcPending, RequestedAt: e.clock.Now()}
			return true
		})
	}
	request(a)
	e.eventually("a's post controller admitted", func() bool { return e.job(a).PostController.Status == pcAdmitted })
	request(b)
	var cond events.Condition
	e.eventually("b's post controller waits", func() bool {
		for _, c := range e.job(b).Conditions {
			if c.Type == condPostControllerAdmitted {
				cond = c
			}
		}
		return cond.Status == "False"
	})
	if cond.Message != "queue post-controller-queue allows 1 instance, 1 in use, post-controller needs 1" {
		t.Errorf("post controller wait message %q", cond.Message)
	}
	e.change(a, events.TypeJobUpdated, func(j *events.Job) bool { j.PostController.Status = pcStopped; return true })
	e.eventually("b's post controller admitted", func() bool { return e.job(b).PostController.Status == pcAdmitted })
	if h := e.ledger().Holders(); !slices.Contains(h, b+postControllerSuffix) || slices.Contains(h, a+postControllerSuffix) {
		t.Errorf("holders %v", h)
	}
}

func TestDeletedJobReleases(t *testing.T) {
	e := newEnv(t)
	q := e.queue("Default", ptr(3))
	e.start(testConfig())
	a := e.submit(q, 3)
	e.waitStatus(a, events.JobAdmitted)
	b := e.submit(q, 3)
	e.waitStatus(b, events.JobPending)
	j := e.job(a)
	ev, err := events.New(events.TypeJobDeleted, "/rm/api", q, a, &j)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ob.Delete(context.Background(), e.db.Collection(JobsCollection), a, j.Version, nil, ev); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(b, events.JobAdmitted)
}

// The fencing epoch: once a newer leader has raised it, the ledger refuses a
// deposed leader's writes.
func TestLedgerFencing(t *testing.T) {
	e := newEnv(t)
	st := lease.New(e.db)
	ctx := context.Background()
	if err := st.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	old, err := st.RaiseEpoch(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.RaiseEpoch(ctx, 7); err != nil {
		t.Fatal(err)
	}
	err = st.Apply(ctx, &old, lease.Change{Grants: map[string][]lease.Claim{"job-x": {{Queue: "q", Count: 1}}}})
	if !errors.Is(err, lease.ErrFenced) {
		t.Errorf("write at a deposed epoch: %v, want ErrFenced", err)
	}
	if _, err := st.RaiseEpoch(ctx, 5); !errors.Is(err, lease.ErrFenced) {
		t.Errorf("raising to an older epoch: %v, want ErrFenced", err)
	}
	if l := e.ledger(); len(l.Leases) != 0 || l.Epoch != 7 {
		t.Errorf("ledger %+v", l)
	}
}

// Two schedulers: one leads; when it dies without resigning, the other takes
// over within the TTL and fences it out. Jobs are admitted once.
func TestFailover(t *testing.T) {
	e := newEnv(t)
	q := e.queue("Default", ptr(4))
	a, stopA := e.start(testConfig())
	b, _ := e.startStandby(testConfig())
	if !a.Leading() || b.Leading() {
		t.Fatalf("leading: a %v b %v", a.Leading(), b.Leading())
	}
	j1 := e.submit(q, 4)
	e.waitStatus(j1, events.JobAdmitted)
	j2 := e.submit(q, 4)
	e.waitStatus(j2, events.JobPending)

	stopA() // resigns: b takes over at its next attempt
	e.eventually("b leads", b.Leading)
	if b.Epoch() <= a.Epoch() {
		t.Errorf("epochs: a %d, b %d", a.Epoch(), b.Epoch())
	}
	e.finish(j1, events.JobSucceeded)
	e.waitStatus(j2, events.JobAdmitted)
	if n := count(e.jobEvents(j2), events.TypeJobAdmitted); n != 1 {
		t.Errorf("job 2 admitted %d times", n)
	}
	if l := e.ledger(); l.Epoch != b.Epoch() {
		t.Errorf("ledger epoch %d, b's %d", l.Epoch, b.Epoch())
	}
}

func count(xs []string, x string) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}
