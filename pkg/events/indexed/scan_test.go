package indexed_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/indexed/wirelookup"
)

// TestScanPagesInIDOrder: Scan passes the documents after a cursor that
// meet its conditions in _id order, as a find sorted by _id does, and
// ScanBack those before a cursor in descending order, in process and over
// the wire; a page of every document reads only what it keeps and the
// deleted ones among them (not the 3,000 stored); ScanWhere reads the
// documents of a status, a page of the failed ones only those; ScanIDs reads the
// documents a page of given _ids takes; a Reader without a Lookup says it
// cannot.
func TestScanPagesInIDOrder(t *testing.T) {
	ctx, coll, srv := startJobs(t)
	var docs []any
	var all, failed, deleted, team []string
	for i := range 3000 {
		id := fmt.Sprintf("job-%05d", (i*7919)%3000) // stored out of order
		d := bson.D{{Key: "_id", Value: id}, {Key: "status", Value: "succeeded"}}
		switch {
		case i%500 == 3:
			d = append(d, bson.E{Key: "_deleted", Value: true})
			deleted = append(deleted, id)
		case i%10 == 0:
			d[1].Value = "failed"
			failed = append(failed, id)
			all = append(all, id)
		default:
			all = append(all, id)
		}
		if i%37 == 1 && i%500 != 3 {
			d = append(d, bson.E{Key: "team", Value: "t"})
			team = append(team, id)
		}
		docs = append(docs, d)
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	slices.Sort(all)
	slices.Sort(failed)
	notDeleted := []indexed.Cond{{Path: "_deleted", Missing: true}}
	wire, err := wirelookup.Probe(ctx, mongotest.Client(t, srv.URI()).Database("rm"))
	if err != nil || wire == nil {
		t.Fatalf("probe = %v, %v", wire, err)
	}
	for name, l := range map[string]indexed.Lookup{"in process": lookup(srv), "over the wire": wire} {
		failedOnly := append(slices.Clip(notDeleted), indexed.Cond{Path: "status", In: []any{"failed"}})
		back, failedBack := slices.Clone(all), slices.Clone(failed[:len(failed)-6])
		slices.Reverse(back)
		slices.Reverse(failedBack)
		for _, way := range []struct {
			name       string
			scan       func(r *indexed.Reader, ctx context.Context, from string, want int, all []indexed.Cond, keep func(bson.Raw) (bool, error)) error
			all        []string // every document not deleted, in the order the scan gives them
			from       string   // a failed one's _id, the cursor of the failed ones' scan
			failedFrom []string // the failed ones the scan gives from it
		}{
			{"Scan", (*indexed.Reader).Scan, all, failed[5], failed[6:]},
			{"ScanBack", (*indexed.Reader).ScanBack, back, failed[len(failed)-6], failedBack},
		} {
			read := func(r *indexed.Reader, from string, want int, conds []indexed.Cond) []string {
				var page []string
				if err := way.scan(r, ctx, from, want, conds, func(d bson.Raw) (bool, error) {
					page = append(page, d.Lookup("_id").StringValue())
					return true, nil
				}); err != nil {
					t.Fatalf("%s, %s: %v", name, way.name, err)
				}
				return page
			}
			// Pages of 50 of every document not deleted: each reads the 51
			// it asks for (the 51st says more follow), deleted ones aside.
			var got []string
			pages, docs := 0, int64(0)
			for from := ""; ; pages++ {
				r := &indexed.Reader{Coll: coll, Lookup: l}
				page := read(r, from, 51, notDeleted)
				// 51, or with a deleted one among them one more.
				if n := r.DocsRead(); n != 51 && n != 52 && len(page) == 51 {
					t.Fatalf("%s, %s: page %d read %d documents for 51", name, way.name, pages, n)
				}
				docs += r.DocsRead()
				if len(page) < 51 {
					got = append(got, page...)
					break
				}
				got = append(got, page[:50]...)
				from = page[49]
			}
			if !slices.Equal(got, way.all) {
				t.Errorf("%s, %s: pages of every document: %d in %d pages, want the %d not deleted in order", name, way.name, len(got), pages, len(all))
			}
			if docs > 3000+int64(pages)+6 { // each page's 51st read again by the next, and the deleted
				t.Errorf("%s, %s: the pages read %d documents for 3,000", name, way.name, docs)
			}
			// The failed ones from a cursor: the batches grow to the end.
			if page := read(&indexed.Reader{Coll: coll, Lookup: l}, way.from, 1000, failedOnly); !slices.Equal(page, way.failedFrom) {
				t.Errorf("%s, %s: the failed from %s: %d, want %d in order", name, way.name, way.from, len(page), len(way.failedFrom))
			}
		}
	}
	// ScanIDs: a page of the given _ids (every third) reads those it
	// takes and no more.
	var some []string
	for i := 0; i < 300; i += 3 {
		some = append(some, fmt.Sprintf("job-%05d", i))
	}
	r := &indexed.Reader{Coll: coll, Lookup: lookup(srv)}
	var page []string
	if err := r.ScanIDs(ctx, some, 10, notDeleted, func(d bson.Raw) (bool, error) {
		page = append(page, d.Lookup("_id").StringValue())
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, id := range some {
		if slices.Contains(all, id) && len(want) < 10 {
			want = append(want, id)
		}
	}
	if !slices.Equal(page, want) || r.DocsRead() > 12 {
		t.Errorf("ScanIDs: %v reading %d documents, want %v reading about 10", page, r.DocsRead(), want)
	}

	// ScanWhere: pages of the failed ones (a tenth of the documents), by
	// the index of the ended ones' status and _id, in process and over
	// the wire: each reads the documents it keeps, not the 3,000.
	failedIx := indexed.Clause{{Path: "status", In: []any{"failed"}, Partial: []any{"succeeded", "failed", "cancelled"}}}
	for name, l := range map[string]indexed.Lookup{"in process": lookup(srv), "over the wire": wire} {
		var got []string
		for from := ""; ; {
			r := &indexed.Reader{Coll: coll, Lookup: l}
			var page []string
			if err := r.ScanWhere(ctx, failedIx, from, 11, notDeleted, func(d bson.Raw) (bool, error) {
				page = append(page, d.Lookup("_id").StringValue())
				return true, nil
			}); err != nil {
				t.Fatalf("%s, ScanWhere: %v", name, err)
			}
			if r.DocsRead() > 11 {
				t.Fatalf("%s, ScanWhere: a page of %d failed ones read %d documents", name, len(page), r.DocsRead())
			}
			if len(page) < 11 {
				got = append(got, page...)
				break
			}
			got = append(got, page[:10]...)
			from = page[9]
		}
		if !slices.Equal(got, failed) {
			t.Errorf("%s, ScanWhere: pages of the failed: %d, want the %d in order", name, len(got), len(failed))
		}
	}
	// ScanWhereOr: the failed ones and those of a team, each from an
	// index, merged with given _ids (succeeded ones, a failed one again,
	// one deleted), in _id order, each page reading the documents it takes.
	var extra []string
	for i, id := range all {
		if i%97 == 5 {
			extra = append(extra, id)
		}
	}
	extra = append(extra, failed[3], deleted[0])
	want = slices.Compact(slices.Sorted(slices.Values(append(append(slices.Clone(failed), team...), extra[:len(extra)-1]...))))
	teamIx := indexed.Clause{{Path: "team", In: []any{"t"}, Sparse: true}}
	for name, l := range map[string]indexed.Lookup{"in process": lookup(srv), "over the wire": wire} {
		var got []string
		for from := ""; ; {
			r := &indexed.Reader{Coll: coll, Lookup: l}
			var page []string
			if err := r.ScanWhereOr(ctx, []indexed.Clause{failedIx, teamIx}, extra, from, 11, notDeleted, func(d bson.Raw) (bool, error) {
				page = append(page, d.Lookup("_id").StringValue())
				return true, nil
			}); err != nil {
				t.Fatalf("%s, ScanWhereOr: %v", name, err)
			}
			if r.DocsRead() > 12 {
				t.Fatalf("%s, ScanWhereOr: a page of %d read %d documents", name, len(page), r.DocsRead())
			}
			if len(page) < 11 {
				got = append(got, page...)
				break
			}
			got = append(got, page[:10]...)
			from = page[9]
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s, ScanWhereOr: pages of the failed, the team's and the given: %d, want the %d in order", name, len(got), len(want))
		}
	}
	called := false
	err = (&indexed.Reader{Coll: coll}).Scan(ctx, "", 10, notDeleted, func(bson.Raw) (bool, error) { called = true; return true, nil })
	if !errors.Is(err, errors.ErrUnsupported) || called {
		t.Errorf("without a Lookup: Scan = %v (yield called: %v), want errors.ErrUnsupported and no document", err, called)
	}
	err = (&indexed.Reader{Coll: coll}).ScanBack(ctx, "", 10, notDeleted, func(bson.Raw) (bool, error) { called = true; return true, nil })
	if !errors.Is(err, errors.ErrUnsupported) || called {
		t.Errorf("without a Lookup: ScanBack = %v (yield called: %v), want errors.ErrUnsupported and no document", err, called)
	}
	err = (&indexed.Reader{Coll: coll}).ScanWhere(ctx, failedIx, "", 10, notDeleted, func(bson.Raw) (bool, error) { called = true; return true, nil })
	if !errors.Is(err, errors.ErrUnsupported) || called {
		t.Errorf("without a Lookup: ScanWhere = %v (yield called: %v), want errors.ErrUnsupported and no document", err, called)
	}
}

// AllWhere reads every match in _id order, through the Lookup's index
// (reading the matches only) and without one, alike; an _id whose order in
// the index is not the strings' (a space after a shared prefix) makes it
// send the find to the store, with the same answer.
func TestAllWhereReadsEveryMatchInOrder(t *testing.T) {
	ctx, coll, srv := startJobs(t)
	var docs []any
	var want []string
	for i := range 300 {
		id, job := fmt.Sprintf("a/%03d", i), "other"
		if i%7 == 0 {
			job = "mine"
			want = append(want, id)
		}
		docs = append(docs, bson.D{{Key: "_id", Value: id}, {Key: "job_id", Value: job}, {Key: "kind", Value: []string{"x", "y"}[i%2]}})
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	where := indexed.Clause{{Path: "job_id", In: []any{"mine"}}}
	ids := func(r *indexed.Reader) []string {
		t.Helper()
		got, err := r.AllWhere(ctx, where, nil)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range got {
			out = append(out, d.Lookup("_id").StringValue())
		}
		return out
	}
	byIndex := &indexed.Reader{Coll: coll, Lookup: lookup(srv)}
	if got := ids(byIndex); !slices.Equal(got, want) {
		t.Errorf("by index: %v, want %v", got, want)
	}
	if n := byIndex.DocsRead(); n != int64(len(want)) {
		t.Errorf("by index %d documents read, want the %d matches", n, len(want))
	}
	if got := ids(&indexed.Reader{Coll: coll}); !slices.Equal(got, want) {
		t.Errorf("by a find: %v, want %v", got, want)
	}
	// "a/000 x" sorts after "a/000" as strings, before it as the index's JSON text.
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "a/000 x"}, {Key: "job_id", Value: "mine"}}); err != nil {
		t.Fatal(err)
	}
	want = slices.Insert(want, 1, "a/000 x")
	if got := ids(&indexed.Reader{Coll: coll, Lookup: lookup(srv)}); !slices.Equal(got, want) {
		t.Errorf("by index, out of the strings' order: %v, want %v", got, want)
	}
}
