package scheduler

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.mongodb.org/mongo-driver/v2/bson"

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
	// The launcher's final write is stored, its event not published: only
	// a relay sweep would (never here), so the scheduler learns of the end
	// at its resync (ResyncInterval 2 s).
	e, _, holder, waiter, launcher := handOver(t)
	own := e.ob
	e.ob = launcher
	e.finish(holder, events.JobSucceeded)
	e.ob = own
	e.waitStatus(waiter, events.JobAdmitted)
	endBeforeAdmission(e, holder, waiter)
}

// handOver is a scheduler leading a queue of 4 workers, holder's admitted
// job holding them and waiter's waiting for them, and an outbox that stores
// the launcher's writes without publishing their events.
func handOver(t *testing.T) (e *env, s *Scheduler, holder, waiter string, launcher *outbox.Outbox) {
	e = newEnv(t)
	q := e.queue("Default", ptr(4))
	s, _ = e.start(testConfig())
	holder = e.submit(q, 4)
	e.waitStatus(holder, events.JobAdmitted)
	waiter = e.submit(q, 4)
	e.waitStatus(waiter, events.JobPending)
	launcher = outbox.New(events.NewPublisher(e.js), nil)
	launcher.WithoutInlineFlush(t)
	return e, s, holder, waiter, launcher
}

// endBeforeAdmission checks that the stream has the holder's end before
// the waiter's admission (waiting for that), so that a replay of it never
// finds the queue over its limit.
func endBeforeAdmission(e *env, holder, waiter string) {
	e.t.Helper()
	var evs []events.Event
	e.eventually("the waiter's admitted event", func() bool {
		evs = eventstest.ReadAll(e.t, e.js, events.FilterSubject(events.KindJob, "", ""))
		return indexOf(evs, waiter, events.TypeJobAdmitted) >= 0
	})
	end, admitted := indexOf(evs, holder, events.TypeJobSucceeded), indexOf(evs, waiter, events.TypeJobAdmitted)
	if end < 0 || end > admitted {
		e.t.Errorf("the holder's end at %d, the waiter's admission at %d in the stream: the end must come first", end, admitted)
	}
}

// A write that takes a job through running to its end publishes
// rm.job.running, then the end's event, both with the ended job (the
// launcher's, when the job's instances started and ended between two of its
// rounds). The scheduler waits for the end's own event to release the
// job's workers: taken from the first, the end was one it had not seen in
// the stream, and it published the job's events again itself (a store read
// and two duplicate publications) before every such hand-over.
func TestEndAnnouncedByTheRunningEventWaitsForItsOwnEvent(t *testing.T) {
	// The launcher's write, its two events published one by one below.
	e, s, holder, waiter, launcher := handOver(t)
	coll := e.db.Collection(JobsCollection)
	raw, err := coll.FindOne(context.Background(), bson.D{{Key: "_id", Value: holder}}).Raw()
	if err != nil {
		t.Fatal(err)
	}
	var j events.Job
	var en outbox.Envelope
	_ = bson.Unmarshal(raw, &j)
	_ = bson.Unmarshal(raw, &en)
	prev := j.Version
	j.Version++
	now := e.clock.Now()
	j.Status, j.StartedAt, j.FinishedAt, j.UpdatedAt = events.JobSucceeded, &now, &now, now
	var evs []events.Event
	for _, typ := range []string{events.TypeJobRunning, events.TypeJobSucceeded} {
		ev, err := events.New(typ, "/rm/test", j.QueueID, j.ID, &j)
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if err := launcher.Replace(context.Background(), coll, holder, prev, j.Version, en.Outbox, &j, evs...); err != nil {
		t.Fatal(err)
	}
	p := events.NewPublisher(e.js)
	if err := p.Publish(context.Background(), evs[0]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // ten ticks: the pass has run
	if got := e.job(waiter).Status; got != events.JobPending {
		t.Fatalf("the waiter is %s before the holder's end event, want pending", got)
	}
	if err := p.Publish(context.Background(), evs[1]); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(waiter, events.JobAdmitted)
	if n := testutil.ToFloat64(s.metrics.unseenEnds); n != 0 {
		t.Errorf("the scheduler published %v of the holder's events itself, want none: its end came in the stream", n)
	}
	endBeforeAdmission(e, holder, waiter)
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
