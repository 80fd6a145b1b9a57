package scheduler

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/scheduler/internal/lease"
)

// A pass writes at most maxWaitWrites waits, after its admissions, and asks
// for another pass for the rest: the next admission does not wait for a
// backlog's waits (a new leader found 262 to write on the fault suite's
// busy store and admitted nothing for 12.8 s).
func TestPassWritesABoundedNumberOfWaits(t *testing.T) {
	tm := &term{s: &Scheduler{}}
	for _, n := range []int{maxWaitWrites - 1, maxWaitWrites, 3 * maxWaitWrites} {
		p := plan{admitJobs: []string{"a1", "a2"}}
		for i := range n {
			p.waits = append(p.waits, waiting{id: fmt.Sprintf("w%d", i), reason: "QueueFull", message: "the queue is full"})
		}
		writes, more := tm.writes(context.Background(), p)
		want := 2 + min(n, maxWaitWrites)
		if len(writes) != want || more != (n > maxWaitWrites) {
			t.Errorf("%d waits: %d writes, more %v; want %d, %v", n, len(writes), more, want, n > maxWaitWrites)
		}
	}
}

// The waits left out are written by the next passes: 100 jobs submitted
// before a scheduler leads, behind one that fills the queue, all end up
// pending, each announced once.
func TestEveryWaitIsWrittenInTheEnd(t *testing.T) {
	e := newEnv(t)
	q := e.queue("Default", ptr(10))
	big := e.submit(q, 10)
	var small []string
	for range 100 {
		small = append(small, e.submit(q, 1))
	}
	e.start(testConfig())
	e.waitStatus(big, events.JobAdmitted)
	for _, id := range small {
		e.waitStatus(id, events.JobPending)
	}
	for _, id := range small[:3] {
		var evs []string
		e.eventually("the pending event of "+id, func() bool { evs = e.jobEvents(id); return len(evs) >= 2 })
		if len(evs) != 2 || evs[1] != events.TypeJobPending {
			t.Errorf("events of %s: %v, want submitted, pending", id, evs)
		}
	}
}

// A job whose queue the picture lacks is not written pending with
// QueueNotFound while its queue's event may still be on its way (the API
// found the queue when it took the job), only once queueLag has passed.
// Before, a job submitted right after its queue's creation went pending,
// "queue … does not exist", until the queue's event came a moment later.
func TestAJustSubmittedJobsQueueIsNotSaidMissing(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tm := &term{s: &Scheduler{deps: Deps{Now: func() time.Time { return now }}}, jobs: map[string]*events.Job{},
		waitWrites: newWaitWrites()}
	tm.jobs["new"] = &events.Job{Meta: events.Meta{ID: "new"}, QueueID: "q-new", Status: events.JobSubmitted, SubmittedAt: now.Add(-time.Second)}
	tm.jobs["old"] = &events.Job{Meta: events.Meta{ID: "old"}, QueueID: "q-gone", Status: events.JobSubmitted, SubmittedAt: now.Add(-queueLag)}
	p := planPass(lease.Ledger{Leases: map[string][]lease.Claim{}}, map[string]*events.Queue{}, tm.jobs, now, gate{})
	writes, _ := tm.writes(context.Background(), p)
	var got []string
	for _, w := range writes {
		got = append(got, w.key.id)
	}
	if !slices.Equal(got, []string{"old"}) {
		t.Errorf("waits written for %v; want only old's, submitted queueLag ago", got)
	}
}
