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
