package scheduler

import (
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/google/go-cmp/cmp"
)

// A retried job (put back to submitted by the launcher, with its attempt
// recorded) gives its old lease back: the job waiting behind it is
// admitted in that pass, the retried one waits, and is admitted again,
// once, when capacity frees. Its events go admitted, retrying, pending
// (twice), admitted; the ledger never holds more than the queue's limit.
func TestRetryReleasesTheOldLeaseAndAdmitsAgain(t *testing.T) {
	e := newEnv(t)
	q := e.queue("Default", ptr(10))
	e.start(testConfig())
	j1 := e.submit(q, 8)
	first := e.waitStatus(j1, events.JobAdmitted)
	j2 := e.submit(q, 8)
	e.waitStatus(j2, events.JobPending)

	e.clock.Advance(5e9)
	e.change(j1, events.TypeJobRetrying, func(j *events.Job) bool {
		now := e.clock.Now()
		j.Attempts = append(j.Attempts, events.JobAttempt{Attempt: 1, Outcome: events.RetryOnFailed, Reason: "InstanceFailed",
			Message: "worker 0 exited with code 3", AdmittedAt: j.AdmittedAt, FinishedAt: now})
		j.Status, j.Attempt = events.JobSubmitted, 2
		return true
	})
	e.waitStatus(j2, events.JobAdmitted)
	waiting := e.waitStatus(j1, events.JobPending)
	if waiting.AdmittedAt != nil || admittedCond(waiting).Status != "False" {
		t.Errorf("retried job waiting with admitted_at %v, Admitted %+v", waiting.AdmittedAt, admittedCond(waiting))
	}
	if diff := cmp.Diff(map[string]int{q: 8, e.ctlID: 1}, e.ledger().Allocated()); diff != "" {
		t.Errorf("allocated while j2 runs (-want +got):\n%s", diff)
	}

	// The pass after the requeue records why j1 still waits (j2 holds the
	// capacity); j2 ends only then, or j1 would go straight to admitted.
	e.eventually("j1 waits for capacity", func() bool {
		j := e.job(j1)
		return j.Status == events.JobPending && admittedCond(j).Reason != reasonRetrying
	})
	e.clock.Advance(5e9)
	e.finish(j2, events.JobSucceeded)
	got := e.waitStatus(j1, events.JobAdmitted)
	if c := admittedCond(got); c.Status != "True" || got.AdmittedAt == nil || got.AdmittedAt.Equal(*first.AdmittedAt) || !c.LastTransitionTime.Equal(*got.AdmittedAt) {
		t.Errorf("Admitted condition %+v, admitted_at %v (first %s)", c, got.AdmittedAt, first.AdmittedAt)
	}
	e.eventually("j2's lease released", func() bool { _, held := e.ledger().Leases[j2]; return !held })
	if diff := cmp.Diff(map[string]int{q: 8, e.ctlID: 1}, e.ledger().Allocated()); diff != "" {
		t.Errorf("allocated (-want +got):\n%s", diff)
	}
	// pending twice: Retrying, then the capacity j2 took.
	want := []string{events.TypeJobSubmitted, events.TypeJobAdmitted, events.TypeJobRetrying, events.TypeJobPending, events.TypeJobPending, events.TypeJobAdmitted}
	var evs []string
	e.eventually("j1's events", func() bool { evs = e.jobEvents(j1); return len(evs) >= len(want) })
	if diff := cmp.Diff(want, evs); diff != "" {
		t.Errorf("events of j1 (-want +got):\n%s", diff)
	}
}

// A retried job with the capacity free is admitted again by the pass after
// its requeue, not by a tick or a resync (here an hour away): that pass's
// writes settle within it, so the loop must not wait for news to run the
// next (it waited for the tick, 2 s).
func TestRetriedJobIsAdmittedAgainWithoutATick(t *testing.T) {
	e := newEnv(t)
	q := e.queue("Default", ptr(10))
	cfg := testConfig()
	cfg.TickInterval, cfg.ResyncInterval = time.Hour, time.Hour
	e.start(cfg)
	j1 := e.submit(q, 1)
	first := e.waitStatus(j1, events.JobAdmitted)
	e.clock.Advance(5e9)
	e.change(j1, events.TypeJobRetrying, func(j *events.Job) bool {
		j.Attempts = append(j.Attempts, events.JobAttempt{Attempt: 1, Outcome: events.RetryOnFailed, Reason: "InstanceFailed",
			Message: "worker 0 exited with code 3", AdmittedAt: j.AdmittedAt, FinishedAt: e.clock.Now()})
		j.Status, j.Attempt = events.JobSubmitted, 2
		return true
	})
	e.eventually("j1 admitted again", func() bool {
		j := e.job(j1)
		return j.Status == events.JobAdmitted && j.Attempt == 2 && j.AdmittedAt != nil && !j.AdmittedAt.Equal(*first.AdmittedAt)
	})
}
