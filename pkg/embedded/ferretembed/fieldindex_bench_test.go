package ferretembed_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
	"github.com/avxrm/rm/pkg/embedded/mongotest"
)

// indexSets are the keys of the indexes the services' reads make on the
// jobs collection (services/scheduler term.go and pending.go, the
// launcher, the API's usage, pkg/events/jobdoc indexes.go): "full" as they
// were made until 2026-11-30, "partial" as they were made from then until
// 2026-12-07 (partial, and the queue's one gone), "ended" as they are made
// now (the API's lists of an ended status add the ended jobs' status and
// _id, MatchingIDsAfter's). Keys ending in finished_at are LatestIDs'; the
// lags' (queue_id, status, finished_at) is left out of every set.
var indexSets = map[string][][]ferretembed.FieldCond{
	"full": {
		{{Path: "status"}}, {{Path: "cleanup_requested"}, {Path: "cleaned_at"}}, {{Path: "post_controller.status"}},
		{{Path: "queue_id"}, {Path: "status"}}, {{Path: "array_id"}, {Path: "status"}},
		{{Path: "queue_id"}, {Path: "application.id"}, {Path: "status"}, {Path: "finished_at"}},
		{{Path: "queue_id"}, {Path: "application.name"}, {Path: "application.version"}, {Path: "status"}, {Path: "finished_at"}},
	},
	"partial": partialIndexes,
	"ended":   append(slices.Clip(partialIndexes), []ferretembed.FieldCond{{Path: "status", Partial: endedStatuses}, {Path: "_id"}}),
}

var partialIndexes = [][]ferretembed.FieldCond{
	{{Path: "status", Partial: activeStatuses}},
	{{Path: "cleanup_requested", Partial: []any{true}}, {Path: "cleaned_at"}},
	{{Path: "post_controller.status", Partial: activeStatuses[1:]}},
	{{Path: "array_id", Sparse: true}, {Path: "status"}},
	{{Path: "queue_id"}, {Path: "application.id"}, {Path: "status", Partial: ranStatuses}, {Path: "finished_at"}},
	{{Path: "queue_id"}, {Path: "application.name"}, {Path: "application.version"}, {Path: "status", Partial: ranStatuses}, {Path: "finished_at"}},
}

var (
	activeStatuses = []any{"submitted", "pending", "admitted", "running"}
	ranStatuses    = []any{"succeeded", "failed"}
	endedStatuses  = []any{"succeeded", "failed", "cancelled"}
)

// indexSetNames are indexSets' keys with "none" first, in the order run.
var indexSetNames = []string{"none", "full", "partial", "ended"}

// makeIndexes makes the indexes of set on db.coll as the services' reads
// make them.
func makeIndexes(ctx context.Context, b *testing.B, srv *ferretembed.Server, db, coll string, set [][]ferretembed.FieldCond) {
	b.Helper()
	for _, key := range set {
		where := make([]ferretembed.FieldCond, len(key))
		for i, c := range key {
			c.In = []any{"x"}
			if len(c.Partial) > 0 {
				c.In = c.Partial[:1]
			}
			where[i] = c
		}
		var err error
		switch last := len(key) - 1; key[last].Path {
		case "finished_at":
			_, err = srv.LatestIDs(ctx, db, coll, where[:last], key[last].Path, 5)
		case "_id":
			_, err = srv.MatchingIDsAfter(ctx, db, coll, where[:last], "", 5)
		default:
			_, err = srv.MatchingIDs(ctx, db, coll, where, nil)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpdateWithFieldIndexes measures one updateOne by _id of an
// active job-like document, which changes its status, without MatchingIDs'
// expression indexes, with the full ones the services' reads made until
// 2026-11-30, and with the partial ones they made then and make now
// (BenchmarkEndedWritesWithFieldIndexes: the writes of the ended jobs,
// which the ended jobs' index of now is for): SQLite updates an
// index on each write of a document it holds, so the difference is what
// they cost the write path (ns/op, and the write lock held per write,
// held-µs/write).
//
//	go test -run '^$' -bench UpdateWithFieldIndexes -benchtime 1000x ./ferretembed/
func BenchmarkUpdateWithFieldIndexes(b *testing.B) {
	const docs = 2_000
	ctx := context.Background()
	db, srv := seedIndexSets(ctx, b, indexSetNames, docs)
	for _, idx := range indexSetNames {
		b.Run("indexes="+idx, func(b *testing.B) {
			timeUpdates(ctx, b, srv, db.Collection(idx), func(i int, rnd *rand.Rand) (string, bson.D) {
				return docID(rnd.IntN(docs)), bson.D{{Key: "status", Value: []string{"pending", "running"}[i%2]}, {Key: "n", Value: i}}
			})
		})
	}
}

// seedJobs inserts n documents shaped like the services' jobs.
func seedJobs(ctx context.Context, b *testing.B, coll *mongo.Collection, n int) {
	b.Helper()
	payload := strings.Repeat("x", 1_000)
	docs := make([]any, 0, n)
	for i := range n {
		docs = append(docs, bson.D{
			{Key: "_id", Value: docID(i)}, {Key: "status", Value: "pending"},
			{Key: "queue_id", Value: fmt.Sprintf("q%d", i%10)},
			{Key: "application", Value: bson.D{{Key: "id", Value: "app"}, {Key: "name", Value: "app"}, {Key: "version", Value: "1"}}},
			{Key: "post_controller", Value: bson.D{{Key: "status", Value: "none"}}},
			{Key: "n", Value: 0}, {Key: "payload", Value: payload},
		})
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		b.Fatalf("seed %s: %v", coll.Name(), err)
	}
}

// BenchmarkSQLiteUpdateWithFieldIndexes is the same write as
// BenchmarkUpdateWithFieldIndexes made in SQLite alone (an UPDATE of one
// row's sjson by its _id index, in a table of the store's file made for
// the benchmark), so FerretDB's and the proxy's share does not hide the
// indexes' one.
func BenchmarkSQLiteUpdateWithFieldIndexes(b *testing.B) {
	const docs = 2_000
	ctx := context.Background()
	sdb := seedMicroTables(ctx, b, indexSetNames, docs)
	id := ferretembed.FieldExpr("_id")
	for _, idx := range indexSetNames {
		b.Run("indexes="+idx, func(b *testing.B) {
			q := fmt.Sprintf(`UPDATE micro_%s SET _ferretdb_sjson = json_set(_ferretdb_sjson, '$.status', ?, '$.n', ?) WHERE %s = ?`, idx, id)
			rnd := rand.New(rand.NewPCG(1, 2))
			// The WAL's frames (pages) per write, a count the load does not
			// change: the WAL is emptied first and not checkpointed meanwhile.
			for _, q := range []string{"PRAGMA wal_autocheckpoint = 0", "PRAGMA wal_checkpoint(TRUNCATE)"} {
				if _, err := sdb.ExecContext(ctx, q); err != nil {
					b.Fatalf("%s: %v", q, err)
				}
			}
			b.ResetTimer()
			for i := range b.N {
				if _, err := sdb.ExecContext(ctx, q, []string{"pending", "running"}[i%2], i, docID(rnd.IntN(docs))); err != nil {
					b.Fatal(err)
				}
			}
			reportWALFrames(ctx, b, sdb)
		})
	}
}

// makeMicroTables makes a copy of table for each set of sets, micro_<set>,
// with a unique index of its _id and the indexes of the set.
func makeMicroTables(ctx context.Context, b *testing.B, sdb *sql.DB, table string, sets []string) {
	b.Helper()
	id := ferretembed.FieldExpr("_id")
	for _, idx := range sets {
		t := "micro_" + idx
		stmts := []string{
			fmt.Sprintf(`CREATE TABLE %s AS SELECT * FROM "%s"`, t, table),
			fmt.Sprintf(`CREATE UNIQUE INDEX %s_id ON %s (%s)`, t, t, id),
		}
		for i, k := range indexSets[idx] {
			var exprs []string
			for _, c := range k {
				exprs = append(exprs, ferretembed.FieldExpr(c.Path))
			}
			partial, err := ferretembed.PartialSQL(k)
			if err != nil {
				b.Fatal(err)
			}
			if partial != "" {
				partial = " WHERE " + partial
			}
			stmts = append(stmts, fmt.Sprintf(`CREATE INDEX %s_%d ON %s (%s)%s`, t, i, t, strings.Join(exprs, ", "), partial))
		}
		for _, q := range stmts {
			if _, err := sdb.ExecContext(ctx, q); err != nil {
				b.Fatalf("%s: %v", q, err)
			}
		}
	}
}

// openTable returns the SQLite table of db.coll and a connection to its
// file of the test's own, closed when the test ends.
func openTable(tb testing.TB, srv *ferretembed.Server, db, coll string) (string, *sql.DB) {
	tb.Helper()
	table, err := srv.TableName(context.Background(), db, coll)
	if err != nil {
		tb.Fatal(err)
	}
	sdb, err := srv.OpenSQLite(db)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = sdb.Close() })
	return table, sdb
}

// endedSetNames are the index sets of BenchmarkEndedWritesWithFieldIndexes:
// without the ended jobs' index of status and _id, and with it.
var endedSetNames = []string{"none", "partial", "ended"}

// endedWrites are the writes of a job as it ends and after:
//
//   - final: a running job's final status (succeeded, with its finish
//     time), which puts it into the ended jobs' indexes (and takes it out
//     of the active one); each document once, then back to running
//     (the same index writes), and so on.
//   - ended: a write of a job that has ended which leaves its status
//     alone (its cleanup's, the outbox's mark of its events sent).
//
// Each gives the filter's _id and the $set of write i of docs documents;
// prepare is the status every document has before the first.
var endedWrites = []struct {
	name, prepare string
	write         func(i, docs int, rnd *rand.Rand) (id string, set bson.D)
}{
	{"final", "running", func(i, docs int, _ *rand.Rand) (string, bson.D) {
		status := []string{"succeeded", "running"}[(i/docs)%2]
		return docID(i % docs), bson.D{{Key: "status", Value: status}, {Key: "finished_at", Value: float64(i)}, {Key: "n", Value: i}}
	}},
	{"ended", "succeeded", func(i, docs int, rnd *rand.Rand) (string, bson.D) {
		return docID(rnd.IntN(docs)), bson.D{{Key: "n", Value: i}}
	}},
}

// BenchmarkEndedWritesWithFieldIndexes measures the writes of a job as it
// ends and after (endedWrites) through FerretDB, without field indexes,
// with the partial ones of 2026-11-30 to 2026-12-07 and with those of now,
// which add the ended jobs' status and _id (for the API's lists of an
// ended status): the new index is written when a job ends, and by the
// writes of an ended job only if SQLite rewrites index entries whose key
// did not change. held-µs/write is the write lock held per write.
//
//	go test -run '^$' -bench EndedWritesWithFieldIndexes -benchtime 1000x ./ferretembed/
func BenchmarkEndedWritesWithFieldIndexes(b *testing.B) {
	const docs = 2_000
	ctx := context.Background()
	db, srv := seedIndexSets(ctx, b, endedSetNames, docs)
	for _, w := range endedWrites {
		for _, idx := range endedSetNames {
			b.Run("write="+w.name+"/indexes="+idx, func(b *testing.B) {
				coll := db.Collection(idx)
				if _, err := coll.UpdateMany(ctx, bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: w.prepare}}}}); err != nil {
					b.Fatal(err)
				}
				timeUpdates(ctx, b, srv, coll, func(i int, rnd *rand.Rand) (string, bson.D) { return w.write(i, docs, rnd) })
			})
		}
	}
}

// BenchmarkSQLiteEndedWritesWithFieldIndexes is
// BenchmarkEndedWritesWithFieldIndexes in SQLite alone, as
// BenchmarkSQLiteUpdateWithFieldIndexes is BenchmarkUpdateWithFieldIndexes,
// with the WAL frames (pages) each write adds: a count the load does not
// change.
func BenchmarkSQLiteEndedWritesWithFieldIndexes(b *testing.B) {
	const docs = 2_000
	ctx := context.Background()
	sdb := seedMicroTables(ctx, b, endedSetNames, docs)
	id := ferretembed.FieldExpr("_id")
	for _, w := range endedWrites {
		for _, idx := range endedSetNames {
			b.Run("write="+w.name+"/indexes="+idx, func(b *testing.B) {
				t := "micro_" + idx
				for _, q := range []string{
					fmt.Sprintf(`UPDATE %s SET _ferretdb_sjson = json_set(_ferretdb_sjson, '$.status', '%s')`, t, w.prepare),
					"PRAGMA wal_autocheckpoint = 0", "PRAGMA wal_checkpoint(TRUNCATE)",
				} {
					if _, err := sdb.ExecContext(ctx, q); err != nil {
						b.Fatalf("%s: %v", q, err)
					}
				}
				rnd := rand.New(rand.NewPCG(1, 2))
				b.ResetTimer()
				for i := range b.N {
					doc, set := w.write(i, docs, rnd)
					q, args := "UPDATE "+t+" SET _ferretdb_sjson = json_set(_ferretdb_sjson", []any{}
					for _, e := range set {
						q += ", '$." + e.Key + "', ?"
						args = append(args, e.Value)
					}
					if _, err := sdb.ExecContext(ctx, q+") WHERE "+id+" = ?", append(args, doc)...); err != nil {
						b.Fatal(err)
					}
				}
				reportWALFrames(ctx, b, sdb)
			})
		}
	}
}

// seedIndexSets starts a store and fills a collection of docs jobs for each
// of names, with the _id index and the field indexes of indexSets[name].
func seedIndexSets(ctx context.Context, b *testing.B, names []string, docs int) (*mongo.Database, *ferretembed.Server) {
	uri, srv := mongotest.Start(b)
	db := mongotest.Client(b, uri).Database("bench")
	for _, idx := range names {
		seedJobs(ctx, b, db.Collection(idx), docs)
		if err := srv.EnsureIDIndex(ctx, "bench", idx); err != nil {
			b.Fatal(err)
		}
		makeIndexes(ctx, b, srv, "bench", idx, indexSets[idx])
	}
	return db, srv
}

// seedMicroTables starts a store, fills its jobs collection with docs jobs
// and copies them into a table of SQLite alone for each of names, with the
// indexes of indexSets[name] (makeMicroTables).
func seedMicroTables(ctx context.Context, b *testing.B, names []string, docs int) *sql.DB {
	uri, srv := mongotest.Start(b)
	db := mongotest.Client(b, uri).Database("bench")
	seedJobs(ctx, b, db.Collection("jobs"), docs)
	table, sdb := openTable(b, srv, "bench", "jobs")
	makeMicroTables(ctx, b, sdb, table, names)
	return sdb
}

// reportWALFrames stops the timer and reports the WAL's frames (pages) per
// write: the WAL was emptied before the writes and not checkpointed
// meanwhile, so the count is the writes' own, whatever the load.
func reportWALFrames(ctx context.Context, b *testing.B, sdb *sql.DB) {
	b.StopTimer()
	var busy, frames, done int
	if err := sdb.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &done); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(frames)/float64(b.N), "wal-frames/write")
}

// timeUpdates times b.N updates of coll, the i-th setting the fields
// update returns on the document it names, and reports the write lock held
// per write.
func timeUpdates(ctx context.Context, b *testing.B, srv *ferretembed.Server, coll *mongo.Collection, update func(i int, rnd *rand.Rand) (string, bson.D)) {
	rnd := rand.New(rand.NewPCG(1, 2))
	before := srv.WriteStats()
	b.ResetTimer()
	for i := range b.N {
		id, set := update(i, rnd)
		res, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: set}})
		if err != nil || res.MatchedCount != 1 {
			b.Fatalf("UpdateOne(%s) = %+v, %v", id, res, err)
		}
	}
	b.StopTimer()
	if after := srv.WriteStats(); after.Commands > before.Commands {
		b.ReportMetric(float64(after.HeldPerWrite(before).Nanoseconds())/1000, "held-µs/write")
	}
}
