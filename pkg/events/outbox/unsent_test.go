package outbox_test

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

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

// TestLateWriteOfARetiredInstance: a writer is cut off (its checkpoint goes
// stale and a sweep retires it), and a write it had sent reaches the store
// afterwards, as a connection held up by the cut resumes. That write's
// event is an orphan, published by no sweep: a reader about to act on the
// document must publish it, and the next write of the document adopts it
// (publishes it and drops it once published). Retiring used to take every
// entry of the instance for sent, so the event was lost, or came late from
// the writer itself after the scheduler had handed the job's workers on.
func TestLateWriteOfARetiredInstance(t *testing.T) {
	uri, _ := mongotest.Start(t)
	coll := mongotest.Client(t, uri).Database("test").Collection("things")
	js := eventstest.Run(t)
	stream := func() []events.Event { return eventstest.ReadAll(t, js, "") }
	live := outbox.New(events.NewPublisher(js), nil)
	live.MinAge = 0
	live.Register(coll)
	reader := outbox.New(events.NewPublisher(js), nil)
	ctx := context.Background()
	cut := outbox.New(events.NewPublisher(js), nil)
	cut.Register(coll)
	th := thing{ID: "t-1", Version: 1}
	created := ev(t, "rm.thing.created", th)
	if err := cut.Insert(ctx, coll, th.ID, 1, th, created); err != nil {
		t.Fatal(err)
	}
	// The cut writer's checkpoint goes stale; a sweep finds nothing of it
	// unsent in the store and retires it.
	ckpts := coll.Database().Collection(outbox.CheckpointCollection)
	if _, err := ckpts.UpdateMany(ctx, bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "renewed_at", Value: time.Now().Add(-time.Hour)}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := live.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := ckpts.CountDocuments(ctx, bson.D{{Key: "retired", Value: true}}); err != nil || n != 1 {
		t.Fatalf("retired instances: %d, %v; want the cut writer", n, err)
	}
	// Its late write: stored, never published by it.
	cut.WithoutInlineFlush(t)
	th.Version = 2
	finished := ev(t, "rm.thing.finished", th)
	if err := cut.Replace(ctx, coll, th.ID, 1, 2, unsent(t, coll, th.ID), th, finished); err != nil {
		t.Fatal(err)
	}
	if n, err := reader.PublishUnsent(ctx, coll, th.ID); err != nil || n != 1 {
		t.Fatalf("PublishUnsent() = %d, %v; want the late write's event", n, err)
	}
	if got := ids(stream()); len(got) != 2 || got[1] != finished.ID {
		t.Fatalf("stream = %v, want [%s %s]", got, created.ID, finished.ID)
	}

	// The next write adopts the orphan: it stores it as its own, publishes
	// it again (the stream drops the repeat), and a write after its
	// checkpoint drops it.
	if _, err := live.Renew(ctx); err != nil { // reads the checkpoints: the cut writer is retired
		t.Fatal(err)
	}
	th.Version = 3
	cleaned := ev(t, "rm.thing.cleaned", th)
	if err := live.Replace(ctx, coll, th.ID, 2, 3, unsent(t, coll, th.ID), th, cleaned); err != nil {
		t.Fatal(err)
	}
	left := unsent(t, coll, th.ID)
	if len(left) != 2 || left[0].ID != finished.ID || left[0].By == "" || left[0].By != left[1].By {
		t.Fatalf("entries after the adopting write = %+v, want the orphan stamped by the writer, then its own", left)
	}
	if _, err := live.Renew(ctx); err != nil { // its checkpoint passes both
		t.Fatal(err)
	}
	th.Version = 4
	if err := live.Replace(ctx, coll, th.ID, 3, 4, unsent(t, coll, th.ID), th, ev(t, "rm.thing.updated", th)); err != nil {
		t.Fatal(err)
	}
	if left := unsent(t, coll, th.ID); len(left) != 1 || left[0].ID == finished.ID {
		t.Errorf("entries after a later write = %+v, want only that write's", left)
	}
	if got := ids(stream()); len(got) != 4 || got[1] != finished.ID || got[2] != cleaned.ID {
		t.Errorf("stream = %v, want %s, %s (the late event, once), %s, then the last write's", got, created.ID, finished.ID, cleaned.ID)
	}
}

// TestRetiredWriterThatLivesOn: a writer whose renewals were held up long
// enough to be retired renews again later; when it then dies, the relays
// must see it dead and sweep what it left (a retired instance never looks
// dead, so its renewal must undo the retirement).
func TestRetiredWriterThatLivesOn(t *testing.T) {
	coll, live, stream := setup(t)
	ctx := context.Background()
	slow := outbox.New(events.NewPublisher(eventstest.Run(t)), nil)
	slow.Register(coll)
	first := thing{ID: "t-1", Version: 1}
	if err := slow.Insert(ctx, coll, first.ID, 1, first, ev(t, "rm.thing.created", first)); err != nil {
		t.Fatal(err)
	}
	if _, err := slow.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	ckpts := coll.Database().Collection(outbox.CheckpointCollection)
	goStale := func() {
		t.Helper()
		if _, err := ckpts.UpdateMany(ctx, bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "renewed_at", Value: time.Now().Add(-time.Hour)}}}}); err != nil {
			t.Fatal(err)
		}
	}
	goStale()
	if n, err := live.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("Sweep() = %d, %v; want nothing to publish, the writer retired", n, err)
	}
	if _, err := slow.Renew(ctx); err != nil { // it was alive all along
		t.Fatal(err)
	}
	slow.WithoutInlineFlush(t) // then dies between a write and its publication
	second := thing{ID: "t-2", Version: 1}
	left := ev(t, "rm.thing.created", second)
	if err := slow.Insert(ctx, coll, second.ID, 1, second, left); err != nil {
		t.Fatal(err)
	}
	goStale()
	if stale, err := live.Renew(ctx); err != nil || !stale {
		t.Fatalf("the relay sees a dead instance: %v, %v; want true, the writer that died", stale, err)
	}
	if n, err := live.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("Sweep() after the writer died = %d, %v; want the event it left", n, err)
	}
	if got := ids(stream()); len(got) != 1 || got[0] != left.ID {
		t.Errorf("stream = %v, want [%s]", got, left.ID)
	}
}
