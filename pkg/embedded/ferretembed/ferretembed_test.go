package ferretembed_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/avxrm/rm/pkg/embedded/dirlock"
	"github.com/avxrm/rm/pkg/embedded/ferretembed"
	"github.com/avxrm/rm/pkg/embedded/mongotest"
)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestStartPortZeroAndRestart(t *testing.T) {
	ctx := testContext(t)
	dir := filepath.Join(t.TempDir(), "not", "yet", "there")

	srv, err := ferretembed.Start(ctx, ferretembed.Config{Addr: "127.0.0.1:0", Dir: dir})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if strings.HasSuffix(srv.URI(), ":0/") || !strings.HasPrefix(srv.URI(), "mongodb://127.0.0.1:") {
		t.Errorf("URI() = %q, want mongodb://127.0.0.1:<bound port>/", srv.URI())
	}
	if srv.Dir() != dir {
		t.Errorf("Dir() = %q, want %q", srv.Dir(), dir)
	}
	client := mongotest.Client(t, srv.URI())
	if _, err := client.Database("app").Collection("c").InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}}); err != nil {
		t.Fatalf("insert: %v", err)
	}
	if err := client.Disconnect(ctx); err != nil {
		t.Fatalf("disconnect: %v", err)
	}
	// A second server on the same files is refused while the first runs.
	var inUse *dirlock.InUseError
	if _, err := ferretembed.Start(ctx, ferretembed.Config{Addr: "127.0.0.1:0", Dir: dir}); !errors.As(err, &inUse) || inUse.PID != os.Getpid() {
		t.Fatalf("a second server on %s: %v, want it refused naming pid %d", dir, err, os.Getpid())
	}
	srv.Close()

	srv, err = ferretembed.Start(ctx, ferretembed.Config{Addr: "127.0.0.1:0", Dir: dir})
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	t.Cleanup(srv.Close) // after the client's Disconnect, so Close need not wait for it
	client = mongotest.Client(t, srv.URI())
	n, err := client.Database("app").Collection("c").CountDocuments(ctx, bson.D{})
	if err != nil || n != 1 {
		t.Errorf("after restart CountDocuments = %d, %v; want 1, nil", n, err)
	}
}

func TestStartRequiresDir(t *testing.T) {
	if _, err := ferretembed.Start(context.Background(), ferretembed.Config{Addr: "127.0.0.1:0"}); err == nil {
		t.Fatal("Start without Dir: want error")
	}
}

// explainFind returns the SQLite query plan FerretDB reports for a find by _id,
// i.e. the plan of the SQL FerretDB itself generates.
func explainFind(ctx context.Context, t *testing.T, coll *mongo.Collection, id any) string {
	t.Helper()
	cmd := bson.D{
		{Key: "explain", Value: bson.D{{Key: "find", Value: coll.Name()}, {Key: "filter", Value: bson.D{{Key: "_id", Value: id}}}}},
		{Key: "verbosity", Value: "queryPlanner"},
	}
	raw, err := coll.Database().RunCommand(ctx, cmd).Raw()
	if err != nil {
		t.Fatalf("explain: %v", err)
	}
	return raw.Lookup("queryPlanner", "Plan").String()
}

// sqlitePlan returns EXPLAIN QUERY PLAN details for q run on db's SQLite file.
func sqlitePlan(ctx context.Context, t *testing.T, srv *ferretembed.Server, db, q string, args ...any) string {
	t.Helper()
	sdb, err := srv.OpenSQLite(db)
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	rows, err := sdb.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatalf("explain %q: %v", q, err)
	}
	defer rows.Close()
	var details []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		details = append(details, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(details, "; ")
}

func sqliteIndexes(ctx context.Context, t *testing.T, srv *ferretembed.Server, db, table string) []string {
	t.Helper()
	sdb, err := srv.OpenSQLite(db)
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	rows, err := sdb.QueryContext(ctx, "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? ORDER BY name", table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	return names
}

// TestWithoutIDIndexFerretDBScans pins the FerretDB behaviour EnsureIDIndex
// exists for. If it fails after a FerretDB upgrade, the remedy may be obsolete.
func TestWithoutIDIndexFerretDBScans(t *testing.T) {
	ctx := testContext(t)
	uri, _ := mongotest.Start(t)
	coll := mongotest.Client(t, uri).Database("app").Collection("plain")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}}); err != nil {
		t.Fatal(err)
	}
	if plan := explainFind(ctx, t, coll, "a"); !strings.Contains(plan, "SCAN") || strings.Contains(plan, "USING INDEX") {
		t.Errorf("plan without EnsureIDIndex = %s; want a full SCAN", plan)
	}
}

func TestEnsureIDIndex(t *testing.T) {
	ctx := testContext(t)
	uri, srv := mongotest.Start(t)
	client := mongotest.Client(t, uri)
	const db, name = "app", "jobs"
	coll := client.Database(db).Collection(name)

	// The collection does not exist yet: EnsureIDIndex creates it. Twice, to
	// prove it is idempotent.
	for range 2 {
		if err := srv.EnsureIDIndex(ctx, db, name); err != nil {
			t.Fatalf("EnsureIDIndex: %v", err)
		}
	}
	table, err := srv.TableName(ctx, db, name)
	if err != nil {
		t.Fatal(err)
	}
	index := ferretembed.IDIndexName(table)

	docs := make([]any, 0, 101)
	for i := range 100 {
		docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("job-%03d", i)}, {Key: "n", Value: i}})
	}
	oid := bson.NewObjectID()
	docs = append(docs, bson.D{{Key: "_id", Value: oid}, {Key: "n", Value: -1}})
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatalf("insert: %v", err)
	}

	// FerretDB's own SQL for find by _id, string and ObjectId.
	for _, id := range []any{"job-042", oid} {
		if plan := explainFind(ctx, t, coll, id); !strings.Contains(plan, "USING INDEX "+index) {
			t.Errorf("FerretDB plan for find {_id: %v} = %s; want USING INDEX %s", id, plan, index)
		}
	}
	// The UPDATE and DELETE statements FerretDB's SQLite backend issues
	// (internal/backends/sqlite/collection.go UpdateAll, DeleteAll).
	for _, q := range []string{
		fmt.Sprintf(`UPDATE %q SET _ferretdb_sjson = ? WHERE %s = ?`, table, ferretembed.IDExpr),
		fmt.Sprintf(`DELETE FROM %q WHERE %s IN (?, ?)`, table, ferretembed.IDExpr),
	} {
		if plan := sqlitePlan(ctx, t, srv, db, q, `"job-1"`, `"job-2"`, `"job-3"`); !strings.Contains(plan, "USING INDEX "+index) {
			t.Errorf("plan of %s = %s; want USING INDEX %s", q, plan, index)
		}
	}

	// Updates and deletes by _id still do the right thing.
	res, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "job-007"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 700}}}})
	if err != nil || res.MatchedCount != 1 || res.ModifiedCount != 1 {
		t.Fatalf("UpdateOne = %+v, %v; want 1 matched and modified", res, err)
	}
	var got struct{ N int }
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "job-007"}}).Decode(&got); err != nil || got.N != 700 {
		t.Errorf("after update n = %d, %v; want 700", got.N, err)
	}
	if del, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: oid}}); err != nil || del.DeletedCount != 1 {
		t.Errorf("DeleteOne = %+v, %v; want 1 deleted", del, err)
	}

	// FerretDB's index metadata is untouched: it neither lists our index nor
	// stumbles over it when managing its own.
	if _, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "n", Value: 1}}}); err != nil {
		t.Fatalf("createIndexes: %v", err)
	}
	if names := listIndexes(ctx, t, coll); !slices.Equal(names, []string{"_id_", "n_1"}) {
		t.Errorf("listIndexes = %v; want [_id_ n_1]", names)
	}
	if err := coll.Indexes().DropAll(ctx); err != nil {
		t.Fatalf("dropIndexes: %v", err)
	}
	if names := sqliteIndexes(ctx, t, srv, db, table); !slices.Contains(names, index) {
		t.Errorf("after dropIndexes SQLite indexes = %v; want %s kept", names, index)
	}
	if err := client.Database(db).RunCommand(ctx, bson.D{{Key: "collStats", Value: name}}).Err(); err != nil {
		t.Errorf("collStats: %v", err)
	}

	// Dropping the collection drops the table and our index with it; the
	// collection can be recreated and indexed again.
	if err := coll.Drop(ctx); err != nil {
		t.Fatalf("drop: %v", err)
	}
	if names := sqliteIndexes(ctx, t, srv, db, table); len(names) != 0 {
		t.Errorf("after drop SQLite indexes on %s = %v; want none", table, names)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "again"}, {Key: "n", Value: 1}}); err != nil {
		t.Fatalf("insert after drop: %v", err)
	}
	if err := srv.EnsureIDIndex(ctx, db, name); err != nil {
		t.Fatalf("EnsureIDIndex after recreate: %v", err)
	}
	// A real statement first: FerretDB's pooled SQLite connections cache the
	// schema, and EXPLAIN QUERY PLAN (unlike a real statement, which sees the
	// changed schema cookie and re-prepares) would plan with the stale one.
	// Through FerretDB, not the proxy's direct find (finddirect.go).
	srv.SetDirect(false)
	err = coll.FindOne(ctx, bson.D{{Key: "_id", Value: "again"}}).Err()
	srv.SetDirect(true)
	if err != nil {
		t.Fatalf("find after recreate: %v", err)
	}
	table2, err := srv.TableName(ctx, db, name)
	if err != nil {
		t.Fatal(err)
	}
	if plan := explainFind(ctx, t, coll, "again"); !strings.Contains(plan, "USING INDEX "+ferretembed.IDIndexName(table2)) {
		t.Errorf("plan after recreate = %s; want our index", plan)
	}
	if n, err := coll.CountDocuments(ctx, bson.D{}); err != nil || n != 1 {
		t.Errorf("after recreate CountDocuments = %d, %v; want 1", n, err)
	}
	if err := client.Database(db).Drop(ctx); err != nil {
		t.Errorf("dropDatabase: %v", err)
	}
}

func listIndexes(ctx context.Context, t *testing.T, coll *mongo.Collection) []string {
	t.Helper()
	specs, err := coll.Indexes().ListSpecifications(ctx)
	if err != nil {
		t.Fatalf("listIndexes: %v", err)
	}
	var names []string
	for _, s := range specs {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	return names
}
