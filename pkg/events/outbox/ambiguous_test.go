package outbox

import (
	"context"
	"testing"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// A write whose answer was lost (a timeout, a dropped connection) may have
// been applied. Its events must go out if it was and must not if it was
// not: retryFailed reads the document back and decides, and until then the
// write holds the checkpoint back.
func TestAmbiguousWriteIsReadBack(t *testing.T) {
	uri, _ := mongotest.Start(t)
	ctx := context.Background()
	coll := mongotest.Client(t, uri).Database("test").Collection("things")
	js := eventstest.Run(t)
	o := New(events.NewPublisher(js), nil)
	o.MinAge = 0
	o.Register(coll)

	event := func(id string) events.Event {
		e, err := events.New("rm.thing.created", "test", "", id, map[string]string{"id": id})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	for _, tc := range []struct {
		id      string
		applied bool
	}{{"applied", true}, {"lost", false}} {
		entries, w, err := o.begin(ctx, coll, tc.id, false, nil, []events.Event{event(tc.id)})
		if err != nil {
			t.Fatal(err)
		}
		if tc.applied { // the store applied it; only the answer was lost
			d, err := withEntries(bson.D{{Key: "_id", Value: tc.id}, {Key: VersionField, Value: 1}}, entries)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := coll.InsertOne(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		o.failed(w, context.DeadlineExceeded)
		if !o.unsent(entries[0], nil) {
			t.Fatalf("%s: an entry of a write of unknown outcome counts as sent", tc.id)
		}
		if up := o.upTo(); !up.Equal(w.at) {
			t.Fatalf("%s: checkpoint %v passes the unsettled write at %v", tc.id, up, w.at)
		}
		n, err := o.retryFailed(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{true: 1, false: 0}[tc.applied]; n != want {
			t.Fatalf("%s: retryFailed published %d events, want %d", tc.id, n, want)
		}
		if len(o.pending) != 0 {
			t.Fatalf("%s: %d writes still in flight after the read-back", tc.id, len(o.pending))
		}
	}
	evs := eventstest.ReadAll(t, js, "")
	if len(evs) != 1 || evs[0].ResourceID != "applied" {
		t.Fatalf("published %v, want only the applied write's event", evs)
	}
	// A refusal by the store is no doubt: nothing was stored.
	_, w, err := o.begin(ctx, coll, "refused", false, nil, []events.Event{event("refused")})
	if err != nil {
		t.Fatal(err)
	}
	o.failed(w, ErrDuplicate)
	if len(o.pending) != 0 {
		t.Fatal("a refused write stays in flight")
	}
}
