package outbox_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/nats-io/nats.go/jetstream"
)

// A reader publishes what another instance stored and has not published,
// and only that: what the writer published before is left alone, and a
// second publication of the same events is dropped by the stream.
func TestPublishUnsentPublishesAnotherWritersPendingEvents(t *testing.T) {
	coll, js, reader, writer := readerAndWriter(t)
	ctx := context.Background()
	th := thing{ID: "t-1", Version: 1}
	created := ev(t, "rm.thing.created", th)
	if err := writer.Insert(ctx, coll, th.ID, 1, th, created); err != nil {
		t.Fatal(err)
	}
	checkpointThenFail(t, writer) // its publication fails (NATS restarting)
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

// PublishUnsentOf does for many documents what PublishUnsent does for one:
// each document's unsent events, in their order, and nothing that was
// sent or of a document that is gone.
func TestPublishUnsentOfManyDocuments(t *testing.T) {
	coll, js, reader, writer := readerAndWriter(t)
	ctx := context.Background()
	var sent []string // the events the writer published itself
	for i := range 3 {
		th := thing{ID: fmt.Sprintf("t-%d", i), Version: 1}
		created := ev(t, "rm.thing.created", th)
		if err := writer.Insert(ctx, coll, th.ID, 1, th, created); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, created.ID)
	}
	checkpointThenFail(t, writer)
	want := map[string][]string{}
	for i, n := range []int{2, 0, 1} { // t-0 changes twice, t-1 not at all, t-2 once
		th := thing{ID: fmt.Sprintf("t-%d", i), Version: 1}
		for range n {
			th.Version++
			e := ev(t, "rm.thing.updated", th)
			if err := writer.Replace(ctx, coll, th.ID, th.Version-1, th.Version, unsent(t, coll, th.ID), th, e); err != nil {
				t.Fatal(err)
			}
			want[th.ID] = append(want[th.ID], e.ID)
		}
	}
	n, err := reader.PublishUnsentOf(ctx, coll, []any{"t-0", "t-1", "t-2", "gone"})
	if err != nil || n != 3 {
		t.Fatalf("PublishUnsentOf() = %d, %v; want the 3 unsent events", n, err)
	}
	got := map[string][]string{}
	all := eventstest.ReadAll(t, js, "")
	for _, e := range all[len(sent):] {
		got[e.ResourceID] = append(got[e.ResourceID], e.ID)
	}
	if diff := cmp.Diff(want, got); diff != "" || len(all) != len(sent)+3 || !slices.Equal(ids(all[:len(sent)]), sent) {
		t.Errorf("stream %v; events after the creations by document (-want +got):\n%s", ids(all), diff)
	}
}

// readerAndWriter are two outbox instances on one collection and stream:
// the writer's checkpoint tells the reader what it sent.
func readerAndWriter(t *testing.T) (*mongo.Collection, jetstream.JetStream, *outbox.Outbox, *outbox.Outbox) {
	t.Helper()
	uri, _ := mongotest.Start(t)
	coll := mongotest.Client(t, uri).Database("test").Collection("things")
	js := eventstest.Run(t)
	reader := outbox.New(events.NewPublisher(js), nil)
	writer := outbox.New(events.NewPublisher(js), nil)
	writer.Register(coll)
	return coll, js, reader, writer
}

// checkpointThenFail runs writer's relay for a few checkpoints, so that
// what it published so far counts as sent, then makes its publications
// fail.
func checkpointThenFail(t *testing.T, writer *outbox.Outbox) {
	t.Helper()
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { writer.Run(runCtx, 20*time.Millisecond); close(done) }()
	time.Sleep(200 * time.Millisecond)
	stop()
	<-done
	writer.WithoutInlineFlush(t)
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
	c := withOrphan(t)
	coll, live, th, finished := c.coll, c.live, c.th, c.finished
	stream := func() []events.Event { return eventstest.ReadAll(t, c.js, "") }
	reader := outbox.New(events.NewPublisher(c.js), nil)
	ctx := context.Background()
	if n, err := reader.PublishUnsent(ctx, coll, th.ID); err != nil || n != 1 {
		t.Fatalf("PublishUnsent() = %d, %v; want the late write's event", n, err)
	}
	if got := ids(stream()); len(got) != 2 || got[1] != finished.ID {
		t.Fatalf("stream = %v, want [%s %s]", got, c.created.ID, finished.ID)
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
		t.Errorf("stream = %v, want %s, %s (the late event, once), %s, then the last write's", got, c.created.ID, finished.ID, cleaned.ID)
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
	staleCheckpoints(t, coll)
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
	staleCheckpoints(t, coll)
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

// TestFailedWriteThatAdoptsAnOrphan: a write that would adopt an orphan
// fails with an unknown outcome (its connection lost). Reading the
// document back, the relay must not take the orphan, which the document
// held before, for a sign that the write was stored: that published the
// events of a write that never happened (the fault suite's store restart:
// two changes announced as the same version).
func TestFailedWriteThatAdoptsAnOrphan(t *testing.T) {
	c := withOrphan(t)
	coll, js, live, th := c.coll, c.js, c.live, c.th
	ctx := context.Background()
	other := thing{ID: "t-0", Version: 1} // the live writer's first write registers it
	if err := live.Insert(ctx, coll, other.ID, 1, other, ev(t, "rm.thing.created", other)); err != nil {
		t.Fatal(err)
	}
	if _, err := live.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	lost, cancel := context.WithCancel(ctx)
	cancel() // the write's outcome is unknown to its writer, and it was not stored
	th.Version = 3
	never := ev(t, "rm.thing.updated", th)
	if err := live.Replace(lost, coll, th.ID, 2, 3, unsent(t, coll, th.ID), th, never); err == nil {
		t.Fatal("a write on a cancelled context succeeded")
	}
	runRelayFor(ctx, live, 300*time.Millisecond) // the relay reads the write back
	for _, e := range eventstest.ReadAll(t, js, "") {
		if e.ID == never.ID {
			t.Fatalf("the event of a write that was not stored was published (stream %v)", ids(eventstest.ReadAll(t, js, "")))
		}
	}
}

// staleCheckpoints makes every instance's checkpoint an hour old, as if
// they had all stopped renewing.
func staleCheckpoints(t *testing.T, coll *mongo.Collection) {
	t.Helper()
	ckpts := coll.Database().Collection(outbox.CheckpointCollection)
	if _, err := ckpts.UpdateMany(context.Background(), bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "renewed_at", Value: time.Now().Add(-time.Hour)}}}}); err != nil {
		t.Fatal(err)
	}
}

// orphanCase is a document with an orphan: thing t-1, created by a writer
// that was then retired (its checkpoint stale, a sweep by live), and
// changed afterwards by a late write of that writer, stored and never
// published (finished). live (MinAge 0) and the stream are shared.
type orphanCase struct {
	coll              *mongo.Collection
	js                jetstream.JetStream
	live              *outbox.Outbox
	th                thing
	created, finished events.Event
}

func withOrphan(t *testing.T) orphanCase {
	t.Helper()
	uri, _ := mongotest.Start(t)
	c := orphanCase{coll: mongotest.Client(t, uri).Database("test").Collection("things"), js: eventstest.Run(t)}
	c.live = outbox.New(events.NewPublisher(c.js), nil)
	c.live.MinAge = 0
	c.live.Register(c.coll)
	ctx := context.Background()
	cut := outbox.New(events.NewPublisher(c.js), nil)
	cut.Register(c.coll)
	c.th = thing{ID: "t-1", Version: 1}
	c.created = ev(t, "rm.thing.created", c.th)
	if err := cut.Insert(ctx, c.coll, c.th.ID, 1, c.th, c.created); err != nil {
		t.Fatal(err)
	}
	staleCheckpoints(t, c.coll)
	if _, err := c.live.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	ckpts := c.coll.Database().Collection(outbox.CheckpointCollection)
	if n, err := ckpts.CountDocuments(ctx, bson.D{{Key: "retired", Value: true}}); err != nil || n != 1 {
		t.Fatalf("retired instances: %d, %v; want the cut writer", n, err)
	}
	cut.WithoutInlineFlush(t)
	c.th.Version = 2
	c.finished = ev(t, "rm.thing.finished", c.th)
	if err := cut.Replace(ctx, c.coll, c.th.ID, 1, 2, unsent(t, c.coll, c.th.ID), c.th, c.finished); err != nil {
		t.Fatal(err)
	}
	return c
}
