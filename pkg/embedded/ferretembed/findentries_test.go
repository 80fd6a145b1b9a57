package ferretembed_test

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// The outbox sweep's filter (findentries.go), answered from SQLite: FerretDB
// cannot answer it, so the expected matches are written out, and each
// document of the reply must be byte for byte the one FerretDB gives for
// the same projection (read by a filter it can answer).
func TestFindDirectOutboxSweep(t *testing.T) {
	r := newReplaceRig(t)
	ctx := context.Background()
	coll := r.ferret.Database().Collection("swept")
	bound := time.Date(2026, 12, 2, 13, 0, 0, 0, time.UTC)
	entry := func(kv ...any) bson.D {
		d := bson.D{{Key: "id", Value: "ev"}, {Key: "type", Value: "rm.thing.created"}}
		for i := 0; i < len(kv); i += 2 {
			d = append(d, bson.E{Key: kv[i].(string), Value: kv[i+1]})
		}
		return d
	}
	docs := []struct {
		id    string
		extra bson.D
		match bool
	}{
		{"none", nil, false},
		{"empty", bson.D{{Key: "_outbox", Value: bson.A{}}}, false},
		{"no writer", bson.D{{Key: "_outbox", Value: bson.A{entry()}}}, true},
		{"writer null", bson.D{{Key: "_outbox", Value: bson.A{entry("by", nil)}}}, false},
		{"a before", bson.D{{Key: "_outbox", Value: bson.A{entry("by", "a", "at", bound.Add(-time.Millisecond))}}}, false},
		{"a at", bson.D{{Key: "_outbox", Value: bson.A{entry("by", "a", "at", bound)}}}, true},
		{"a second", bson.D{{Key: "_outbox", Value: bson.A{entry("by", "c", "at", bound), entry("by", "a", "at", bound.Add(5*time.Second))}}}, true},
		{"self", bson.D{{Key: "_outbox", Value: bson.A{entry("by", "self", "at", bound.Add(-time.Hour))}}}, true},
		{"unknown", bson.D{{Key: "_outbox", Value: bson.A{entry("by", "c", "at", bound.Add(time.Hour))}}}, false},
		{"a, at a string", bson.D{{Key: "_outbox", Value: bson.A{entry("by", "a", "at", "2099-01-01")}}}, false},
		{"a, at a number", bson.D{{Key: "_outbox", Value: bson.A{entry("by", "a", "at", bound.Add(time.Hour).UnixMilli())}}}, false},
		{"writer a number", bson.D{{Key: "_outbox", Value: bson.A{entry("by", int32(5))}}}, false},
		{"a scalar entry", bson.D{{Key: "_outbox", Value: bson.A{"x"}}}, false},
		{"tombstone", bson.D{{Key: "_deleted", Value: true}, {Key: "_outbox", Value: bson.A{entry("by", "c", "at", bound)}}}, true},
		{"tombstone, empty", bson.D{{Key: "_deleted", Value: true}, {Key: "_outbox", Value: bson.A{}}}, false},
		{"tombstone, a string", bson.D{{Key: "_deleted", Value: "true"}, {Key: "_outbox", Value: bson.A{entry("by", "c")}}}, false},
		{"tombstone, a document", bson.D{{Key: "_deleted", Value: true}, {Key: "_outbox", Value: bson.D{{Key: "0", Value: 1}}}}, true},
		{"a document", bson.D{{Key: "_outbox", Value: bson.D{{Key: "0", Value: entry("by", "a", "at", bound)}}}}, false},
		{"a document without 0", bson.D{{Key: "_deleted", Value: true}, {Key: "_outbox", Value: bson.D{{Key: "1", Value: 1}}}}, false},
	}
	var want []string
	for i, d := range docs {
		doc := append(bson.D{{Key: "_id", Value: d.id}, {Key: "version", Value: int64(i)}, {Key: "name", Value: "x"}}, d.extra...)
		if _, err := coll.InsertOne(ctx, doc); err != nil {
			t.Fatal(err)
		}
		if d.match {
			want = append(want, d.id)
		}
	}
	if err := r.srv.EnsureIDIndex(ctx, "replace", "swept"); err != nil {
		t.Fatal(err)
	}
	elem := func(cond bson.D) bson.D {
		return bson.D{{Key: "_outbox", Value: bson.D{{Key: "$elemMatch", Value: cond}}}}
	}
	filter := bson.D{{Key: "_outbox.0", Value: bson.D{{Key: "$exists", Value: true}}}, {Key: "$or", Value: bson.A{
		bson.D{{Key: "_deleted", Value: true}},
		elem(bson.D{{Key: "by", Value: bson.D{{Key: "$exists", Value: false}}}}),
		elem(bson.D{{Key: "by", Value: "self"}}),
		elem(bson.D{{Key: "by", Value: "a"}, {Key: "at", Value: bson.D{{Key: "$gte", Value: bound}}}}),
		elem(bson.D{{Key: "by", Value: "b"}, {Key: "at", Value: bson.D{{Key: "$gte", Value: bound}}}}),
	}}}
	projection := bson.D{{Key: "_id", Value: 1}, {Key: "version", Value: 1}, {Key: "_deleted", Value: 1}, {Key: "_outbox", Value: 1}}
	find := func(filter bson.D, batch int32) (bson.Raw, error) {
		return coll.Database().RunCommand(ctx, bson.D{{Key: "find", Value: "swept"}, {Key: "filter", Value: filter},
			{Key: "projection", Value: projection}, {Key: "batchSize", Value: batch}}).Raw()
	}
	batch := func(reply bson.Raw) []bson.Raw {
		vals, err := reply.Lookup("cursor", "firstBatch").Array().Values()
		if err != nil {
			t.Fatal(err)
		}
		out := make([]bson.Raw, len(vals))
		for i, v := range vals {
			out[i] = v.Document()
		}
		return out
	}

	r.srv.SetDirect(true)
	defer r.srv.SetDirect(false)
	a0, _ := r.srv.DirectFindStats()
	reply, err := find(filter, 1000)
	if err != nil {
		t.Fatalf("the sweep's find: %v", err)
	}
	if a1, _ := r.srv.DirectFindStats(); a1-a0 != 1 {
		t.Errorf("SQLite answered %d finds, want 1", a1-a0)
	}
	got := batch(reply)
	var ids []string
	for _, d := range got {
		ids = append(ids, d.Lookup("_id").StringValue())
	}
	if !slices.Equal(ids, want) {
		t.Fatalf("matched %q, want %q", ids, want)
	}
	// FerretDB's documents, by a filter it answers itself.
	all, err := find(bson.D{{Key: "version", Value: bson.D{{Key: "$gte", Value: 0}}}}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]bson.Raw{}
	for _, d := range batch(all) {
		byID[d.Lookup("_id").StringValue()] = d
	}
	for _, d := range got {
		if f := byID[d.Lookup("_id").StringValue()]; !bytes.Equal(d, f) {
			t.Errorf("document differs:\nFerretDB %s\nSQLite   %s", f, d)
		}
	}

	// More matches than a batch: FerretDB's answer (it refuses $elemMatch
	// of fields), never a batch cut short.
	if _, err := find(filter, int32(len(want))); err == nil {
		t.Errorf("a find of more matches than its batch was answered; want FerretDB's refusal")
	}
}
