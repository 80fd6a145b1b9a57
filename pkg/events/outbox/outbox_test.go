package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/pkg/events/outbox"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

type thing struct {
	ID      string `bson:"_id" json:"id"`
	Version int64  `bson:"version" json:"version"`
	Name    string `bson:"name" json:"name"`
}

// failingPublisher refuses everything, as an unreachable NATS would.
type failingPublisher struct{}

func (failingPublisher) Publish(context.Context, events.Event) error { return errors.New("nats down") }

func setup(t *testing.T) (*mongo.Collection, *outbox.Outbox, func() []events.Event) {
	t.Helper()
	coll, ob, stream, _ := setupOnStore(t)
	return coll, ob, stream
}

// setupOnStore is setup that also returns the embedded store.
func setupOnStore(t *testing.T) (*mongo.Collection, *outbox.Outbox, func() []events.Event, *ferretembed.Server) {
	t.Helper()
	uri, srv := mongotest.Start(t)
	coll := mongotest.Client(t, uri).Database("test").Collection("things")
	js := eventstest.Run(t)
	ob := outbox.New(events.NewPublisher(js), nil)
	ob.MinAge = 0
	ob.Register(coll)
	return coll, ob, func() []events.Event { return eventstest.ReadAll(t, js, "") }, srv
}

func ev(t *testing.T, typ string, th thing) events.Event {
	t.Helper()
	e, err := events.New(typ, "/test", events.NoQueue, th.ID, th)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func unsent(t *testing.T, coll *mongo.Collection, id string) []outbox.Entry {
	t.Helper()
	var env outbox.Envelope
	if err := coll.FindOne(context.Background(), bson.D{{Key: "_id", Value: id}}).Decode(&env); err != nil {
		t.Fatal(err)
	}
	return env.Outbox
}

// otherInstance is a second writer on coll (a service that dies in the
// test), publishing to a NATS of its own.
func otherInstance(t *testing.T, coll *mongo.Collection) *outbox.Outbox {
	t.Helper()
	ob := outbox.New(events.NewPublisher(eventstest.Run(t)), nil)
	ob.Register(coll)
	return ob
}

// runRelayFor runs ob's relay, every 20 ms, for d.
func runRelayFor(ctx context.Context, ob *outbox.Outbox, d time.Duration) {
	runRelayUntil(ctx, ob, d, func() bool { return false })
}

// runRelayUntil runs the relay for at least d and, past it, until done says
// so or 10 s more have gone: what a test waits for to be published may take
// longer than d on a loaded machine.
func runRelayUntil(ctx context.Context, ob *outbox.Outbox, d time.Duration, done func() bool) {
	runCtx, stop := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { ob.Run(runCtx, 20*time.Millisecond); close(stopped) }()
	time.Sleep(d)
	for deadline := time.Now().Add(10 * time.Second); !done() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	<-stopped
}

// leaveUnsent stores document id (version 1) through a writer killed
// between the write and its publication, and returns the writer and the
// event it left unsent.
func leaveUnsent(t *testing.T, coll *mongo.Collection, id string) (*outbox.Outbox, events.Event) {
	t.Helper()
	dead := otherInstance(t, coll)
	dead.WithoutInlineFlush(t)
	th := thing{ID: id, Version: 1}
	e := ev(t, "rm.thing.created", th)
	if err := dead.Insert(context.Background(), coll, th.ID, 1, th, e); err != nil {
		t.Fatal(err)
	}
	return dead, e
}

func ids(evs []events.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

// A write is published once, with no second write to clear its entry: the
// instance's checkpoint says it is sent, so no sweep publishes it again, and
// the next write of the document drops it.
func TestInsertPublishesAndClears(t *testing.T) {
	coll, ob, stream := setup(t)
	ctx := context.Background()
	th := thing{ID: "t-1", Version: 1, Name: "a"}
	e := ev(t, "rm.thing.created", th)
	if err := ob.Insert(ctx, coll, th.ID, th.Version, th, e); err != nil {
		t.Fatal(err)
	}
	if got := stream(); len(got) != 1 || got[0].ID != e.ID {
		t.Fatalf("stream = %v, want the one created event", ids(got))
	}
	if n, err := ob.Sweep(ctx); err != nil || n != 0 {
		t.Errorf("Sweep() after publishing = %d, %v; want nothing to publish", n, err)
	}
	th2 := thing{ID: "t-1", Version: 2, Name: "b"}
	e2 := ev(t, "rm.thing.updated", th2)
	if err := ob.Replace(ctx, coll, th.ID, 1, 2, unsent(t, coll, th.ID), th2, e2); err != nil {
		t.Fatal(err)
	}
	if u := unsent(t, coll, th.ID); len(u) != 1 || u[0].ID != e2.ID {
		t.Errorf("outbox holds %v after the next write, want only its own entry", u)
	}
	if err := ob.Insert(ctx, coll, th.ID, th.Version, th, e); !errors.Is(err, outbox.ErrDuplicate) {
		t.Errorf("second insert: %v, want ErrDuplicate", err)
	}
	if got := stream(); len(got) != 2 {
		t.Errorf("a refused insert published: %v", ids(got))
	}
}

// A process that dies between the write and the publication leaves the
// events in the document; the relay publishes them exactly once.
func TestRelayPublishesWhatACrashLeft(t *testing.T) {
	coll, ob, stream := setup(t)
	ctx := context.Background()
	ob.WithoutInlineFlush(t)
	th := thing{ID: "t-1", Version: 1, Name: "a"}
	created := ev(t, "rm.thing.created", th)
	if err := ob.Insert(ctx, coll, th.ID, th.Version, th, created); err != nil {
		t.Fatal(err)
	}
	if got := stream(); len(got) != 0 {
		t.Fatalf("published before the relay ran: %v", ids(got))
	}
	// A later change carries the unsent event along, in order.
	th2 := thing{ID: "t-1", Version: 2, Name: "b"}
	updated := ev(t, "rm.thing.updated", th2)
	if err := ob.Replace(ctx, coll, th.ID, 1, 2, unsent(t, coll, th.ID), th2, updated); err != nil {
		t.Fatal(err)
	}
	if err := ob.Replace(ctx, coll, th.ID, 1, 2, nil, th2, updated); !errors.Is(err, outbox.ErrVersionConflict) {
		t.Errorf("replace of a stale version: %v, want ErrVersionConflict", err)
	}
	n, err := ob.Sweep(ctx)
	if err != nil || n != 2 {
		t.Fatalf("Sweep() = %d, %v; want 2 events", n, err)
	}
	if n, err := ob.Sweep(ctx); err != nil || n != 0 {
		t.Errorf("second Sweep() = %d, %v; want nothing left", n, err)
	}
	got := stream()
	if len(got) != 2 || got[0].ID != created.ID || got[1].ID != updated.ID {
		t.Fatalf("stream = %v, want [created updated]", ids(got))
	}
	// Publishing again (a relay that died after publishing, before clearing) adds nothing.
	if err := ob.Flush(ctx, coll, th.ID, false, []outbox.Entry{outbox.FromEvent(created), outbox.FromEvent(updated)}); err != nil {
		t.Fatal(err)
	}
	if got := stream(); len(got) != 2 {
		t.Errorf("republication duplicated events: %v", ids(got))
	}
}

// Clearing removes exactly the published entries: a flush of an older write
// must not drop the events of a newer one.
func TestFlushOfAnOlderVersionKeepsNewerEvents(t *testing.T) {
	coll, ob, stream := setup(t)
	ctx := context.Background()
	ob.WithoutInlineFlush(t)
	th := thing{ID: "t-1", Version: 1}
	e1 := ev(t, "rm.thing.created", th)
	if err := ob.Insert(ctx, coll, th.ID, 1, th, e1); err != nil {
		t.Fatal(err)
	}
	th.Version = 2
	e2 := ev(t, "rm.thing.updated", th)
	if err := ob.Replace(ctx, coll, th.ID, 1, 2, unsent(t, coll, th.ID), th, e2); err != nil {
		t.Fatal(err)
	}
	stored := unsent(t, coll, th.ID) // entries as stored: stamped with their writer
	if len(stored) != 2 || stored[0].ID != e1.ID {
		t.Fatalf("stored entries %v, want [created updated]", stored)
	}
	if err := ob.Flush(ctx, coll, th.ID, false, stored[:1]); err != nil {
		t.Fatal(err)
	}
	if u := unsent(t, coll, th.ID); len(u) != 1 || u[0].ID != e2.ID {
		t.Errorf("flush of version 1's event left %v, want only version 2's event", u)
	}
	if _, err := ob.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if got := stream(); len(got) != 2 {
		t.Errorf("stream = %v, want both events once", ids(got))
	}
}

func TestDeleteKeepsATombstoneUntilPublished(t *testing.T) {
	coll, ob, stream := setup(t)
	ctx := context.Background()
	th := thing{ID: "t-1", Version: 1}
	if err := ob.Insert(ctx, coll, th.ID, 1, th, ev(t, "rm.thing.created", th)); err != nil {
		t.Fatal(err)
	}
	ob.WithoutInlineFlush(t)
	del := ev(t, "rm.thing.deleted", th)
	if err := ob.Delete(ctx, coll, th.ID, 1, nil, del); err != nil {
		t.Fatal(err)
	}
	live, err := coll.CountDocuments(ctx, bson.D{outbox.NotDeleted()})
	if err != nil {
		t.Fatal(err)
	}
	if live != 0 {
		t.Errorf("tombstone visible to reads: %d live documents", live)
	}
	if _, err := ob.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	all, err := coll.CountDocuments(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	if all != 0 {
		t.Errorf("tombstone not removed after its event was published: %d documents", all)
	}
	if got := stream(); len(got) != 2 || got[1].ID != del.ID {
		t.Errorf("stream = %v, want [created deleted]", ids(got))
	}
}

// When NATS is unreachable the write still commits, and its event waits for the relay.
func TestPublishFailureLeavesEventsForTheRelay(t *testing.T) {
	coll, relay, stream := setup(t)
	ctx := context.Background()
	down := outbox.New(failingPublisher{}, nil)
	th := thing{ID: "t-1", Version: 1}
	e := ev(t, "rm.thing.created", th)
	if err := down.Insert(ctx, coll, th.ID, 1, th, e); err != nil {
		t.Fatalf("insert failed although the store took it: %v", err)
	}
	if u := unsent(t, coll, th.ID); len(u) != 1 || u[0].ID != e.ID {
		t.Fatalf("outbox = %v, want the unsent event", u)
	}
	if n, err := relay.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("Sweep() = %d, %v; want 1", n, err)
	}
	if got := stream(); len(got) != 1 || got[0].ID != e.ID {
		t.Errorf("stream = %v, want the event once", ids(got))
	}
}

// An event larger than NATS's max payload can never be published: the
// relay drops it (logged, counted) and publishes the rest, instead of
// retrying it forever and holding back every later event of the document.
func TestTooLargeEventIsDroppedNotRetried(t *testing.T) {
	coll, ob, stream := setup(t)
	ctx := context.Background()
	ob.WithoutInlineFlush(t)
	big := thing{ID: "t-big", Version: 1, Name: strings.Repeat("x", 2<<20)} // eventstest: 1 MiB max payload
	huge := ev(t, "rm.thing.huge", big)
	small := ev(t, "rm.thing.small", thing{ID: "t-big", Version: 1, Name: "a"})
	if err := ob.Insert(ctx, coll, big.ID, big.Version, thing{ID: big.ID, Version: 1}, huge, small); err != nil {
		t.Fatal(err)
	}
	before := outbox.Dropped("rm.thing.huge")
	for range 2 {
		if _, err := ob.Sweep(ctx); err != nil {
			t.Fatalf("Sweep() = %v, want the too-large event dropped without error", err)
		}
	}
	if got := stream(); len(got) != 1 || got[0].ID != small.ID {
		t.Errorf("stream = %v, want only the small event", ids(got))
	}
	if u := unsent(t, coll, big.ID); len(u) != 0 {
		t.Errorf("outbox still holds %d entries", len(u))
	}
	if d := outbox.Dropped("rm.thing.huge") - before; d != 1 {
		t.Errorf("dropped counter moved by %v, want 1", d)
	}
}

// A dead instance's published events stay published: another instance's
// sweep publishes only what the dead one stored after its last checkpoint
// and never published.
func TestSweepPublishesOnlyWhatADeadInstanceLeft(t *testing.T) {
	coll, relay, stream := setup(t)
	ctx := context.Background()
	dead := otherInstance(t, coll)
	sent := thing{ID: "t-sent", Version: 1}
	if err := dead.Insert(ctx, coll, sent.ID, 1, sent, ev(t, "rm.thing.created", sent)); err != nil {
		t.Fatal(err)
	}
	runRelayFor(ctx, dead, 200*time.Millisecond) // a few checkpoints
	dead.WithoutInlineFlush(t)                   // killed between the write and its publication
	left := thing{ID: "t-left", Version: 1}
	e := ev(t, "rm.thing.created", left)
	if err := dead.Insert(ctx, coll, left.ID, 1, left, e); err != nil {
		t.Fatal(err)
	}
	if n, err := relay.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("Sweep() = %d, %v; want the one event the dead instance left", n, err)
	}
	if got := stream(); len(got) != 1 || got[0].ID != e.ID {
		t.Errorf("relay's stream = %v, want only the unsent event", ids(got))
	}
	if n, err := relay.Sweep(ctx); err != nil || n != 0 {
		t.Errorf("second Sweep() = %d, %v; want nothing", n, err)
	}
}

// Every service of the all-in-one registers the collections it writes with
// the one Outbox they share, the jobs collection by three of them: a sweep,
// which reads every document, must read each collection once.
func TestRegisterKeepsEachCollectionOnce(t *testing.T) {
	coll, ob, _ := setup(t) // registers coll
	db := coll.Database()
	ob.Register(db.Collection("things"), db.Collection("others"))
	ob.Register(db.Client().Database("test").Collection("things"), db.Client().Database("other").Collection("things"))
	want := []string{"test.things", "test.others", "other.things"}
	if got := ob.Registered(); !slices.Equal(got, want) {
		t.Errorf("registered %v, want %v", got, want)
	}
}

// On the embedded store a sweep's read is answered in SQL (the proxy's
// findentries.go): it reads the documents with an entry that may be unsent,
// not every document that keeps its last write's entries, as FerretDB
// would, decoding each.
func TestSweepReadIsAnsweredBySQLite(t *testing.T) {
	coll, relay, stream, srv := setupOnStore(t)
	ctx := context.Background()
	dead := otherInstance(t, coll)
	for i := range 30 {
		sent := thing{ID: fmt.Sprintf("t-sent-%d", i), Version: 1}
		if err := dead.Insert(ctx, coll, sent.ID, 1, sent, ev(t, "rm.thing.created", sent)); err != nil {
			t.Fatal(err)
		}
	}
	runRelayFor(ctx, dead, 200*time.Millisecond) // checkpoints past those writes
	dead.WithoutInlineFlush(t)
	left := thing{ID: "t-left", Version: 1}
	e := ev(t, "rm.thing.created", left)
	if err := dead.Insert(ctx, coll, left.ID, 1, left, e); err != nil {
		t.Fatal(err)
	}
	before := srv.WriteStats().DirectFinds
	if n, err := relay.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("Sweep() = %d, %v; want the one event the dead instance left", n, err)
	}
	if got := srv.WriteStats().DirectFinds - before; got != 1 {
		t.Errorf("SQLite answered %d finds of the sweep, want its one read of the collection", got)
	}
	if got := stream(); len(got) != 1 || got[0].ID != e.ID {
		t.Errorf("relay's stream = %v, want only the unsent event", ids(got))
	}
}

// A clean stop (Close once nothing writes) retires the instance, and a
// relay that starts after it skips its first sweep, which would read every
// registered collection; after an instance that stopped without Close (a
// crash) the first sweep runs, and publishes what it left.
func TestRelayStartsWithoutASweepAfterACleanStop(t *testing.T) {
	for _, clean := range []bool{true, false} {
		t.Run(fmt.Sprintf("clean=%v", clean), func(t *testing.T) {
			coll, relay, stream, srv := setupOnStore(t)
			ctx := context.Background()
			before := otherInstance(t, coll)
			sent := thing{ID: "t-sent", Version: 1}
			if err := before.Insert(ctx, coll, sent.ID, 1, sent, ev(t, "rm.thing.created", sent)); err != nil {
				t.Fatal(err)
			}
			var left events.Event
			if clean {
				if err := before.Close(ctx); err != nil {
					t.Fatal(err)
				}
			} else {
				before.WithoutInlineFlush(t) // killed between a write and its publication
				th := thing{ID: "t-left", Version: 1}
				left = ev(t, "rm.thing.created", th)
				if err := before.Insert(ctx, coll, th.ID, 1, th, left); err != nil {
					t.Fatal(err)
				}
			}
			finds := srv.WriteStats().DirectFinds
			// After a clean stop nothing may come within the 200 ms; after a
			// crash the event left must come (under load the sweep took longer).
			runRelayUntil(ctx, relay, 200*time.Millisecond, func() bool { return clean || slices.Contains(ids(stream()), left.ID) })
			swept := srv.WriteStats().DirectFinds - finds // the sweep's read of coll
			got := stream()
			if clean {
				if swept != 0 || len(got) != 0 {
					t.Errorf("after a clean stop the relay swept %d times and published %v; want neither", swept, ids(got))
				}
				return
			}
			// The first write too: the crashed instance never stored a
			// checkpoint past it (the stream's duplicate window drops it).
			if swept == 0 || !slices.Contains(ids(got), left.ID) {
				t.Errorf("after a crash the relay swept %d times and published %v; want a sweep and %s", swept, ids(got), left.ID)
			}
		})
	}
}

// A standalone service registers its collections once its relay runs: the
// start's sweep waits for them, and does not count a sweep of none as done
// (what a crashed writer left would wait for its checkpoint to go stale,
// 20 s).
func TestRelayStartSweepWaitsForCollections(t *testing.T) {
	coll, _, _, _ := setupOnStore(t)
	ctx := context.Background()
	_, e := leaveUnsent(t, coll, "t-left")
	js := eventstest.Run(t)
	relay := outbox.New(events.NewPublisher(js), nil)
	relay.MinAge = 0
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go relay.Run(runCtx, 20*time.Millisecond)
	time.Sleep(100 * time.Millisecond) // a few rounds with nothing registered
	relay.Register(coll)
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if got := eventstest.ReadAll(t, js, ""); len(got) == 1 && got[0].ID == e.ID {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("2 s after the collection was registered the relay had published %v; want %s", ids(got), e.ID)
		}
	}
}

// The sweep's filter names the writers that may have left entries unsent:
// not one that closed, so it does not grow with every clean restart.
func TestSweepLeavesClosedWritersOut(t *testing.T) {
	coll, relay, _, _ := setupOnStore(t)
	ctx := context.Background()
	closed, crashed := otherInstance(t, coll), otherInstance(t, coll)
	for i, ob := range []*outbox.Outbox{closed, crashed} {
		th := thing{ID: fmt.Sprintf("t-%d", i), Version: 1}
		if err := ob.Insert(ctx, coll, th.ID, 1, th, ev(t, "rm.thing.created", th)); err != nil {
			t.Fatal(err)
		}
	}
	if err := closed.Close(ctx); err != nil {
		t.Fatal(err)
	}
	writers, err := relay.SweepWriters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(writers) != 2 || !slices.Contains(writers, relay.ID()) || !slices.Contains(writers, crashed.ID()) || slices.Contains(writers, closed.ID()) {
		t.Errorf("the sweep looks for the entries of %v; want the relay's own and the crashed writer's (%s), not the closed one's (%s)",
			writers, crashed.ID(), closed.ID())
	}
}

// Close leaves the checkpoint of an instance whose write is unpublished
// (NATS refused it) as it is: it must go stale, so that a sweep publishes
// the write's events.
func TestCloseKeepsAnUnpublishedWriteForTheSweep(t *testing.T) {
	coll, relay, stream, _ := setupOnStore(t)
	ctx := context.Background()
	down := outbox.New(failingPublisher{}, nil)
	down.Register(coll)
	th := thing{ID: "t-1", Version: 1}
	e := ev(t, "rm.thing.created", th)
	if err := down.Insert(ctx, coll, th.ID, 1, th, e); err != nil {
		t.Fatal(err)
	}
	if err := down.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := relay.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("Sweep() = %d, %v; want the event of the unpublished write", n, err)
	}
	if got := stream(); len(got) != 1 || got[0].ID != e.ID {
		t.Errorf("stream = %v, want %s", ids(got), e.ID)
	}
}

// TestRelayBacksOffAFailedSweep: on a store too slow to answer the sweep's
// scan in time, the relay must not start the scan again every interval (the
// store runs an abandoned read to its end, so the scans would pile up): one
// sweep, then a back-off of at least 5 s.
func TestRelayBacksOffAFailedSweep(t *testing.T) {
	uri, _ := mongotest.Start(t)
	slow := &mongotest.SlowReplies{Match: [][]byte{[]byte("\x02find\x00"), []byte(outbox.Field + ".0")}, Delay: 2 * time.Second}
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetDialer(slow).SetTimeout(300 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	ob := outbox.New(events.NewPublisher(eventstest.Run(t)), nil)
	ob.Register(client.Database("test").Collection("things"))
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ob.Run(ctx, 20*time.Millisecond); close(done) }()
	time.Sleep(1500 * time.Millisecond) // 75 intervals
	stop()
	<-done
	if n := slow.Matched.Load(); n != 1 {
		t.Errorf("sweeps sent to the store in 1.5 s: %d, want 1 (the first, then a back-off)", n)
	}
}

// TestSweepDoesNotRetireWhatItSkipped: a dead instance left an unsent event
// on a document that a live writer has just written again (carrying the
// entry, too young to publish it again itself). The sweep that finds the
// dead instance stale skips that document as too young; it must not retire
// the dead instance then, as if all it left were sent: a later sweep would
// take the entry for sent and the event would never reach the stream (seen
// in the fault suite: a job's rm.job.submitted lost after the API's kill).
func TestSweepDoesNotRetireWhatItSkipped(t *testing.T) {
	coll, relay, stream := setup(t)
	ctx := context.Background()
	dead := otherInstance(t, coll)
	dead.WithoutInlineFlush(t) // killed between the write and its publication
	th := thing{ID: "t-1", Version: 1}
	created := ev(t, "rm.thing.created", th)
	if err := dead.Insert(ctx, coll, th.ID, 1, th, created); err != nil {
		t.Fatal(err)
	}
	relay.MinAge = time.Hour // everything is young: the live write publishes only its own event
	th.Version = 2
	updated := ev(t, "rm.thing.updated", th)
	if err := relay.Replace(ctx, coll, th.ID, 1, 2, unsent(t, coll, th.ID), th, updated); err != nil {
		t.Fatal(err)
	}
	// The dead instance's checkpoint goes stale.
	if _, err := coll.Database().Collection(outbox.CheckpointCollection).UpdateMany(ctx, bson.D{},
		bson.D{{Key: "$set", Value: bson.D{{Key: "renewed_at", Value: time.Now().Add(-time.Hour)}}}}); err != nil {
		t.Fatal(err)
	}
	if n, err := relay.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("Sweep() of a young document = %d, %v; want it skipped", n, err)
	}
	relay.MinAge = 0 // later: the document is old enough
	if n, err := relay.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("later Sweep() = %d, %v; want the dead instance's event", n, err)
	}
	got := stream()
	if len(got) != 2 || !slices.ContainsFunc(got, func(e events.Event) bool { return e.ID == created.ID }) {
		t.Errorf("stream = %v, want %s (the dead instance's) and %s", ids(got), created.ID, updated.ID)
	}
}

// A live writer carries a dead one's entry along on every write of a
// document until the dead one is retired, so the document may always look
// young to a sweep. The sweep publishes the dead writer's (old) entry there
// and retires it all the same: otherwise every relay would sweep every
// document each interval for as long as the document is written.
func TestSweepRetiresDeadWriterOnYoungDocument(t *testing.T) {
	coll, relay, stream := setup(t)
	ctx := context.Background()
	_, created := leaveUnsent(t, coll, "t-1")
	th := thing{ID: "t-1", Version: 1}
	relay.MinAge = time.Second
	time.Sleep(1100 * time.Millisecond) // the dead writer's entry is old, the next write young
	th.Version = 2
	updated := ev(t, "rm.thing.updated", th)
	if err := relay.Replace(ctx, coll, th.ID, 1, 2, unsent(t, coll, th.ID), th, updated); err != nil {
		t.Fatal(err)
	}
	if got := unsent(t, coll, th.ID); len(got) != 2 {
		t.Fatalf("the live write stored %d entries, want the dead writer's carried and its own", len(got))
	}
	ckpts := coll.Database().Collection(outbox.CheckpointCollection)
	if _, err := ckpts.UpdateMany(ctx, bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "renewed_at", Value: time.Now().Add(-time.Hour)}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := relay.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	retired, err := ckpts.CountDocuments(ctx, bson.D{{Key: "retired", Value: true}})
	if err != nil {
		t.Fatal(err)
	}
	if retired != 1 {
		t.Errorf("%d instances retired after the sweep, want the dead one", retired)
	}
	got := stream()
	if len(got) != 2 || got[0].ID != created.ID || got[1].ID != updated.ID {
		t.Errorf("stream = %v, want %s then %s", ids(got), created.ID, updated.ID)
	}
}

// TestRelayRenewsWhileNATSIsDown: while its publications fail, an instance
// keeps renewing its checkpoint (held before the unpublished write): one
// that stopped would look dead to the others after staleAfter, and each of
// them would sweep every collection for it.
func TestRelayRenewsWhileNATSIsDown(t *testing.T) {
	coll, _, _ := setup(t)
	ctx := context.Background()
	down := outbox.New(failingPublisher{}, nil)
	down.MinAge = 0
	down.Register(coll)
	th := thing{ID: "t-1", Version: 1}
	if err := down.Insert(ctx, coll, th.ID, 1, th, ev(t, "rm.thing.created", th)); err != nil {
		t.Fatal(err)
	}
	written := time.Now()
	runRelayFor(ctx, down, 300*time.Millisecond)
	var ck struct {
		UpTo      time.Time `bson:"up_to"`
		RenewedAt time.Time `bson:"renewed_at"`
	}
	if err := coll.Database().Collection(outbox.CheckpointCollection).FindOne(ctx, bson.D{}).Decode(&ck); err != nil {
		t.Fatal(err)
	}
	if !ck.RenewedAt.After(written) {
		t.Errorf("checkpoint renewed at %v, before the relay ran (%v): not renewed while publishing failed", ck.RenewedAt, written)
	}
	if u := unsent(t, coll, th.ID); len(u) != 1 || !u[0].At.After(ck.UpTo) && !u[0].At.Equal(ck.UpTo) {
		t.Errorf("checkpoint up to %v passes the unpublished entry %+v", ck.UpTo, u)
	}
}

// TestRelayRenewsDuringALongSweep: a sweep of a big store takes long (the
// store reads every document); the checkpoint is renewed meanwhile, or the
// instance would look dead to the others.
func TestRelayRenewsDuringALongSweep(t *testing.T) {
	uri, _ := mongotest.Start(t)
	slow := &mongotest.SlowReplies{Match: [][]byte{[]byte("\x02find\x00"), []byte(outbox.Field + ".0")}, Delay: 1500 * time.Millisecond}
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetDialer(slow))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	coll := client.Database("test").Collection("things")
	ob := outbox.New(events.NewPublisher(eventstest.Run(t)), nil)
	ob.Register(coll)
	th := thing{ID: "t-1", Version: 1}
	if err := ob.Insert(context.Background(), coll, th.ID, 1, th, ev(t, "rm.thing.created", th)); err != nil {
		t.Fatal(err) // registers the instance's checkpoint
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ob.Run(ctx, 20*time.Millisecond); close(done) }()
	for slow.Matched.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	began := time.Now() // the sweep's read was sent; its answer comes in 1.5 s
	time.Sleep(800 * time.Millisecond)
	var ck struct {
		RenewedAt time.Time `bson:"renewed_at"`
	}
	err = coll.Database().Collection(outbox.CheckpointCollection).FindOne(context.Background(), bson.D{}).Decode(&ck)
	stop()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if slow.Matched.Load() != 1 {
		t.Fatalf("sweeps sent: %d, want the one still running", slow.Matched.Load())
	}
	if !ck.RenewedAt.After(began.Add(400 * time.Millisecond)) {
		t.Errorf("checkpoint last renewed %v after the sweep began, 800 ms into it, with renewals every 20 ms", ck.RenewedAt.Sub(began))
	}
}
