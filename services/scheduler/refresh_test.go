package scheduler

import (
	"fmt"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/jobdoc"
)

// With thousands of jobs waiting, a message whose only change is its
// numbers is rewritten at refreshRate a second over all of them (after a
// burst), not once per job every messageRefresh: a 4,000-job backlog would
// otherwise cost 130 writes a second. A changed reason is written at once,
// up to reasonRate a second over all jobs after a burst.
func TestWaitRefreshesAreRateLimited(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tm := &term{s: &Scheduler{deps: Deps{Now: func() time.Time { return now }}}, jobs: map[string]*events.Job{}, waitWrites: newWaitWrites()}
	const waiting = 4000
	for i := range waiting {
		id := fmt.Sprintf("job-%d", i)
		j := &events.Job{Meta: events.Meta{ID: id, UpdatedAt: now.Add(-time.Minute)}, Status: events.JobPending}
		jobdoc.SetCondition(j, condAdmitted, "False", "InsufficientWorkerCapacity", "queue q allows 30 worker instances, 29 in use, job needs 2", now.Add(-time.Minute))
		tm.jobs[id] = j
	}
	pass := func() (writes int) {
		for i := range waiting {
			if !tm.waitUnchanged(fmt.Sprintf("job-%d", i), false, "InsufficientWorkerCapacity", "queue q allows 30 worker instances, 28 in use, job needs 2") {
				writes++
			}
		}
		return writes
	}
	if n := pass(); n != refreshBurst {
		t.Errorf("first pass: %d refreshes, want the burst of %d", n, refreshBurst)
	}
	total := 0
	for range 10 { // 10 s of passes, 10 a second
		for range 10 {
			now = now.Add(100 * time.Millisecond)
			total += pass()
		}
	}
	if total > 10*refreshRate+1 {
		t.Errorf("%d refreshes in the next 10 s, want at most %d", total, 10*refreshRate+1)
	}
	if tm.waitUnchanged("job-1", false, "BlockedByStarvingJob", "queue q: job job-0 has waited 6m (limit 5m0s)") {
		t.Error("a changed reason waited for the refresh budget")
	}

	// Reasons flipping on every job at once: a burst, then reasonRate a second.
	flips := 0
	for i := range waiting {
		if !tm.waitUnchanged(fmt.Sprintf("job-%d", i), false, "BlockedByStarvingJob", "queue q: job job-0 has waited 6m (limit 5m0s)") {
			flips++
		}
	}
	if flips > reasonBurst {
		t.Errorf("%d of %d changed reasons written in one pass, want at most the burst of %d", flips, waiting, reasonBurst)
	}
	now = now.Add(time.Second)
	flips = 0
	for i := range waiting {
		if !tm.waitUnchanged(fmt.Sprintf("job-%d", i), false, "BlockedByStarvingJob", "queue q: job job-0 has waited 6m (limit 5m0s)") {
			flips++
		}
	}
	if flips > reasonRate+1 {
		t.Errorf("%d changed reasons written a second later, want at most %d", flips, reasonRate)
	}
}
