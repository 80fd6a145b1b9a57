package scheduler

import (
	"testing"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/pkg/events/outbox"
)

// A job's end whose event its writer failed to publish (NATS restarting
// under the launcher) reaches the scheduler from the store, at its resync.
// The job given its workers must not be announced admitted before that end:
// the scheduler publishes the finished job's unsent events first, so that a
// replay of the stream never finds the queue over its limit.
func TestEndLearnedFromTheStorePrecedesTheAdmissionItAllows(t *testing.T) {
	e := newEnv(t)
	q := e.queue("Default", ptr(4))
	e.start(testConfig())
	holder := e.submit(q, 4)
	e.waitStatus(holder, events.JobAdmitted)
	waiter := e.submit(q, 4)
	e.waitStatus(waiter, events.JobPending)

	// The launcher's final write is stored, its event not published: only
	// a relay sweep would (never here), so the scheduler learns of the end
	// at its resync (ResyncInterval 2 s).
	launcher := outbox.New(events.NewPublisher(e.js), nil)
	launcher.WithoutInlineFlush(t)
	own := e.ob
	e.ob = launcher
	e.finish(holder, events.JobSucceeded)
	e.ob = own
	e.waitStatus(waiter, events.JobAdmitted)

	var evs []events.Event
	e.eventually("the waiter's admitted event", func() bool {
		evs = eventstest.ReadAll(t, e.js, events.FilterSubject(events.KindJob, "", ""))
		return indexOf(evs, waiter, events.TypeJobAdmitted) >= 0
	})
	end, admitted := indexOf(evs, holder, events.TypeJobSucceeded), indexOf(evs, waiter, events.TypeJobAdmitted)
	if end < 0 || end > admitted {
		t.Errorf("the holder's end at %d, the waiter's admission at %d in the stream: the end must come first", end, admitted)
	}
}

// indexOf is the position in evs of the first event of type typ about job id, or -1.
func indexOf(evs []events.Event, id, typ string) int {
	for i, ev := range evs {
		if ev.ResourceID == id && ev.Type == typ {
			return i
		}
	}
	return -1
}
