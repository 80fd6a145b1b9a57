package ferretembed_test

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
	"github.com/avxrm/rm/pkg/embedded/mongotest"
)

// TestIDsAfterReadsTheIDIndexInOrder: IDsAfter pages through a collection
// in _id order (the order of a MongoDB sort by _id, which the API's lists
// use), from the first _id or after any, IDsBefore the other way, and
// SQLite's plan for each reads the _id index in its order: no scan of the
// table, no sort.
func TestIDsAfterReadsTheIDIndexInOrder(t *testing.T) {
	ctx := testContext(t)
	uri, srv := mongotest.Start(t)
	if ids, err := srv.IDsAfter(ctx, "rm", "jobs", "", 10); err != nil || len(ids) != 0 {
		t.Fatalf("IDsAfter before the collection exists = %v, %v; want none", ids, err)
	}
	coll := mongotest.Client(t, uri).Database("rm").Collection("jobs")
	// Ids as the services make them (events.NewID: a prefix and 26
	// characters of Crockford's base32), inserted out of order.
	const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	var want []string
	docs := make([]any, 0, 600)
	for range 600 {
		var b strings.Builder
		for range 26 {
			b.WriteByte(alphabet[rand.IntN(len(alphabet))])
		}
		id := "job-" + b.String()
		want = append(want, id)
		docs = append(docs, bson.D{{Key: "_id", Value: id}, {Key: "status", Value: "succeeded"}})
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.IDsAfter(ctx, "rm", "jobs", "", 10); err == nil {
		t.Fatal("IDsAfter without the _id index: want an error, not a scan of the table")
	}
	if err := srv.EnsureIDIndex(ctx, "rm", "jobs"); err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)

	got := pagesOf7(t, func(after string) ([]string, error) { return srv.IDsAfter(ctx, "rm", "jobs", after, 7) })
	if !slices.Equal(got, want) {
		t.Fatalf("IDsAfter's pages hold %d ids, not the %d in order", len(got), len(want))
	}
	// After an _id that is not stored: from the next one.
	missing := want[300][:len(want[300])-1] + "~"
	page, err := srv.IDsAfter(ctx, "rm", "jobs", missing, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(page, want[301:303]) {
		t.Errorf("IDsAfter(%s) = %v, want %v", missing, page, want[301:303])
	}
	if page, err := srv.IDsAfter(ctx, "rm", "jobs", want[599], 5); err != nil || len(page) != 0 {
		t.Errorf("IDsAfter(the last) = %v, %v; want none", page, err)
	}
	if _, err := srv.IDsAfter(ctx, "rm", "jobs", "", 0); err == nil {
		t.Error("IDsAfter with limit 0: want an error")
	}

	// IDsBefore: the same pages the other way, newest first.
	got = pagesOf7(t, func(before string) ([]string, error) { return srv.IDsBefore(ctx, "rm", "jobs", before, 7) })
	slices.Reverse(got)
	if !slices.Equal(got, want) {
		t.Fatalf("IDsBefore's pages hold %d ids, not the %d in descending order", len(got), len(want))
	}
	if page, err := srv.IDsBefore(ctx, "rm", "jobs", missing, 2); err != nil || !slices.Equal(page, []string{want[300], want[299]}) {
		t.Errorf("IDsBefore(%s) = %v, %v; want %v", missing, page, err, []string{want[300], want[299]})
	}
	if page, err := srv.IDsBefore(ctx, "rm", "jobs", want[0], 5); err != nil || len(page) != 0 {
		t.Errorf("IDsBefore(the first) = %v, %v; want none", page, err)
	}

	table, err := srv.TableName(ctx, "rm", "jobs")
	if err != nil {
		t.Fatal(err)
	}
	for _, desc := range []bool{false, true} {
		for _, from := range []bool{false, true} {
			args := []any{5}
			if from {
				args = []any{want[10], 5}
			}
			plan := sqlitePlan(ctx, t, srv, "rm", ferretembed.IDsInOrderSQL(table, from, desc), args...)
			if strings.Contains(plan, "TEMP B-TREE") || !strings.Contains(plan, "USING INDEX") {
				t.Errorf("from %v, descending %v: plan %q; want the _id index read in order", from, desc, plan)
			}
			t.Logf("from %v, descending %v: %s", from, desc, plan)
		}
	}
}

// pagesOf7 reads pages of at most 7 _ids by next, from "" on, each page's
// last _id the next page's cursor, until a page holds fewer than 7.
func pagesOf7(t *testing.T, next func(from string) ([]string, error)) []string {
	t.Helper()
	var got []string
	for from := ""; ; {
		page, err := next(from)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 7 {
			t.Fatalf("a page of %d ids, limit 7", len(page))
		}
		got = append(got, page...)
		if len(page) < 7 {
			return got
		}
		from = page[len(page)-1]
	}
}

// TestMatchingIDsAfterReadsItsIndexInOrder: MatchingIDsAfter pages
// through the documents of one or more statuses in _id order, from the
// first or after any _id, and SQLite's plan for its query searches an
// index of the status and _id, partial (the ended statuses only), in its
// order: no scan of the table, no sort (SQLite answers from the index
// alone, a covering index), so a page of a status few documents have reads
// only those.
func TestMatchingIDsAfterReadsItsIndexInOrder(t *testing.T) {
	ctx := testContext(t)
	uri, srv := mongotest.Start(t)
	ended := []any{"succeeded", "failed", "cancelled"}
	failed := []ferretembed.FieldCond{{Path: "status", In: []any{"failed"}, Partial: ended}}
	if ids, err := srv.MatchingIDsAfter(ctx, "rm", "jobs", failed, "", 10); err != nil || len(ids) != 0 {
		t.Fatalf("MatchingIDsAfter before the collection exists = %v, %v; want none", ids, err)
	}
	coll := mongotest.Client(t, uri).Database("rm").Collection("jobs")
	const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	want := map[string][]string{}
	docs := make([]any, 0, 1000)
	for i := range 1000 {
		var b strings.Builder
		for range 26 {
			b.WriteByte(alphabet[rand.IntN(len(alphabet))])
		}
		id, status := "job-"+b.String(), "succeeded"
		switch {
		case i%50 == 0:
			status = "failed"
		case i%50 == 1:
			status = "cancelled"
		case i%50 == 2:
			status = "running"
		}
		want[status] = append(want[status], id)
		docs = append(docs, bson.D{{Key: "_id", Value: id}, {Key: "status", Value: status}})
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	for _, ids := range want {
		slices.Sort(ids)
	}
	page := func(where []ferretembed.FieldCond) func(string) ([]string, error) {
		return func(after string) ([]string, error) { return srv.MatchingIDsAfter(ctx, "rm", "jobs", where, after, 7) }
	}
	if got := pagesOf7(t, page(failed)); !slices.Equal(got, want["failed"]) {
		t.Errorf("the pages of the failed: %v\nwant %v", got, want["failed"])
	}
	// Two statuses: one query each, merged in _id order.
	two := []ferretembed.FieldCond{{Path: "status", In: []any{"cancelled", "failed"}, Partial: ended}}
	both := slices.Sorted(slices.Values(append(slices.Clone(want["failed"]), want["cancelled"]...)))
	if got := pagesOf7(t, page(two)); !slices.Equal(got, both) {
		t.Errorf("the pages of the failed and the cancelled: %v\nwant %v", got, both)
	}
	if got := pagesOf7(t, page([]ferretembed.FieldCond{{Path: "status", In: []any{"succeeded"}, Partial: ended}})); !slices.Equal(got, want["succeeded"]) {
		t.Errorf("the pages of the succeeded hold %d ids, not the %d in order", len(got), len(want["succeeded"]))
	}
	// After an _id that is not stored: from the next one.
	f := want["failed"]
	missing := f[10][:len(f[10])-1] + "~"
	if got, err := srv.MatchingIDsAfter(ctx, "rm", "jobs", failed, missing, 2); err != nil || !slices.Equal(got, f[11:13]) {
		t.Errorf("MatchingIDsAfter(%s) = %v, %v; want %v", missing, got, err, f[11:13])
	}
	for name, where := range map[string][]ferretembed.FieldCond{
		"a value its partial index leaves out": {{Path: "status", In: []any{"running"}, Partial: ended}},
		"no values":                            {{Path: "status", Missing: true}},
		"a bad path":                           {{Path: "status'", In: []any{"failed"}}},
		"by _id":                               {{Path: "_id", In: []any{"x"}}},
	} {
		if ids, err := srv.MatchingIDsAfter(ctx, "rm", "jobs", where, "", 5); err == nil {
			t.Errorf("%s: MatchingIDsAfter = %v, want an error", name, ids)
		}
	}
	if _, err := srv.MatchingIDsAfter(ctx, "rm", "jobs", failed, "", 0); err == nil {
		t.Error("MatchingIDsAfter with limit 0: want an error")
	}

	table, err := srv.TableName(ctx, "rm", "jobs")
	if err != nil {
		t.Fatal(err)
	}
	var index string
	for _, name := range sqliteIndexes(ctx, t, srv, "rm", table) {
		if strings.Contains(name, "_status__id_p") {
			index = name
		}
	}
	sdb, err := srv.OpenSQLite("rm")
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	var def string
	if err := sdb.QueryRowContext(ctx, "SELECT sql FROM sqlite_master WHERE name = ?", index).Scan(&def); err != nil {
		t.Fatalf("the index of status and _id (%q): %v", index, err)
	}
	if !strings.Contains(def, "WHERE "+ferretembed.FieldExpr("status")+" IN ('succeeded', 'failed', 'cancelled')") {
		t.Errorf("index %s = %q; want it partial, holding the ended statuses only", index, def)
	}
	for _, after := range []bool{false, true} {
		q, args, err := ferretembed.MatchAfterSQL(table, failed, after)
		if err != nil {
			t.Fatal(err)
		}
		if after {
			args = append(args, f[10])
		}
		plan := sqlitePlan(ctx, t, srv, "rm", q, append(args, 5)...)
		if !strings.Contains(plan, "INDEX "+index+" ") || strings.Contains(plan, "TEMP B-TREE") || strings.Contains(plan, "SCAN") {
			t.Errorf("after %v: plan %q; want a search of %s in its order, no scan, no sort", after, plan, index)
		}
		t.Logf("after %v: %s", after, plan)
	}
}
