package httpapi

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/services/api/internal/store"
)

// The sweep of expired idempotency keys deletes those and only those, on
// MongoDB's way (one DeleteMany, which its TTL index makes idle) and on the
// embedded store's: there the DeleteMany made FerretDB read every key under
// the store's write lock (13 s with 100,000 keys), so the expiries come
// from an index and each key is deleted by _id, as it was read.
func TestExpiredKeysSwept(t *testing.T) {
	bothWays(t, func(t *testing.T, byIndex bool) {
		var mu sync.Mutex
		var byRange []string // commands on the keys that read or delete by anything but _id and expires_at's value
		mon := &event.CommandMonitor{Started: func(_ context.Context, ev *event.CommandStartedEvent) {
			var filters []bson.Raw
			switch c, _ := ev.Command.Lookup(ev.CommandName).StringValueOK(); {
			case c != store.IdempotencyKeys:
				return
			case ev.CommandName == "find":
				f, _ := ev.Command.Lookup("filter").DocumentOK()
				filters = append(filters, f)
			case ev.CommandName == "delete":
				vals, _ := ev.Command.Lookup("deletes").Array().Values()
				for _, v := range vals {
					f, _ := v.Document().Lookup("q").DocumentOK()
					filters = append(filters, f)
				}
			}
			for _, f := range filters {
				if _, ok := f.Lookup("_id").StringValueOK(); !ok || f.Lookup("expires_at").Type == bson.TypeEmbeddedDocument {
					mu.Lock()
					byRange = append(byRange, ev.CommandName+" "+f.String())
					mu.Unlock()
				}
			}
		}}
		e := newEnvSeen(t, nil, byIndex, mon)
		now := time.Now().UTC().Truncate(time.Millisecond)
		var docs []any
		var live []string
		for i := range 500 {
			rec := idempotencyRecord{ID: fmt.Sprintf("POST /api/resources/v1/jobs key-%03d", i), BodyHash: "h", Done: i%5 != 0,
				Status: 201, Body: `{"id": "job-x"}`, ExpiresAt: now.Add(-time.Duration(i+1) * time.Minute)}
			if i%3 == 0 { // not yet expired
				rec.ExpiresAt = now.Add(time.Duration(i+1) * time.Minute)
				live = append(live, rec.ID)
			}
			docs = append(docs, rec)
		}
		coll := e.db.Collection(store.IdempotencyKeys)
		if _, err := coll.InsertMany(context.Background(), docs); err != nil {
			t.Fatal(err)
		}
		n, err := e.srv.sweepExpiredKeys(context.Background(), now)
		if err != nil {
			t.Fatal(err)
		}
		if want := 500 - len(live); byIndex && n != want {
			t.Errorf("the sweep deleted %d keys, want %d", n, want)
		}
		left, err := indexed.FindIDs(context.Background(), coll, bson.D{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(left)
		if !slices.Equal(left, live) {
			t.Errorf("after the sweep %d keys are left, want the %d that have not expired", len(left), len(live))
		}
		mu.Lock()
		defer mu.Unlock()
		if byIndex && len(byRange) > 0 {
			t.Errorf("the sweep sent %d commands that the embedded store answers by reading every key, first %s", len(byRange), byRange[0])
		}
	})
}
