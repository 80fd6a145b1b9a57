package ferretembed_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
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

// BenchmarkFastPathLookup measures one version-conditioned update of a
// job-sized document by _id, the services' usual write, with the fast path
// reading the conditions' fields in SQL (fastpath_sql.go) or through a find.
//
//	go test -run '^$' -bench BenchmarkFastPathLookup -benchtime 2000x ./ferretembed/
func BenchmarkFastPathLookup(b *testing.B) {
	for _, lookup := range []string{"find", "sql"} {
		b.Run("lookup="+lookup, func(b *testing.B) {
			ctx := context.Background()
			uri, srv := mongotest.Start(b)
			srv.SetSQLLookups(lookup == "sql")
			coll := mongotest.Client(b, uri).Database("bench").Collection("jobs")
			if err := srv.EnsureIDIndex(ctx, "bench", "jobs"); err != nil {
				b.Fatal(err)
			}
			// About the shape of a stored job: nested documents and arrays.
			conds := bson.A{}
			for i := range 4 {
				conds = append(conds, bson.D{{Key: "type", Value: fmt.Sprintf("C%d", i)}, {Key: "status", Value: "True"},
					{Key: "reason", Value: "Because"}, {Key: "message", Value: strings.Repeat("m", 60)}})
			}
			doc := bson.D{{Key: "_id", Value: "job-1"}, {Key: "version", Value: int64(1)}, {Key: "status", Value: "admitted"},
				{Key: "application", Value: bson.D{{Key: "name", Value: "sim"}, {Key: "version", Value: "1"}, {Key: "image", Value: "registry.example/sim:1"}}},
				{Key: "runtime", Value: bson.D{{Key: "image", Value: "registry.example/sim:1"}, {Key: "args", Value: bson.A{"-a", "-b", "-c"}}}},
				{Key: "conditions", Value: conds}, {Key: "payload", Value: strings.Repeat("x", 1500)}}
			if _, err := coll.InsertOne(ctx, doc); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := range b.N {
				res, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "job-1"}, {Key: "version", Value: int64(i + 1)}},
					bson.D{{Key: "$set", Value: bson.D{{Key: "version", Value: int64(i + 2)}}}})
				if err != nil || res.MatchedCount != 1 {
					b.Fatalf("update %d: %+v, %v", i, res, err)
				}
			}
			b.StopTimer()
			answered, fellBack := srv.FastPathSQLLookups()
			if lookup == "sql" && (answered < int64(b.N) || fellBack != 0) {
				b.Errorf("SQL answered %d and fell back %d of %d lookups", answered, fellBack, b.N)
			}
			if lookup == "find" && answered != 0 {
				b.Errorf("SQL answered %d lookups with them off", answered)
			}
		})
	}
}

// BenchmarkDirect measures the services' three commands on a job's shape
// (jobLike) through FerretDB and answered by the proxy in SQL
// (fastpath_direct.go, finddirect.go): a version-conditioned replacement by
// _id, an insert, and a find by _id. It reports the proxy's write lock held
// per write.
//
//	go test -run '^$' -bench BenchmarkDirect -benchtime 2000x ./ferretembed/
func BenchmarkDirect(b *testing.B) {
	for _, op := range []string{"replace", "insert", "find"} {
		for _, direct := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/direct=%v", op, direct), func(b *testing.B) {
				ctx := context.Background()
				coll, srv := storeWithJob(b)
				srv.SetDirect(direct)
				doc := jobLike(when)
				w0 := srv.WriteStats()
				d0, _, _ := srv.DirectWriteStats()
				f0, _ := srv.DirectFindStats()
				b.ResetTimer()
				for i := range b.N {
					var err error
					switch op {
					case "replace":
						doc[0].Value = int64(i + 3)
						var res *mongo.UpdateResult
						res, err = coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "job"}, {Key: "version", Value: int64(i + 2)}}, doc)
						if err == nil && res.ModifiedCount != 1 {
							err = fmt.Errorf("%+v", res)
						}
					case "insert":
						_, err = coll.InsertOne(ctx, append(bson.D{{Key: "_id", Value: fmt.Sprintf("job-%d", i)}}, doc...))
					case "find":
						err = coll.FindOne(ctx, bson.D{{Key: "_id", Value: "job"}}).Err()
					}
					if err != nil {
						b.Fatalf("%s %d: %v", op, i, err)
					}
				}
				b.StopTimer()
				w1 := srv.WriteStats()
				d1, _, _ := srv.DirectWriteStats()
				f1, _ := srv.DirectFindStats()
				reportLockPerWrite(b, w0, w1)
				if got := d1 - d0 + f1 - f0; direct && got != int64(b.N) || !direct && got != 0 {
					b.Errorf("the proxy answered %d of %d commands itself (direct: %v)", got, b.N, direct)
				}
			})
		}
	}
}

// BenchmarkGroupCommit: clients replacing job-shaped documents at once
// (each its own document, version-conditioned, as the services write
// jobs), with group commit on and off. It reports the writes per commit
// and the write lock held per write; ns/op is the store's time per write
// with that many clients.
//
//	go test -run '^$' -bench BenchmarkGroupCommit -benchtime 4000x ./ferretembed/
func BenchmarkGroupCommit(b *testing.B) {
	for _, clients := range []int{1, 4, 8} {
		for _, group := range []bool{false, true} {
			b.Run(fmt.Sprintf("clients=%d/group=%v", clients, group), func(b *testing.B) {
				ctx := context.Background()
				coll, srv := storeWithJob(b)
				srv.SetGroupCommit(group)
				doc := jobLike(when)
				ids := make([]string, clients)
				for c := range ids {
					ids[c] = fmt.Sprintf("job-c%d", c)
					if _, err := coll.InsertOne(ctx, append(bson.D{{Key: "_id", Value: ids[c]}}, doc...)); err != nil {
						b.Fatal(err)
					}
				}
				s0 := srv.WriteStats()
				b.ResetTimer()
				var wg sync.WaitGroup
				errs := make(chan error, clients)
				for c := range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						d := slices.Clone(doc)
						for i := c; i < b.N; i += clients {
							v := int64(i/clients + 2)
							d[0].Value = v + 1
							res, err := coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: ids[c]}, {Key: "version", Value: v}}, d)
							if err == nil && res.ModifiedCount != 1 {
								err = fmt.Errorf("replace %s v%d: %+v", ids[c], v, res)
							}
							if err != nil {
								errs <- err
								return
							}
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
				s1 := srv.WriteStats()
				if c := s1.DirectCommits - s0.DirectCommits; c > 0 {
					b.ReportMetric(float64(s1.DirectWrites-s0.DirectWrites)/float64(c), "writes/commit")
				}
				reportLockPerWrite(b, s0, s1)
			})
		}
	}
}

// reportLockPerWrite reports the write lock held per write command between
// two readings, if any command went through.
func reportLockPerWrite(b *testing.B, w0, w1 ferretembed.WriteStats) {
	if w1.Commands > w0.Commands {
		b.ReportMetric(float64(w1.HeldPerWrite(w0).Microseconds())/1000, "ms-lock/write")
	}
}

// storeWithJob starts a store holding one job-shaped document, "job" in
// bench.jobs, indexed by _id as the services' collections are.
func storeWithJob(b *testing.B) (*mongo.Collection, *ferretembed.Server) {
	b.Helper()
	ctx := context.Background()
	uri, srv := mongotest.Start(b)
	coll := mongotest.Client(b, uri).Database("bench").Collection("jobs")
	if _, err := coll.InsertOne(ctx, append(bson.D{{Key: "_id", Value: "job"}}, jobLike(when)...)); err != nil {
		b.Fatal(err)
	}
	if err := srv.EnsureIDIndex(ctx, "bench", "jobs"); err != nil {
		b.Fatal(err)
	}
	return coll, srv
}
