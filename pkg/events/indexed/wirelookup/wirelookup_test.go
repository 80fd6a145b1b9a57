package wirelookup_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/indexed/ferretlookup"
	"github.com/avxrm/rm/pkg/events/indexed/wirelookup"
)

var active = indexed.Filter{
	All: []indexed.Cond{{Path: "_deleted", Missing: true}},
	Any: []indexed.Clause{
		{{Path: "status", In: []any{"pending", "running"}}},
		{{Path: "cleanup_requested", In: []any{true}}, {Path: "cleaned_at", Missing: true}},
	},
}

// TestWireLookupAnswersAsInProcess: over the wire, through the store's
// proxy, the probe finds the reads by index; they return the ids the
// in-process Lookup returns, and a read through them reads only the
// matching documents among 2,000 finished ones. FerretDB reached directly
// (no proxy) does not know the command: the probe returns no Lookup.
func TestWireLookupAnswersAsInProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	uri, srv := mongotest.Start(t)
	db := mongotest.Client(t, uri).Database("rm")
	coll := db.Collection("jobs")
	if err := srv.EnsureIDIndex(ctx, "rm", "jobs"); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	docs := []any{
		bson.D{{Key: "_id", Value: "p"}, {Key: "status", Value: "pending"}, {Key: "queue_id", Value: "q"}},
		bson.D{{Key: "_id", Value: "r"}, {Key: "status", Value: "running"}, {Key: "queue_id", Value: "q"}},
		bson.D{{Key: "_id", Value: "c"}, {Key: "status", Value: "succeeded"}, {Key: "cleanup_requested", Value: true}},
		bson.D{{Key: "_id", Value: "deleted"}, {Key: "status", Value: "pending"}, {Key: "_deleted", Value: true}},
	}
	for i := range 2000 {
		docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("done-%04d", i)}, {Key: "status", Value: "succeeded"},
			{Key: "queue_id", Value: "q"}, {Key: "finished_at", Value: base.Add(time.Duration(i) * time.Minute)}})
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}

	wire, err := wirelookup.Probe(ctx, db)
	if err != nil || wire == nil {
		t.Fatalf("probe through the proxy = %v, %v; want a Lookup", wire, err)
	}
	local := ferretlookup.New(srv, "rm")
	where := []indexed.Cond{{Path: "status", In: []any{"pending", "running"}}}
	residual := []indexed.Cond{{Path: "_deleted", Missing: true}}
	sameIDs(t, "MatchingIDs", []string{"p", "r"},
		func(l indexed.Lookup) ([]string, error) { return l.MatchingIDs(ctx, "jobs", where, residual) }, wire, local)
	flag := []indexed.Cond{{Path: "cleanup_requested", In: []any{true}}, {Path: "cleaned_at", Missing: true}}
	sameIDs(t, "MatchingIDs on a bool", []string{"c"},
		func(l indexed.Lookup) ([]string, error) { return l.MatchingIDs(ctx, "jobs", flag, nil) }, wire, local)
	latest := []indexed.Cond{{Path: "queue_id", In: []any{"q"}}, {Path: "status", In: []any{"succeeded"}}}
	sameIDs(t, "LatestIDs", []string{"done-1997", "done-1998", "done-1999"},
		func(l indexed.Lookup) ([]string, error) { return l.LatestIDs(ctx, "jobs", latest, "finished_at", 3) }, wire, local)

	partial := []indexed.Cond{{Path: "status", In: []any{"pending", "running"}, Partial: []any{"submitted", "pending", "running"}}}
	sameIDs(t, "MatchingIDs by a partial index", []string{"p", "r"},
		func(l indexed.Lookup) ([]string, error) { return l.MatchingIDs(ctx, "jobs", partial, residual) }, wire, local)
	sparse := []indexed.Cond{{Path: "queue_id", In: []any{"q"}, Sparse: true}, {Path: "status", In: []any{"pending"}}}
	sameIDs(t, "MatchingIDs by a sparse index", []string{"p"},
		func(l indexed.Lookup) ([]string, error) { return l.MatchingIDs(ctx, "jobs", sparse, nil) }, wire, local)
	// The partial values travel: a value the index leaves out is refused
	// over the wire as in process.
	short := []indexed.Cond{{Path: "status", In: []any{"succeeded"}, Partial: []any{"pending"}}}
	for _, l := range []indexed.Lookup{wire, local} {
		if ids, err := l.MatchingIDs(ctx, "jobs", short, nil); err == nil {
			t.Errorf("%T: MatchingIDs for a value its partial index leaves out = %v, want an error", l, ids)
		}
	}

	r := &indexed.Reader{Coll: coll, Lookup: wire}
	got, err := r.Find(ctx, active)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || r.DocsRead() != 3 {
		t.Errorf("read %d documents for %d matches over the wire, want 3 for 3", r.DocsRead(), len(got))
	}
	if _, err := wire.LatestIDs(ctx, "jobs", latest, "finished_at; DROP", 3); err == nil {
		t.Error("LatestIDs with a bad order path: no error")
	}
	if _, err := wire.MatchingVersions(ctx, "jobs", where, residual, "version; DROP"); err == nil {
		t.Error("MatchingVersions with a bad version path: no error")
	}
	// A store of before avxrmMatchingVersions: every match, version unknown
	// (NoValue), so that the caller reads each.
	old, err := wirelookup.NewV1(db).MatchingVersions(ctx, "jobs", where, residual, "version")
	if err != nil || len(old) != 2 || old["p"] != indexed.NoValue || old["r"] != indexed.NoValue {
		t.Errorf("MatchingVersions from a version-1 store = %v, %v; want p and r at NoValue", old, err)
	}
	// A negative value is given as it is, none as NoValue, both ways; a
	// store of before version 6 gave -1 for none, which is read as none.
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "p"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "prio", Value: -1}}}}); err != nil {
		t.Fatal(err)
	}
	for i, l := range []indexed.Lookup{wire, local} {
		if got, err := l.MatchingVersions(ctx, "jobs", where, residual, "prio"); err != nil || got["p"] != -1 || got["r"] != indexed.NoValue {
			t.Errorf("MatchingVersions of a negative value and of none (lookup %d) = %v, %v; want p -1, r NoValue", i, got, err)
		}
	}
	if got, err := wirelookup.NewV5(db).MatchingVersions(ctx, "jobs", where, residual, "prio"); err != nil || got["p"] != indexed.NoValue || got["r"] != indexed.NoValue {
		t.Errorf("MatchingVersions as from a version 5 store = %v, %v; want p and r NoValue (-1 read as none)", got, err)
	}

	sameIDs(t, "IDsAfter", []string{"done-0000", "done-0001"},
		func(l indexed.Lookup) ([]string, error) { return l.IDsAfter(ctx, "jobs", "deleted", 2) }, wire, local)
	// A store of before avxrmIDsAfter: the caller is told to send its
	// list to the store as it is.
	for name, l := range map[string]indexed.Lookup{"version 1": wirelookup.NewV1(db), "version 2": wirelookup.NewV2(db)} {
		if ids, err := l.IDsAfter(ctx, "jobs", "", 2); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("IDsAfter from a %s store = %v, %v; want errors.ErrUnsupported", name, ids, err)
		}
	}

	// IDsBefore, newest first: in descending order, from the last or
	// before a given _id.
	for i, l := range []indexed.Lookup{wire, local} {
		for _, c := range []struct {
			before string
			want   []string
		}{{"", []string{"r", "p"}}, {"done-0000", []string{"deleted", "c"}}, {"c", nil}} {
			if ids, err := l.IDsBefore(ctx, "jobs", c.before, 2); err != nil || !slices.Equal(ids, c.want) {
				t.Errorf("IDsBefore(%q) (lookup %d) = %v, %v; want %v", c.before, i, ids, err, c.want)
			}
		}
	}
	for name, l := range map[string]indexed.Lookup{"version 1": wirelookup.NewV1(db), "version 3": wirelookup.NewV3(db)} {
		if ids, err := l.IDsBefore(ctx, "jobs", "", 2); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("IDsBefore from a %s store = %v, %v; want errors.ErrUnsupported", name, ids, err)
		}
	}

	// MatchingIDsAfter, in _id order among the jobs of a status, from
	// the index of the ended jobs' status and _id.
	succeeded := []indexed.Cond{{Path: "status", In: []any{"succeeded"}, Partial: []any{"succeeded", "failed", "cancelled"}}}
	for i, l := range []indexed.Lookup{wire, local} {
		for _, c := range []struct {
			after string
			want  []string
		}{{"", []string{"c", "done-0000"}}, {"d", []string{"done-0000", "done-0001"}}, {"done-1999", nil}} {
			if ids, err := l.MatchingIDsAfter(ctx, "jobs", succeeded, c.after, 2); err != nil || !slices.Equal(ids, c.want) {
				t.Errorf("MatchingIDsAfter(%q) (lookup %d) = %v, %v; want %v", c.after, i, ids, err, c.want)
			}
		}
	}
	for name, l := range map[string]indexed.Lookup{"version 1": wirelookup.NewV1(db), "version 3": wirelookup.NewV3(db), "version 4": wirelookup.NewV4(db)} {
		if ids, err := l.MatchingIDsAfter(ctx, "jobs", succeeded, "", 2); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("MatchingIDsAfter from a %s store = %v, %v; want errors.ErrUnsupported", name, ids, err)
		}
	}

	// Indexes on demand (a label's key): the same ids both ways; a store
	// of before them is not sent one; past the store's limit, over the wire
	// as in process, the read fails with errors.ErrUnsupported.
	if _, err := coll.InsertMany(ctx, []any{
		bson.D{{Key: "_id", Value: "l1"}, {Key: "status", Value: "succeeded"}, {Key: "labels", Value: bson.D{{Key: "example%2Ecom/team", Value: "adas"}}}},
		bson.D{{Key: "_id", Value: "l2"}, {Key: "status", Value: "failed"}, {Key: "labels", Value: bson.D{{Key: "example%2Ecom/team", Value: "adas"}}}},
		bson.D{{Key: "_id", Value: "l3"}, {Key: "status", Value: "failed"}, {Key: "labels", Value: bson.D{{Key: "example%2Ecom/team", Value: "other"}}}},
	}); err != nil {
		t.Fatal(err)
	}
	label := func(k string) []indexed.Cond {
		return []indexed.Cond{{Path: "labels." + k, In: []any{"adas"}, Sparse: true, OnDemand: true}}
	}
	sameIDs(t, "MatchingIDsAfter by a label", []string{"l1", "l2"},
		func(l indexed.Lookup) ([]string, error) {
			return l.MatchingIDsAfter(ctx, "jobs", label("example%2Ecom/team"), "", 5)
		}, wire, local)
	if ids, err := wirelookup.NewV5(db).MatchingIDsAfter(ctx, "jobs", label("example%2Ecom/team"), "", 5); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("MatchingIDsAfter by a label from a version 5 store = %v, %v; want errors.ErrUnsupported", ids, err)
	}
	for i := 1; i < ferretembed.MaxOnDemandIndexes; i++ {
		if _, err := wire.MatchingIDsAfter(ctx, "jobs", label(fmt.Sprint("k", i)), "", 5); err != nil {
			t.Fatal(err)
		}
	}
	for i, l := range []indexed.Lookup{wire, local} {
		if ids, err := l.MatchingIDsAfter(ctx, "jobs", label("past"), "", 5); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("MatchingIDsAfter by a label past the limit (lookup %d) = %v, %v; want errors.ErrUnsupported", i, ids, err)
		}
	}

	direct := mongotest.Client(t, srv.InternalURI()).Database("rm")
	if l, err := wirelookup.Probe(ctx, direct); err != nil || l != nil {
		t.Errorf("probe of FerretDB without the proxy = %v, %v; want no Lookup, no error", l, err)
	}
}

// sameIDs checks that every Lookup returns want (in any order).
func sameIDs(t *testing.T, name string, want []string, call func(indexed.Lookup) ([]string, error), ls ...indexed.Lookup) {
	t.Helper()
	for i, l := range ls {
		ids, err := call(l)
		if err != nil {
			t.Fatalf("%s (lookup %d): %v", name, i, err)
		}
		slices.Sort(ids)
		if !slices.Equal(ids, want) {
			t.Errorf("%s (lookup %d) = %v, want %v", name, i, ids, want)
		}
	}
}
