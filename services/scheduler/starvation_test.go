package scheduler

import (
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/scheduler/internal/admit"
	"github.com/avxrm/rm/services/scheduler/internal/lease"
)

// TestPlanStarvationGuardByDefault: on a queue limited to 10 that sets no
// starvation_seconds, a 10-worker job that has waited past 300 s pauses the
// backfill of a stream of 3-worker jobs, and both messages say so;
// starvation_seconds: 0 turns the guard off.
func TestPlanStarvationGuardByDefault(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	plan := func(starvation *int, waited time.Duration) map[string]waiting {
		limit := 10
		queues := map[string]*events.Queue{
			"q-d":   {Meta: events.Meta{ID: "q-d"}, Name: "Default", MaximumAllowedWorkerInstances: &limit, Scheduling: events.QueueScheduling{StarvationSeconds: starvation}},
			"q-ctl": {Meta: events.Meta{ID: "q-ctl"}, Name: events.ControllerQueue},
		}
		now := t0.Add(waited)
		jobs := map[string]*events.Job{
			"running": {Meta: events.Meta{ID: "running"}, QueueID: "q-d", Status: events.JobRunning, WorkerInstances: 3, SubmittedAt: t0},
			"big":     {Meta: events.Meta{ID: "big"}, QueueID: "q-d", Status: events.JobPending, WorkerInstances: 10, SubmittedAt: t0},
			"small":   {Meta: events.Meta{ID: "small"}, QueueID: "q-d", Status: events.JobPending, WorkerInstances: 3, SubmittedAt: now.Add(-time.Second)},
		}
		ledger := lease.Ledger{Leases: map[string][]lease.Claim{"running": {{Queue: "q-d", Count: 3}, {Queue: "q-ctl", Count: 1}}}}
		p := planPass(ledger, queues, jobs, now, gate{})
		out := map[string]waiting{}
		for _, w := range p.waits {
			out[w.id] = w
		}
		for _, id := range p.admitJobs {
			out[id] = waiting{id: id, reason: "Admitted"}
		}
		return out
	}
	zero := 0

	got := plan(nil, 299*time.Second)
	if got["small"].reason != "Admitted" || strings.Contains(got["big"].message, admit.StarvationGuardNote) {
		t.Errorf("before 300 s: small %+v, big %+v; want small backfilled and no guard", got["small"], got["big"])
	}

	got = plan(nil, 301*time.Second)
	if w := got["small"]; w.reason != admit.ReasonBlockedByStarvingJob || !strings.Contains(w.message, "job big has waited") {
		t.Errorf("after 300 s without starvation_seconds: small %+v; want %s naming big", w, admit.ReasonBlockedByStarvingJob)
	}
	if w := got["big"]; w.reason != admit.ReasonInsufficientWorkerCapacity ||
		!strings.Contains(w.message, admit.StarvationGuardNote+" on queue Default: waited 5m1s, past the starvation limit of 5m0s") {
		t.Errorf("after 300 s: big %+v; want its message to say the guard holds backfill for it", w)
	}

	got = plan(&zero, time.Hour)
	if got["small"].reason != "Admitted" || strings.Contains(got["big"].message, admit.StarvationGuardNote) {
		t.Errorf("starvation_seconds 0: small %+v, big %+v; want the guard off", got["small"], got["big"])
	}
	t.Logf("big's message under the guard: %q", plan(nil, 301*time.Second)["big"].message)
}

func TestGuardChangeIsWrittenAtOnce(t *testing.T) {
	plain := "queue Default allows 10 worker instances, 3 in use, job needs 10"
	guarded := plain + "; " + admit.StarvationGuardNote + " on queue Default: …"
	if !guardChanged(plain, guarded) || !guardChanged(guarded, plain) || guardChanged(plain, plain+"x") {
		t.Error("guardChanged does not tell a guard change from a change of numbers")
	}
}
