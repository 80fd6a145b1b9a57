package scheduler

import (
	"context"
	"fmt"
	"testing"

	"github.com/avxrm/rm/pkg/events"
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
