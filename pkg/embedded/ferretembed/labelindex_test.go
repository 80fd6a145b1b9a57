package ferretembed_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
	"github.com/avxrm/rm/pkg/embedded/mongotest"
)

// TestOnDemandIndexOfALabelKey: MatchingIDsAfter pages through the
// documents with one value of a label whose stored key needs quoting in a
// JSON path (events.LabelField: "example.com/team" is stored as
// "example%2Ecom/team") and an ended status, in _id order, from an index of
// that key, the status and _id that holds only the ended documents with the
// key (jobdoc.Labelled), searched in its order (no scan, no sort). A table
// has at most MaxOnDemandIndexes such indexes: a read that would make one
// more fails with ErrIndexLimit (errors.ErrUnsupported), while the keys
// that have one, and the services' own indexes, are still read; a path
// that could break out of its quotes is refused.
func TestOnDemandIndexOfALabelKey(t *testing.T) {
	ctx := testContext(t)
	uri, srv := mongotest.Start(t)
	coll := mongotest.Client(t, uri).Database("rm").Collection("jobs")
	const key = "labels.example%2Ecom/team"
	want := map[string][]string{}
	docs := make([]any, 0, 600)
	for i := range 600 {
		id := fmt.Sprintf("job-%04d", (i*7919)%600) // out of _id order
		d := bson.D{{Key: "_id", Value: id}, {Key: "status", Value: "succeeded"}}
		switch i % 30 {
		case 0:
			d = append(d, bson.E{Key: "labels", Value: bson.D{{Key: "example%2Ecom/team", Value: "adas"}, {Key: "campaign", Value: "c1"}}})
			want["adas"] = append(want["adas"], id)
		case 1:
			d = append(d, bson.E{Key: "labels", Value: bson.D{{Key: "example%2Ecom/team", Value: "perception"}}})
			want["perception"] = append(want["perception"], id)
		case 2:
			d = append(d, bson.E{Key: "labels", Value: bson.D{{Key: "example%2Ecom/team", Value: ""}}})
			want[""] = append(want[""], id)
		case 3:
			d = append(d, bson.E{Key: "labels", Value: nil})
		}
		docs = append(docs, d)
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	ended := []any{"succeeded", "failed", "cancelled"}
	cond := func(v string) []ferretembed.FieldCond { // as jobdoc.Labelled
		return []ferretembed.FieldCond{{Path: key, In: []any{v}, Sparse: true, OnDemand: true}, {Path: "status", In: ended, Partial: ended}}
	}
	for v, ids := range want {
		slices.Sort(ids)
		got := pagesOf7(t, func(after string) ([]string, error) {
			return srv.MatchingIDsAfter(ctx, "rm", "jobs", cond(v), after, 7)
		})
		if !slices.Equal(got, ids) {
			t.Errorf("the pages of %s=%q: %v\nwant %v", key, v, got, ids)
		}
	}

	table, err := srv.TableName(ctx, "rm", "jobs")
	if err != nil {
		t.Fatal(err)
	}
	var index string
	for _, name := range sqliteIndexes(ctx, t, srv, "rm", table) {
		if strings.Contains(name, "_od_labels_example%2Ecom/team_status__id_p") {
			index = name
		}
	}
	if index == "" {
		t.Fatalf("no index on demand of the label's key among %v", sqliteIndexes(ctx, t, srv, "rm", table))
	}
	expr := ferretembed.FieldExpr(key)
	if expr != `_ferretdb_sjson->>'$.labels."example%2Ecom/team"'` {
		t.Errorf("the key's expression = %s, want its segment quoted", expr)
	}
	q, args, err := ferretembed.MatchAfterSQL(table, []ferretembed.FieldCond{{Path: key, In: []any{"adas"}, Sparse: true, OnDemand: true},
		{Path: "status", In: []any{"succeeded"}, Partial: ended}}, true)
	if err != nil {
		t.Fatal(err)
	}
	plan := sqlitePlan(ctx, t, srv, "rm", q, append(args, "job-0100", 5)...)
	if !strings.Contains(plan, "INDEX "+index+" ") || strings.Contains(plan, "TEMP B-TREE") || strings.Contains(plan, "SCAN") {
		t.Errorf("plan %q; want a search of %s in its order, no scan, no sort", plan, index)
	}

	// Up to the limit: one more key each (the first is made above).
	for i := 1; i < ferretembed.MaxOnDemandIndexes; i++ {
		other := []ferretembed.FieldCond{{Path: fmt.Sprintf("labels.k%d", i), In: []any{"v"}, Sparse: true, OnDemand: true}}
		if _, err := srv.MatchingIDsAfter(ctx, "rm", "jobs", other, "", 5); err != nil {
			t.Fatalf("key %d of %d: %v", i+1, ferretembed.MaxOnDemandIndexes, err)
		}
	}
	past := []ferretembed.FieldCond{{Path: "labels.campaign", In: []any{"c1"}, Sparse: true, OnDemand: true}}
	if ids, err := srv.MatchingIDsAfter(ctx, "rm", "jobs", past, "", 5); !errors.Is(err, ferretembed.ErrIndexLimit) || !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("a key past the limit: %v, %v; want ErrIndexLimit, errors.ErrUnsupported", ids, err)
	}
	if got, err := srv.MatchingIDsAfter(ctx, "rm", "jobs", cond("adas"), "", 100); err != nil || !slices.Equal(got, want["adas"]) {
		t.Errorf("a key with its index, past the limit: %v, %v; want %v", got, err, want["adas"])
	}
	byStatus := []ferretembed.FieldCond{{Path: "status", In: []any{"succeeded"}, Partial: ended}}
	if got, err := srv.MatchingIDsAfter(ctx, "rm", "jobs", byStatus, "", 3); err != nil || len(got) != 3 {
		t.Errorf("an index not on demand, past the limit: %v, %v; want 3 ids", got, err)
	}
	for name, where := range map[string][]ferretembed.FieldCond{
		"a quote in a segment":   {{Path: `labels.a"b`, In: []any{"x"}, Sparse: true, OnDemand: true}},
		"a quote in the first":   {{Path: `lab'els.a`, In: []any{"x"}, Sparse: true, OnDemand: true}},
		"an empty segment":       {{Path: "labels..a", In: []any{"x"}, Sparse: true, OnDemand: true}},
		"a bracket in a segment": {{Path: "labels.a[0]", In: []any{"x"}, Sparse: true, OnDemand: true}},
	} {
		if ids, err := srv.MatchingIDsAfter(ctx, "rm", "jobs", where, "", 5); err == nil || errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("%s: MatchingIDsAfter = %v, %v; want a refusal", name, ids, err)
		}
	}
}
