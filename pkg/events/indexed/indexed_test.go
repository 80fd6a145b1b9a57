package indexed_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/indexed/ferretlookup"
	"github.com/avxrm/rm/pkg/events/indexed/wirelookup"
)

// lookup is what the all-in-one gives the services: the embedded store's
// MatchingIDs on database "rm".
func lookup(srv *ferretembed.Server) indexed.Lookup { return ferretlookup.New(srv, "rm") }

// startJobs starts the embedded store with the _id index on rm.jobs, as the
// all-in-one has it.
func startJobs(t testing.TB) (context.Context, *mongo.Collection, *ferretembed.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	uri, srv := mongotest.Start(t)
	coll := mongotest.Client(t, uri).Database("rm").Collection("jobs")
	if err := srv.EnsureIDIndex(ctx, "rm", "jobs"); err != nil {
		t.Fatal(err)
	}
	return ctx, coll, srv
}

var active = indexed.Filter{
	All: []indexed.Cond{{Path: "_deleted", Missing: true}},
	Any: []indexed.Clause{
		{{Path: "status", In: []any{"pending", "running"}}},
		{{Path: "cleanup_requested", In: []any{true}}, {Path: "cleaned_at", Missing: true}},
	},
	IDs: []string{"held"},
}

// TestHotReadSkipsFinishedJobs: with 3,000 finished jobs stored, reading
// the active ones through a Lookup reads exactly the documents that match
// (counted), and the same filter sent to the store as it is finds the same.
func TestHotReadSkipsFinishedJobs(t *testing.T) {
	ctx, coll, srv := startJobs(t)
	docs := []any{
		bson.D{{Key: "_id", Value: "p"}, {Key: "status", Value: "pending"}},
		bson.D{{Key: "_id", Value: "r"}, {Key: "status", Value: "running"}},
		bson.D{{Key: "_id", Value: "c"}, {Key: "status", Value: "succeeded"}, {Key: "cleanup_requested", Value: true}},
		bson.D{{Key: "_id", Value: "held"}, {Key: "status", Value: "failed"}},
		bson.D{{Key: "_id", Value: "cleaned"}, {Key: "status", Value: "failed"}, {Key: "cleanup_requested", Value: true}, {Key: "cleaned_at", Value: time.Now()}},
		bson.D{{Key: "_id", Value: "deleted"}, {Key: "status", Value: "pending"}, {Key: "_deleted", Value: true}},
	}
	for i := range 3000 {
		docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("done-%d", i)}, {Key: "status", Value: "succeeded"}})
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	want := []string{"c", "held", "p", "r"}
	for name, r := range map[string]*indexed.Reader{
		"lookup": {Coll: coll, Lookup: lookup(srv)},
		"store":  {Coll: coll},
	} {
		got, err := indexed.FindAll[struct {
			ID string `bson:"_id"`
		}](ctx, r, active)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var ids []string
		for _, d := range got {
			ids = append(ids, d.ID)
		}
		slices.Sort(ids)
		if !slices.Equal(ids, want) {
			t.Errorf("%s: found %v, want %v", name, ids, want)
		}
		if n := r.DocsRead(); n != int64(len(want)) {
			t.Errorf("%s: read %d documents for %d matches", name, n, len(want))
		}
	}
	r := &indexed.Reader{Coll: coll, Lookup: lookup(srv)}
	ids, err := r.IDs(ctx, active)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, want) || r.DocsRead() != 0 {
		t.Errorf("IDs = %v after reading %d documents, want %v after none", ids, r.DocsRead(), want)
	}
}

// TestLatestReadsOnlyTheLatest: the last 3 finished jobs of queue q by
// finished_at, among 2,000 of q and others, read 3 documents through a
// Lookup, and the same as the filter sent to the store as it is.
func TestLatestReadsOnlyTheLatest(t *testing.T) {
	ctx, coll, srv := startJobs(t)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var docs []any
	for i := range 2000 {
		status := []string{"succeeded", "failed", "running"}[i%3]
		queue := []string{"q", "other"}[i%2]
		docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("j%04d", i)}, {Key: "queue_id", Value: queue},
			{Key: "status", Value: status}, {Key: "finished_at", Value: base.Add(time.Duration(i) * time.Minute)}})
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	where := indexed.Clause{{Path: "queue_id", In: []any{"q"}}, {Path: "status", In: []any{"succeeded", "failed"}}}
	// Even i on q; i%3 != 2 finished: 1998 (i%3=0), 1996 (1), 1994 (2, running: no), 1992 (0).
	want := []string{"j1998", "j1996", "j1992"}
	for name, r := range map[string]*indexed.Reader{"lookup": {Coll: coll, Lookup: lookup(srv)}, "store": {Coll: coll}} {
		got, err := r.Latest(ctx, where, "finished_at", 3)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var ids []string
		for _, d := range got {
			ids = append(ids, d.Lookup("_id").StringValue())
		}
		if !slices.Equal(ids, want) || r.DocsRead() != 3 {
			t.Errorf("%s: Latest = %v after reading %d documents, want %v after 3", name, ids, r.DocsRead(), want)
		}
	}
}

// TestFindChangedReadsOnlyWhatMoved: of 1,000 active jobs held at their
// stored versions, a resync-style read reads none but the 3 that moved,
// the one it did not know and the lease holder named by _id (whose version
// no index gives), in process and over the wire; without a Lookup it reads
// every match.
func TestFindChangedReadsOnlyWhatMoved(t *testing.T) {
	ctx, coll, srv := startJobs(t)
	known := map[string]int64{}
	var docs []any
	for i := range 1000 {
		id := fmt.Sprintf("p%04d", i)
		docs = append(docs, bson.D{{Key: "_id", Value: id}, {Key: "status", Value: "pending"}, {Key: "version", Value: int64(7)}})
		known[id] = 7
	}
	for i := range 2000 {
		docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("done-%d", i)}, {Key: "status", Value: "succeeded"}, {Key: "version", Value: int64(9)}})
	}
	docs = append(docs,
		bson.D{{Key: "_id", Value: "new"}, {Key: "status", Value: "running"}, {Key: "version", Value: int64(1)}},
		bson.D{{Key: "_id", Value: "held"}, {Key: "status", Value: "failed"}, {Key: "version", Value: int64(4)}})
	known["held"] = 4
	known["gone"] = 2 // the picture holds it; the store no longer does
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	moved := []string{"p0003", "p0500", "p0999"}
	for _, id := range moved {
		if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{{Key: "version", Value: int64(8)}}}}); err != nil {
			t.Fatal(err)
		}
	}
	wire, err := wirelookup.Probe(ctx, mongotest.Client(t, srv.URI()).Database("rm"))
	if err != nil || wire == nil {
		t.Fatalf("probe = %v, %v", wire, err)
	}
	wantRead := append(slices.Clone(moved), "held", "new")
	slices.Sort(wantRead)
	for name, l := range map[string]indexed.Lookup{"in process": lookup(srv), "over the wire": wire} {
		r := &indexed.Reader{Coll: coll, Lookup: l}
		got, same, err := r.FindChanged(ctx, active, "version", known)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var ids []string
		for _, d := range got {
			ids = append(ids, d.Lookup("_id").StringValue())
		}
		slices.Sort(ids)
		if !slices.Equal(ids, wantRead) || r.DocsRead() != int64(len(wantRead)) {
			t.Errorf("%s: read %v (%d documents), want %v", name, ids, r.DocsRead(), wantRead)
		}
		if len(same) != 1000-len(moved) || slices.Contains(same, "held") || slices.Contains(same, "gone") || slices.Contains(same, "p0500") {
			t.Errorf("%s: %d unchanged, want the %d pending jobs that did not move", name, len(same), 1000-len(moved))
		}
	}
	r := &indexed.Reader{Coll: coll}
	got, same, err := r.FindChanged(ctx, active, "version", known)
	if err != nil || len(got) != 1000+2 || len(same) != 0 {
		t.Errorf("without a Lookup: %d read, %d unchanged, %v; want every match read", len(got), len(same), err)
	}
}

// TestValuesReadFromTheIndex: the numeric field of every match comes from
// the index read that finds them, in process and over the wire: of 1,000
// pending jobs among 2,000 finished ones only the two matches the index
// cannot give a value of are read (one given by _id, one without the
// field, which counts 0). Without a Lookup the store gives the same.
func TestValuesReadFromTheIndex(t *testing.T) {
	ctx, coll, srv := startJobs(t)
	want := map[string]int64{"held": 4, "new": 0}
	var docs []any
	for i := range 1000 {
		id := fmt.Sprintf("p%04d", i)
		docs = append(docs, bson.D{{Key: "_id", Value: id}, {Key: "status", Value: "pending"}, {Key: "worker_instances", Value: int32(i%20 + 1)}})
		want[id] = int64(i%20 + 1)
	}
	for i := range 2000 {
		docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("done-%d", i)}, {Key: "status", Value: "succeeded"}, {Key: "worker_instances", Value: int32(3)}})
	}
	docs = append(docs,
		bson.D{{Key: "_id", Value: "new"}, {Key: "status", Value: "running"}},
		bson.D{{Key: "_id", Value: "held"}, {Key: "status", Value: "failed"}, {Key: "worker_instances", Value: int32(4)}})
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	wire, err := wirelookup.Probe(ctx, mongotest.Client(t, srv.URI()).Database("rm"))
	if err != nil || wire == nil {
		t.Fatalf("probe = %v, %v", wire, err)
	}
	for name, l := range map[string]indexed.Lookup{"in process": lookup(srv), "over the wire": wire, "without a Lookup": nil} {
		r := &indexed.Reader{Coll: coll, Lookup: l}
		got, err := r.Values(ctx, active, "worker_instances")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !maps.Equal(got, want) {
			t.Errorf("%s: %d values, want %d (new: %d, held: %d, p0019: %d)", name, len(got), len(want), got["new"], got["held"], got["p0019"])
		}
		if l != nil && r.DocsRead() != 2 {
			t.Errorf("%s: read %d documents, want the 2 the index gives no value of", name, r.DocsRead())
		}
	}
}

// TestFetchReadsManyAtOnce: the documents a Lookup finds are read 100 to a
// find ({_id: {$in: [...]}}), not one by one: 250 active jobs among 1,000
// finished ones in 3 finds.
func TestFetchReadsManyAtOnce(t *testing.T) {
	ctx, coll, srv := startJobs(t)
	var docs []any
	var want []string
	for i := range 1250 {
		status := "succeeded"
		if i%5 == 0 {
			status = "pending"
			want = append(want, fmt.Sprintf("j%04d", i))
		}
		docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("j%04d", i)}, {Key: "status", Value: status}})
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	var finds atomic.Int64
	monitor := &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		if e.CommandName == "find" {
			finds.Add(1)
		}
	}}
	client, err := mongo.Connect(options.Client().ApplyURI(srv.URI()).SetMonitor(monitor))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	r := &indexed.Reader{Coll: client.Database("rm").Collection("jobs"), Lookup: lookup(srv)}
	got, err := indexed.FindAll[struct {
		ID string `bson:"_id"`
	}](ctx, r, indexed.Filter{Any: []indexed.Clause{{{Path: "status", In: []any{"pending"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range got {
		ids = append(ids, d.ID)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, want) || finds.Load() != 3 {
		t.Errorf("found %d of %d jobs in %d finds, want all in 3", len(ids), len(want), finds.Load())
	}
}
