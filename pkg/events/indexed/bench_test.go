package indexed_test

import (
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/avxrm/rm/pkg/events/indexed"
)

// BenchmarkReadActive reads the pending jobs among finished ones on the
// embedded store, through a Lookup (by index, then each by _id) and with the
// filter sent to FerretDB as it is (which decodes every document): what a
// resync or a queue's usage costs with a large backlog and a long history.
//
//	go test -run '^$' -bench BenchmarkReadActive -benchtime 3x ./indexed/
func BenchmarkReadActive(b *testing.B) {
	for _, size := range []struct{ pending, finished int }{{100, 0}, {100, 20000}, {5000, 0}, {5000, 20000}} {
		b.Run(fmt.Sprintf("pending=%d/finished=%d", size.pending, size.finished), func(b *testing.B) {
			ctx, coll, srv := startJobs(b)
			var docs []any
			for i := range size.pending + size.finished {
				status := "succeeded"
				if i < size.pending {
					status = "pending"
				}
				docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("j%06d", i)}, {Key: "status", Value: status},
					{Key: "queue_id", Value: "q"}, {Key: "worker_instances", Value: 4}, {Key: "submitted_at", Value: time.Now()},
					{Key: "name", Value: "a job with a name of ordinary length"}})
				if len(docs) == 1000 {
					if _, err := coll.InsertMany(ctx, docs); err != nil {
						b.Fatal(err)
					}
					docs = docs[:0]
				}
			}
			if len(docs) > 0 {
				if _, err := coll.InsertMany(ctx, docs); err != nil {
					b.Fatal(err)
				}
			}
			f := indexed.Filter{Any: []indexed.Clause{{{Path: "status", In: []any{"submitted", "pending"}}}}}
			for _, mode := range []string{"lookup", "store"} {
				b.Run(mode, func(b *testing.B) {
					r := &indexed.Reader{Coll: coll}
					if mode == "lookup" {
						r.Lookup = lookup(srv)
					}
					for b.Loop() {
						got, err := r.Find(ctx, f)
						if err != nil || len(got) != size.pending {
							b.Fatalf("found %d, want %d: %v", len(got), size.pending, err)
						}
					}
				})
			}
		})
	}
}
