package outbox

import (
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// jobLike is a document of the size and shape of a job as the services
// store it: nested documents, an array of them, an outbox entry carried.
func jobLike() bson.D {
	inst := bson.A{}
	for i := range 11 {
		inst = append(inst, bson.D{{Key: "role", Value: "worker"}, {Key: "index", Value: i}, {Key: "status", Value: "running"},
			{Key: "started_at", Value: time.Unix(1, 0).UTC()}})
	}
	return bson.D{{Key: "_id", Value: "01JDEMO"}, {Key: VersionField, Value: int64(4)}, {Key: "name", Value: "sim"},
		{Key: "application", Value: bson.D{{Key: "name", Value: "sim"}, {Key: "version", Value: "1"}}},
		{Key: "labels", Value: bson.D{{Key: "campaign", Value: "c1"}}},
		{Key: Field, Value: bson.A{bson.D{{Key: "id", Value: "old"}}}}, {Key: DeletedField, Value: true},
		{Key: "instances_inline", Value: inst}, {Key: "status", Value: "running"}}
}

// TestWithEntries: the document keeps its fields in their order, loses the
// _outbox and _deleted it had, and carries the new entries last (none:
// no _outbox at all).
func TestWithEntries(t *testing.T) {
	entries := []Entry{{ID: "e1", Type: "rm.job.running", Data: strings.Repeat("x", 40), Time: time.Unix(2, 0).UTC()}}
	for _, tc := range []struct {
		name    string
		entries []Entry
		want    []string
	}{
		{"entries", entries, []string{"_id", VersionField, "name", "application", "labels", "instances_inline", "status", Field}},
		{"none", nil, []string{"_id", VersionField, "name", "application", "labels", "instances_inline", "status"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := withEntries(jobLike(), tc.entries)
			if err != nil {
				t.Fatal(err)
			}
			if err := raw.Validate(); err != nil {
				t.Fatal(err)
			}
			var got bson.D
			if err := bson.Unmarshal(raw, &got); err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, e := range got {
				keys = append(keys, e.Key)
			}
			if strings.Join(keys, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("keys %v, want %v", keys, tc.want)
			}
			var env Envelope
			if err := bson.Unmarshal(raw, &env); err != nil {
				t.Fatal(err)
			}
			if env.Deleted || len(env.Outbox) != len(tc.entries) || (len(tc.entries) > 0 && env.Outbox[0] != tc.entries[0]) {
				t.Fatalf("envelope %+v, want the entries %+v and not deleted", env, tc.entries)
			}
			src, err := bson.Marshal(jobLike())
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range tc.want {
				if k != Field && !bson.Raw(src).Lookup(k).Equal(raw.Lookup(k)) {
					t.Errorf("%s: %v, want %v as marshalled", k, raw.Lookup(k), bson.Raw(src).Lookup(k))
				}
			}
		})
	}
}

// BenchmarkWithEntries measures a job write's document as it is sent to the
// store (before 1179b99 that took a bson.Marshal of the bson.D it returned).
func BenchmarkWithEntries(b *testing.B) {
	doc := jobLike()
	entries := []Entry{{ID: "e1", Type: "rm.job.running", Data: strings.Repeat("x", 900), Time: time.Unix(2, 0).UTC()}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := withEntries(doc, entries); err != nil {
			b.Fatal(err)
		}
	}
}
