package ferretembed_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
	"github.com/avxrm/rm/pkg/embedded/mongotest"
)

// activeWhere is the kind of filter the services' hot reads use: the jobs
// in one of a few statuses, not deleted.
var (
	activeWhere    = []ferretembed.FieldCond{{Path: "status", In: []any{"pending", "running"}}}
	activeResidual = []ferretembed.FieldCond{{Path: "_deleted", Missing: true}}
)

// TestMatchingIDsReadsOnlyTheMatches stores 2,000 finished jobs and a few
// active ones: MatchingIDs returns exactly the active ones, and SQLite's
// plan for its query searches the index instead of scanning the table, so
// the finished jobs are not read at all.
func TestMatchingIDsReadsOnlyTheMatches(t *testing.T) {
	ctx := testContext(t)
	uri, srv := mongotest.Start(t)
	coll := mongotest.Client(t, uri).Database("rm").Collection("jobs")
	if _, err := srv.MatchingIDs(ctx, "rm", "jobs", activeWhere, activeResidual); err != nil {
		t.Fatalf("MatchingIDs before the collection exists: %v", err)
	}
	docs := make([]any, 0, 2000)
	for i := range 2000 {
		docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("done-%d", i)}, {Key: "status", Value: "succeeded"}, {Key: "queue_id", Value: "q"}})
	}
	docs = append(docs,
		bson.D{{Key: "_id", Value: "a"}, {Key: "status", Value: "pending"}, {Key: "cancel_requested", Value: true}},
		bson.D{{Key: "_id", Value: "b"}, {Key: "status", Value: "running"}, {Key: "post_controller", Value: bson.D{{Key: "status", Value: "running"}}}},
		bson.D{{Key: "_id", Value: "gone"}, {Key: "status", Value: "running"}, {Key: "_deleted", Value: true}})
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	ids, err := srv.MatchingIDs(ctx, "rm", "jobs", activeWhere, activeResidual)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	if want := []string{"a", "b"}; !slices.Equal(ids, want) {
		t.Errorf("MatchingIDs = %v, want %v", ids, want)
	}
	for name, where := range map[string][]ferretembed.FieldCond{
		"bool":   {{Path: "cancel_requested", In: []any{true}}},
		"dotted": {{Path: "post_controller.status", In: []any{"running"}}},
		"two":    {{Path: "cancel_requested", In: []any{true}}, {Path: "cleaned_at", Missing: true}},
	} {
		ids, err := srv.MatchingIDs(ctx, "rm", "jobs", where, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := map[string][]string{"bool": {"a"}, "dotted": {"b"}, "two": {"a"}}[name]
		if !slices.Equal(ids, want) {
			t.Errorf("%s: MatchingIDs = %v, want %v", name, ids, want)
		}
	}

	// The plan: a search of the field index, no scan of the table.
	table, err := srv.TableName(ctx, "rm", "jobs")
	if err != nil {
		t.Fatal(err)
	}
	q, args := ferretembed.MatchSQL(table, activeWhere, activeResidual)
	joined := sqlitePlan(ctx, t, srv, "rm", q, args...)
	if !strings.Contains(joined, "USING INDEX avxrm_field_") || strings.Contains(joined, "SCAN") {
		t.Errorf("plan of %q = %q, want a search of the avxrm_field_ index and no scan", q, joined)
	}
}
