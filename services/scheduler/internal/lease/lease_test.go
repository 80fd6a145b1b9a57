package lease_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events/ledger"
	"github.com/avxrm/rm/services/scheduler/internal/lease"
)

// A ledger stored in the form before 2026-12-01 (a map of arrays) is loaded
// as it is, and the next write stores it whole in the line form, with the
// change applied and the earlier field gone.
func TestApplyReplacesEarlierForm(t *testing.T) {
	ctx := context.Background()
	uri, _ := mongotest.Start(t)
	db := mongotest.Client(t, uri).Database("rm")
	if _, err := db.Collection(lease.Collection).InsertOne(ctx, bson.D{{Key: "_id", Value: lease.LedgerID}, {Key: "epoch", Value: 2}, {Key: "version", Value: 7},
		{Key: "leases", Value: bson.D{
			{Key: "job-1", Value: bson.A{bson.D{{Key: "queue", Value: "q-a"}, {Key: "count", Value: 3}}, bson.D{{Key: "queue", Value: "q-ctl"}, {Key: "count", Value: 1}}}},
			{Key: "job-2", Value: bson.A{bson.D{{Key: "queue", Value: "q-a"}, {Key: "count", Value: 2}}}},
		}}}); err != nil {
		t.Fatal(err)
	}
	s := lease.New(db)
	if err := s.Ensure(ctx); err != nil { // the ledger exists: left as it is
		t.Fatal(err)
	}
	l, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l.Epoch != 2 || l.Version != 7 || l.Allocated()["q-a"] != 5 {
		t.Fatalf("loaded %+v", l)
	}
	c := lease.Change{Grants: map[string][]lease.Claim{"job-3": {{Queue: "q-b", Count: 4}}}, Releases: []string{"job-2"}}
	if err := s.Apply(ctx, &l, c); err != nil {
		t.Fatal(err)
	}
	want := map[string][]lease.Claim{"job-1": {{Queue: "q-a", Count: 3}, {Queue: "q-ctl", Count: 1}}, "job-3": {{Queue: "q-b", Count: 4}}}
	if diff := cmp.Diff(want, l.Leases); diff != "" {
		t.Errorf("in memory (-want +got):\n%s", diff)
	}
	var raw bson.M
	if err := db.Collection(lease.Collection).FindOne(ctx, bson.D{{Key: "_id", Value: lease.LedgerID}}).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	if _, ok := raw["leases"]; ok {
		t.Errorf("the earlier form is still stored: %v", raw)
	}
	if raw["held"] != ledger.Encode(want) || raw["version"] != int64(8) {
		t.Errorf("stored %v; want held %q at version 8", raw, ledger.Encode(want))
	}
	stored, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(l, stored); diff != "" {
		t.Errorf("stored differs from memory (-memory +stored):\n%s", diff)
	}
}
