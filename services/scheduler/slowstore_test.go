package scheduler

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestSlowHistoryReadDoesNotHoldAdmissionBack: the history reads of the
// start estimates (lastFinished: a find sorted on finished_at) answer only
// after 3 s, past their 2 s timeout, as on a store busy with thousands of
// jobs. The scheduler must not spend its loop asking again for every
// pending job: a job finishing must let the next one in at once, and the
// store must see the read once, not once per pending job. Before the
// back-off (readbackoff.go) the pass after the first admission asked 40
// times back to back (80 s), and the fault suite's stack wedged on the
// piled-up reads (docs/faults.md).
func TestSlowHistoryReadDoesNotHoldAdmissionBack(t *testing.T) {
	e := newEnv(t)
	q := e.queue("q", ptr(1))
	var ids []string
	for range 40 {
		ids = append(ids, e.submit(q, 1))
	}
	slow := &mongotest.SlowReplies{Match: [][]byte{[]byte("\x02find\x00"), []byte("finished_at")}, Delay: 3 * time.Second}
	runOnSlowStore(t, e, options.Client().ApplyURI(e.uri).SetDialer(slow))

	// The jobs are admitted one at a time, in submission order.
	for i, id := range ids[:3] {
		e.waitStatus(id, events.JobAdmitted)
		if i > 0 && slow.Matched.Load() == 0 {
			t.Fatal("no history read reached the store: the test does not slow what it means to")
		}
		e.finish(id, events.JobSucceeded)
	}
	if n := slow.Matched.Load(); n > 2 {
		t.Errorf("history reads sent to the store: %d, want at most 2 (one per back-off, not one per pending job)", n)
	}
}

// TestSlowJobWriteDoesNotHoldAdmissionBack: the reply to one job write (a
// waiting job's first wait, on another queue) is held back 5 s, as on a
// connection that stalls for a moment. The pass that made it must not hold
// back the next one: when a job ends, the one waiting for its workers is
// admitted while that write still waits for its reply. Before a pass
// bounded its wait for its writes (passWriteWait, writes.go), the admission
// came 5.02 s after the holder's end.
func TestSlowJobWriteDoesNotHoldAdmissionBack(t *testing.T) {
	e := newEnv(t)
	fast, slowQ := e.queue("fast", ptr(1)), e.queue("slow", ptr(1))
	holder, waiter := e.submit(fast, 1), e.submit(fast, 1)
	e.submit(slowQ, 1)
	slowed := e.submit(slowQ, 1) // waits; its first wait is the slow write
	// The command's first element, {update: "jobs"} in BSON: a write of a
	// job document, not of the queue's estimates, which name the job too.
	update := append([]byte("\x02update\x00"), byte(len(JobsCollection)+1), 0, 0, 0)
	update = append(update, JobsCollection+"\x00"...)
	slow := &mongotest.SlowReplies{Match: [][]byte{update, []byte(slowed)}, Delay: 5 * time.Second}
	runOnSlowStore(t, e, options.Client().ApplyURI(e.uri).SetDialer(slow))

	e.waitStatus(holder, events.JobAdmitted)
	e.eventually("the slowed job's wait written", func() bool { return slow.Matched.Load() > 0 })
	since := time.Now()
	e.finish(holder, events.JobSucceeded)
	e.waitStatus(waiter, events.JobAdmitted)
	if d := time.Since(since); d >= slow.Delay {
		t.Errorf("the waiting job was admitted %v after its holder ended, not before the slowed write's reply (%v)", d, slow.Delay)
	}
	if n := slow.Matched.Load(); n != 1 {
		t.Errorf("writes of the slowed job sent: %d, want 1 (a write under way is not made again)", n)
	}
}

// runOnSlowStore runs a scheduler whose store client has opts (a slowing
// dialer) until the test ends.
func runOnSlowStore(t *testing.T, e *env, opts *options.ClientOptions) *Scheduler {
	t.Helper()
	client, err := mongo.Connect(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	s, err := New(context.Background(), testConfig(), Deps{DB: client.Database("rm"), JS: e.js, Outbox: e.ob,
		Registerer: prometheus.NewRegistry(), Now: e.clock.Now,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}
