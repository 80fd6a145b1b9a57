package indexed_test

import (
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
// meet its conditions in _id order, as a find sorted by _id does, in
// process and over the wire; a page of every document reads only what it
// keeps and the deleted ones among them (not the 3,000 stored), and a Reader without a Lookup, or
// says it cannot.
func TestScanPagesInIDOrder(t *testing.T) {
	ctx, coll, srv := startJobs(t)
	var docs []any
	var all, failed []string
	for i := range 3000 {
		id := fmt.Sprintf("job-%05d", (i*7919)%3000) // stored out of order
		d := bson.D{{Key: "_id", Value: id}, {Key: "status", Value: "succeeded"}}
		switch {
		case i%500 == 3:
			d = append(d, bson.E{Key: "_deleted", Value: true})
		case i%10 == 0:
			d[1].Value = "failed"
			failed = append(failed, id)
			all = append(all, id)
		default:
			all = append(all, id)
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
		// Pages of 50 of every document not deleted: each reads the 51 it
		// asks for (the 51st says more follow), deleted ones aside.
		var got []string
		pages, read := 0, int64(0)
		for after := ""; ; pages++ {
			r := &indexed.Reader{Coll: coll, Lookup: l}
			var page []string
			err := r.Scan(ctx, after, 51, notDeleted, func(d bson.Raw) (bool, error) {
				page = append(page, d.Lookup("_id").StringValue())
				return true, nil
			})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			// 51, or with a deleted one among them one more.
			if n := r.DocsRead(); n != 51 && n != 52 && len(page) == 51 {
				t.Fatalf("%s: page %d read %d documents for 51", name, pages, n)
			}
			read += r.DocsRead()
			if len(page) < 51 {
				got = append(got, page...)
				break
			}
			got = append(got, page[:50]...)
			after = page[49]
		}
		if !slices.Equal(got, all) {
			t.Errorf("%s: pages of every document: %d in %d pages, want the %d not deleted in _id order", name, len(got), pages, len(all))
		}
		if read > 3000+int64(pages)+6 { // each page's 51st read again by the next, and the deleted
			t.Errorf("%s: the pages read %d documents for 3,000", name, read)
		}
		// The failed ones after a cursor: the batches grow to the end.
		r := &indexed.Reader{Coll: coll, Lookup: l}
		var page []string
		if err := r.Scan(ctx, failed[5], 1000, append(notDeleted, indexed.Cond{Path: "status", In: []any{"failed"}}), func(d bson.Raw) (bool, error) {
			page = append(page, d.Lookup("_id").StringValue())
			return true, nil
		}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(page, failed[6:]) {
			t.Errorf("%s: the failed after %s: %d, want %d in _id order", name, failed[5], len(page), len(failed[6:]))
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

	called := false
	err = (&indexed.Reader{Coll: coll}).Scan(ctx, "", 10, notDeleted, func(bson.Raw) (bool, error) { called = true; return true, nil })
	if !errors.Is(err, errors.ErrUnsupported) || called {
		t.Errorf("without a Lookup: Scan = %v (yield called: %v), want errors.ErrUnsupported and no document", err, called)
	}
}
