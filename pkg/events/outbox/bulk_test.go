package outbox_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/pkg/events/outbox"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// InsertMany stores every document with its events, publishes them in
// order and leaves no unsent event behind, over more than one batch.
func TestInsertMany(t *testing.T) {
	uri, ferret := mongotest.Start(t)
	ctx := context.Background()
	// The _id index the all-in-one gives every collection (the clear is by _id).
	if err := ferret.EnsureIDIndex(ctx, "test", "things"); err != nil {
		t.Fatal(err)
	}
	coll := mongotest.Client(t, uri).Database("test").Collection("things")
	js := eventstest.Run(t)
	ob := outbox.New(events.NewPublisher(js), nil)
	published := func() []events.Event { return eventstest.ReadAll(t, js, "") }
	const n = 1200
	docs := make([]outbox.NewDoc, n)
	for i := range docs {
		th := thing{ID: fmt.Sprintf("t-%05d", i), Version: 1, Name: strings.Repeat("x", 1000)}
		docs[i] = outbox.NewDoc{ID: th.ID, Doc: th, Events: []events.Event{ev(t, "rm.thing.created", th)}}
	}
	start := time.Now()
	if err := ob.InsertMany(ctx, coll, docs); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d documents in %v", n, time.Since(start))
	if got, err := coll.CountDocuments(ctx, bson.D{}); err != nil || got != n {
		t.Fatalf("%d documents stored (%v), want %d", got, err, n)
	}
	// Nothing is left unsent: a sweep finds nothing to publish.
	if n, err := ob.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("sweep after InsertMany published %d events (%v), want 0", n, err)
	}
	evs := published()
	if len(evs) != n {
		t.Fatalf("%d events published, want %d", len(evs), n)
	}
	for i, e := range evs {
		if e.ResourceID != docs[i].ID {
			t.Fatalf("event %d is about %s, want %s", i, e.ResourceID, docs[i].ID)
		}
	}
}
