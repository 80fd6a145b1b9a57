package scheduler

import (
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestFailedTakeoversBackOff: the store answers the resync's read of the
// jobs only after 3 s, past the client's 1 s timeout, as the fault suite's
// store did after the NATS restart. A scheduler whose takeover fails so must
// not campaign and read again one RenewInterval later: in 12 s, stepping
// down and retrying after 200 ms sent the read 10 times (each one left
// running in the store); with the back-off (1 s, 2 s, 4 s, …) it is sent at
// most 4 times.
func TestFailedTakeoversBackOff(t *testing.T) {
	e := newEnv(t)
	e.queue("q", ptr(1))
	slow := &mongotest.SlowReplies{Match: [][]byte{[]byte("\x02find\x00"), []byte("\x02find\x00\x05\x00\x00\x00jobs\x00")}, Delay: 3 * time.Second}
	s := runOnSlowStore(t, e, options.Client().ApplyURI(e.uri).SetDialer(slow).SetTimeout(time.Second).SetRetryReads(false))

	time.Sleep(12 * time.Second)
	n := slow.Matched.Load()
	if n == 0 {
		t.Fatal("no read of the jobs reached the store: the test does not slow what it means to")
	}
	if s.Leading() {
		t.Fatal("the scheduler leads although its resync cannot finish")
	}
	if n > 4 {
		t.Errorf("reads of the jobs sent in 12 s of failed takeovers: %d, want at most 4 (back-off 1 s, 2 s, 4 s)", n)
	}
	t.Logf("reads of the jobs sent in 12 s of failed takeovers: %d", n)
}

// TestAdmissionAfterStoreOutageIsPrompt: the store goes away as in a
// restart (its connections closed, new ones refused) for 16 s while the
// scheduler leads, with a job waiting for room that frees meanwhile. When
// the store is back, the job is admitted within a few seconds: whatever failed
// meanwhile (writes, the resync, a takeover) must not have grown a back-off
// past the outage, which is there for a store too busy to answer, not for
// one that is away (docs/faults.md: the first admission came 18.6 s after
// the store's restart).
func TestAdmissionAfterStoreOutageIsPrompt(t *testing.T) {
	e := newEnv(t)
	q := e.queue("q", ptr(1))
	outage := &mongotest.Outage{}
	s := runOnSlowStore(t, e, options.Client().ApplyURI(e.uri).SetDialer(outage).SetTimeout(time.Second))
	e.eventually("the scheduler leads", s.Leading)
	holder := e.submit(q, 1)
	e.waitStatus(holder, events.JobAdmitted)
	waiter := e.submit(q, 1)

	outage.Down()
	e.finish(holder, events.JobSucceeded) // the admission it allows fails meanwhile
	time.Sleep(16 * time.Second)
	if j := e.job(waiter); j.Status != events.JobPending && j.Status != events.JobSubmitted {
		t.Fatalf("the waiting job is %s while the store is away: the test does not take the store away", j.Status)
	}
	outage.Up()
	back := time.Now()
	e.waitStatus(waiter, events.JobAdmitted)
	took := time.Since(back)
	t.Logf("admitted %v after the store came back (leading: %v)", took.Round(time.Millisecond), s.Leading())
	if took > 6*time.Second {
		t.Errorf("admitted %v after the store came back, want within a few seconds", took.Round(time.Millisecond))
	}
}
