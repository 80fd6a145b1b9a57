package ledger_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events/ledger"
)

func TestEncodeDecode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		leases map[string][]ledger.Claim
		json   bool // stored as JSON, not as lines
	}{
		{name: "none", leases: map[string][]ledger.Claim{}},
		{name: "jobs, post-controllers and replicas", leases: map[string][]ledger.Claim{
			"job-01M8QX5YSF3X1M3S2YKZA544DQ":                 {{Queue: "q-01M8QX5BP0KCPGPRXYVA1YBG2J", Count: 20}, {Queue: "q-ctl", Count: 1}},
			"job-01M8QX5YSF3X1M3S2YKZA544DQ/post-controller": {{Queue: "q-post", Count: 1}},
			"dep-01X/replica/3":                              {{Queue: "q-Default", Count: 1}},
		}},
		{name: "an id the lines cannot hold", json: true, leases: map[string][]ledger.Claim{
			"job-1":      {{Queue: "q a=b", Count: 2}},
			"job\nother": {{Queue: "q", Count: 1}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			held := ledger.Encode(tc.leases)
			if got := strings.HasPrefix(held, "{"); got != tc.json {
				t.Errorf("stored as JSON: %v, want %v: %q", got, tc.json, held)
			}
			got, err := ledger.Decode(held)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.leases, got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
			if again := ledger.Encode(got); again != held {
				t.Errorf("encoding is not stable: %q then %q", held, again)
			}
		})
	}
}

func TestDecodeRejectsDamage(t *testing.T) {
	for _, held := range []string{
		"",
		"job-1 q=1\n",             // no mark
		"leases\njob-1 q\n",       // no count
		"leases\njob-1 q=one\n",   // not a number
		"leases\njob-1 =1\n",      // no queue
		"leases\n\n",              // empty line
		`{"job-1":[{"q":"q","n":`, // cut JSON
	} {
		if got, err := ledger.Decode(held); err == nil {
			t.Errorf("Decode(%q) = %v, want an error", held, got)
		}
	}
}

// The services read both forms from the store: the line form the scheduler
// writes now, and the map the ledger was before, until the scheduler's next
// write replaces it.
func TestReadBothForms(t *testing.T) {
	ctx := context.Background()
	uri, _ := mongotest.Start(t)
	db := mongotest.Client(t, uri).Database("rm")
	coll := db.Collection(ledger.Collection)

	got, err := ledger.Read(ctx, db)
	if err != nil || len(got) != 0 {
		t.Fatalf("no ledger: %v, %v; want no leases", got, err)
	}

	want := map[string][]ledger.Claim{"job-1": {{Queue: "q-a", Count: 3}, {Queue: "q-ctl", Count: 1}}}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: ledger.ID}, {Key: "epoch", Value: 1}, {Key: "version", Value: 3},
		{Key: "leases", Value: bson.D{{Key: "job-1", Value: bson.A{
			bson.D{{Key: "queue", Value: "q-a"}, {Key: "count", Value: 3}},
			bson.D{{Key: "queue", Value: "q-ctl"}, {Key: "count", Value: 1}},
		}}}}}); err != nil {
		t.Fatal(err)
	}
	wantRead(t, db, "earlier form", want)

	want["job-2"] = []ledger.Claim{{Queue: "q-b", Count: 1}}
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: ledger.ID}}, bson.D{
		{Key: "$set", Value: bson.D{{Key: "held", Value: ledger.Encode(want)}}},
		{Key: "$unset", Value: bson.D{{Key: "leases", Value: ""}}},
	}); err != nil {
		t.Fatal(err)
	}
	got = wantRead(t, db, "line form", want)
	if a := ledger.Allocated(got); a["q-a"] != 3 || a["q-b"] != 1 || a["q-ctl"] != 1 {
		t.Errorf("Allocated = %v", a)
	}
}

// wantRead checks that Read returns want from db's ledger, and returns it.
func wantRead(t *testing.T, db *mongo.Database, form string, want map[string][]ledger.Claim) map[string][]ledger.Claim {
	t.Helper()
	got, err := ledger.Read(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", form, diff)
	}
	return got
}
