package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/pkg/events/outbox"
)

// A reader publishes what another instance stored and has not published,
// and only that: what the writer published before is left alone, and a
// second publication of the same events is dropped by the stream.
func TestPublishUnsentPublishesAnotherWritersPendingEvents(t *testing.T) {
	uri, _ := mongotest.Start(t)
	coll := mongotest.Client(t, uri).Database("test").Collection("things")
	js := eventstest.Run(t)
	reader := outbox.New(events.NewPublisher(js), nil)
	writer := outbox.New(events.NewPublisher(js), nil)
	writer.Register(coll)
	ctx := context.Background()
	th := thing{ID: "t-1", Version: 1}
	created := ev(t, "rm.thing.created", th)
	if err := writer.Insert(ctx, coll, th.ID, 1, th, created); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { writer.Run(runCtx, 20*time.Millisecond); close(done) }()
	time.Sleep(200 * time.Millisecond) // a few checkpoints: the first event is sent
	stop()
	<-done
	writer.WithoutInlineFlush(t) // its publication fails (NATS restarting)
	th.Version = 2
	updated := ev(t, "rm.thing.updated", th)
	if err := writer.Replace(ctx, coll, th.ID, 1, 2, unsent(t, coll, th.ID), th, updated); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if n, err := reader.PublishUnsent(ctx, coll, th.ID); err != nil || n != 1 {
			t.Fatalf("PublishUnsent() = %d, %v; want the one unsent event", n, err)
		}
	}
	got := eventstest.ReadAll(t, js, "")
	if len(got) != 2 || got[0].ID != created.ID || got[1].ID != updated.ID {
		t.Errorf("stream = %v, want [%s %s]", ids(got), created.ID, updated.ID)
	}
}
