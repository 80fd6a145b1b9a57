package ferretembed_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
)

// BenchmarkUpdateByID measures one updateOne by string _id through the Go
// driver, the services' conditional state transition, with and without
// EnsureIDIndex. Without the index FerretDB scans the collection, so the cost
// grows with its size; with it, 1k and 50k documents should cost about the
// same.
//
//	go test -run '^$' -bench BenchmarkUpdateByID -benchtime 200x ./ferretembed/
func BenchmarkUpdateByID(b *testing.B) {
	for _, docs := range []int{1_000, 50_000} {
		b.Run(fmt.Sprintf("docs=%d", docs), func(b *testing.B) {
			ctx := context.Background()
			uri, srv := mongotest.Start(b)
			db := mongotest.Client(b, uri).Database("bench")

			// Seeded once per size, outside every timer: this function runs
			// once because it only holds sub-benchmarks.
			for _, index := range []string{"off", "on"} {
				seed(ctx, b, db.Collection(index), docs)
			}
			if err := srv.EnsureIDIndex(ctx, "bench", "on"); err != nil {
				b.Fatal(err)
			}

			for _, index := range []string{"off", "on"} {
				b.Run("index="+index, func(b *testing.B) {
					coll := db.Collection(index)
					rnd := rand.New(rand.NewPCG(1, uint64(docs)))
					b.ResetTimer()
					for i := range b.N {
						id := docID(rnd.IntN(docs))
						res, err := coll.UpdateOne(ctx,
							bson.D{{Key: "_id", Value: id}},
							bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: i}}}})
						if err != nil || res.MatchedCount != 1 {
							b.Fatalf("UpdateOne(%s) = %+v, %v", id, res, err)
						}
					}
				})
			}
		})
	}
}

func docID(i int) string { return fmt.Sprintf("job-%08d", i) }

// seed inserts n job-like documents in insertMany batches.
func seed(ctx context.Context, b *testing.B, coll *mongo.Collection, n int) {
	b.Helper()
	const batch = 1_000
	payload := strings.Repeat("x", 200)
	for start := 0; start < n; start += batch {
		docs := make([]any, 0, batch)
		for i := start; i < min(start+batch, n); i++ {
			docs = append(docs, bson.D{
				{Key: "_id", Value: docID(i)},
				{Key: "status", Value: "pending"},
				{Key: "queue", Value: "Default"},
				{Key: "worker_instances", Value: 8},
				{Key: "n", Value: 0},
				{Key: "payload", Value: payload},
			})
		}
		if _, err := coll.InsertMany(ctx, docs); err != nil {
			b.Fatalf("seed %s: %v", coll.Name(), err)
		}
	}
}
