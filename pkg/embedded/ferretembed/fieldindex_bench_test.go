package ferretembed_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
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
// were made until 2026-11-30, "partial" as they are made now (partial, and
// the queue's one gone). Keys ending in finished_at are LatestIDs'; the
// lags' (queue_id, status, finished_at) is left out of both sets.
var indexSets = map[string][][]ferretembed.FieldCond{
	"full": {
		{{Path: "status"}}, {{Path: "cleanup_requested"}, {Path: "cleaned_at"}}, {{Path: "post_controller.status"}},
		{{Path: "queue_id"}, {Path: "status"}}, {{Path: "array_id"}, {Path: "status"}},
		{{Path: "queue_id"}, {Path: "application.id"}, {Path: "status"}, {Path: "finished_at"}},
		{{Path: "queue_id"}, {Path: "application.name"}, {Path: "application.version"}, {Path: "status"}, {Path: "finished_at"}},
	},
	"partial": {
		{{Path: "status", Partial: activeStatuses}},
		{{Path: "cleanup_requested", Partial: []any{true}}, {Path: "cleaned_at"}},
		{{Path: "post_controller.status", Partial: activeStatuses[1:]}},
		{{Path: "array_id", Sparse: true}, {Path: "status"}},
		{{Path: "queue_id"}, {Path: "application.id"}, {Path: "status", Partial: ranStatuses}, {Path: "finished_at"}},
		{{Path: "queue_id"}, {Path: "application.name"}, {Path: "application.version"}, {Path: "status", Partial: ranStatuses}, {Path: "finished_at"}},
	},
}

var (
	activeStatuses = []any{"submitted", "pending", "admitted", "running"}
	ranStatuses    = []any{"succeeded", "failed"}
)

// indexSetNames are indexSets' keys with "none" first, in the order run.
var indexSetNames = []string{"none", "full", "partial"}

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
		if last := len(key) - 1; key[last].Path == "finished_at" {
			_, err = srv.LatestIDs(ctx, db, coll, where[:last], key[last].Path, 5)
		} else {
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
// 2026-11-30, and with the partial ones they make now: SQLite updates an
// index on each write of a document it holds, so the difference is what
// they cost the write path (ns/op, and the write lock held per write,
// held-µs/write).
//
//	go test -run '^$' -bench UpdateWithFieldIndexes -benchtime 1000x ./ferretembed/
func BenchmarkUpdateWithFieldIndexes(b *testing.B) {
	const docs = 2_000
	ctx := context.Background()
	uri, srv := mongotest.Start(b)
	db := mongotest.Client(b, uri).Database("bench")
	for _, idx := range indexSetNames {
		seedJobs(ctx, b, db.Collection(idx), docs)
		if err := srv.EnsureIDIndex(ctx, "bench", idx); err != nil {
			b.Fatal(err)
		}
		makeIndexes(ctx, b, srv, "bench", idx, indexSets[idx])
	}
	for _, idx := range indexSetNames {
		b.Run("indexes="+idx, func(b *testing.B) {
			coll := db.Collection(idx)
			rnd := rand.New(rand.NewPCG(1, 2))
			before := srv.WriteStats()
			b.ResetTimer()
			for i := range b.N {
				id := docID(rnd.IntN(docs))
				res, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}},
					bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: []string{"pending", "running"}[i%2]}, {Key: "n", Value: i}}}})
				if err != nil || res.MatchedCount != 1 {
					b.Fatalf("UpdateOne(%s) = %+v, %v", id, res, err)
				}
			}
			b.StopTimer()
			after := srv.WriteStats()
			if after.Commands > before.Commands {
				b.ReportMetric(float64(after.HeldPerWrite(before).Nanoseconds())/1000, "held-µs/write")
			}
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
	uri, srv := mongotest.Start(b)
	db := mongotest.Client(b, uri).Database("bench")
	seedJobs(ctx, b, db.Collection("jobs"), docs)
	table, sdb := openTable(b, srv, "bench", "jobs")
	id := ferretembed.FieldExpr("_id")
	for _, idx := range indexSetNames {
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
			b.StopTimer()
			var busy, frames, done int
			if err := sdb.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &done); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(frames)/float64(b.N), "wal-frames/write")
		})
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
