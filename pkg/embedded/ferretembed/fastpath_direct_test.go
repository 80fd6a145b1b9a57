package ferretembed_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
	"github.com/avxrm/rm/pkg/embedded/mongotest"
)

// replaceRig holds one store with two collections: "ferret", whose
// replacements the test sends to FerretDB, and "direct", whose replacements
// the proxy may write in SQL, and reads their rows as SQLite stores them.
type replaceRig struct {
	srv            *ferretembed.Server
	ferret, direct *mongo.Collection
	sdb            *sql.DB
	tables         map[string]string
}

func newReplaceRig(t *testing.T) *replaceRig {
	t.Helper()
	ctx := context.Background()
	uri, srv := mongotest.Start(t)
	db := mongotest.Client(t, uri).Database("replace")
	r := &replaceRig{srv: srv, ferret: db.Collection("ferret"), direct: db.Collection("direct"), tables: map[string]string{}}
	for _, c := range []*mongo.Collection{r.ferret, r.direct} {
		// A unique index besides _id, as the jobs have.
		if _, err := c.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "key", Value: 1}},
			Options: options.Index().SetUnique(true).SetSparse(true)}); err != nil {
			t.Fatal(err)
		}
		if err := srv.EnsureIDIndex(ctx, "replace", c.Name()); err != nil {
			t.Fatal(err)
		}
		table, err := srv.TableName(ctx, "replace", c.Name())
		if err != nil {
			t.Fatal(err)
		}
		r.tables[c.Name()] = table
	}
	sdb, err := srv.OpenSQLite("replace")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sdb.Close() })
	r.sdb = sdb
	return r
}

// row returns the stored sjson of the document with _id id in c.
func (r *replaceRig) row(t *testing.T, c *mongo.Collection, id string) string {
	t.Helper()
	var s string
	q := fmt.Sprintf(`SELECT _ferretdb_sjson FROM %q WHERE _ferretdb_sjson->'$._id' = json_quote(?)`, r.tables[c.Name()])
	if err := r.sdb.QueryRow(q, id).Scan(&s); err != nil {
		t.Fatalf("row %s of %s: %v", id, c.Name(), err)
	}
	return s
}

// replaceBoth stores {_id: id, version: 1} in both collections, then
// replaces it with doc conditioned on the version, through FerretDB in one
// and the direct path in the other, and returns the results and errors.
func (r *replaceRig) replaceBoth(t *testing.T, id string, doc bson.D) (ferret, direct *mongo.UpdateResult, ferr, derr error) {
	t.Helper()
	ctx := context.Background()
	r.srv.SetDirect(false) // the setup's inserts are FerretDB's
	for _, c := range []*mongo.Collection{r.ferret, r.direct} {
		if _, err := c.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "version", Value: int64(1)}}); err != nil {
			t.Fatal(err)
		}
	}
	filter := bson.D{{Key: "_id", Value: id}, {Key: "version", Value: int64(1)}}
	ferret, ferr = r.ferret.ReplaceOne(ctx, filter, doc)
	r.srv.SetDirect(true)
	direct, derr = r.direct.ReplaceOne(ctx, filter, doc)
	return ferret, direct, ferr, derr
}

// TestDirectReplaceMatchesFerretDB writes the same replacements through
// FerretDB and through the fast path's direct write, and requires the same
// reply and the same stored row, byte for byte, and that the direct path
// wrote every replacement it can encode and none it cannot.
func TestDirectReplaceMatchesFerretDB(t *testing.T) {
	r := newReplaceRig(t)
	oid := bson.ObjectID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	cases := []directCase{
		{"job-like", jobLike(when), true},
		{"_id in the replacement", bson.D{{Key: "_id", Value: "ID"}, {Key: "version", Value: int64(2)}, {Key: "a", Value: "x"}}, true},
		{"_id last", bson.D{{Key: "version", Value: int64(2)}, {Key: "_id", Value: "ID"}}, true},
		{"every scalar", bson.D{{Key: "version", Value: int64(2)}, {Key: "s", Value: "plain"}, {Key: "esc", Value: "<a href=\"x\">&\\\n\t\u2028 é 😀"},
			{Key: "i32", Value: int32(math.MinInt32)}, {Key: "i64", Value: int64(math.MaxInt64)}, {Key: "neg", Value: int64(-7)},
			{Key: "d", Value: 0.1}, {Key: "dwhole", Value: 3.0}, {Key: "dbig", Value: 1e21}, {Key: "dsmall", Value: 1e-7}, {Key: "dneg", Value: -2.5e-300},
			{Key: "zero", Value: 0.0}, {Key: "t", Value: true}, {Key: "f", Value: false}, {Key: "null", Value: nil},
			{Key: "date", Value: bson.NewDateTimeFromTime(when)}, {Key: "old", Value: bson.DateTime(-62135596800000)},
			{Key: "oid", Value: oid}}, true},
		{"empty document and array", bson.D{{Key: "version", Value: int64(2)}, {Key: "e", Value: bson.D{}}, {Key: "a", Value: bson.A{}}}, true},
		{"unicode key", bson.D{{Key: "version", Value: int64(2)}, {Key: "größe", Value: int32(1)}, {Key: "nested", Value: bson.D{{Key: "ключ", Value: "v"}}}}, true},
		{"arrays of documents", bson.D{{Key: "version", Value: int64(2)}, {Key: "a", Value: bson.A{bson.D{{Key: "x", Value: int32(1)}}, "s", nil, bson.D{}}}}, true},
		{"nested _id", bson.D{{Key: "version", Value: int64(2)}, {Key: "sub", Value: bson.D{{Key: "_id", Value: int32(5)}, {Key: "y", Value: "z"}}}}, true},

		{"nested array", bson.D{{Key: "version", Value: int64(2)}, {Key: "a", Value: bson.A{bson.A{int32(1)}}}}, false},
		{"negative zero", bson.D{{Key: "version", Value: int64(2)}, {Key: "z", Value: math.Copysign(0, -1)}}, false},
		{"infinity", bson.D{{Key: "version", Value: int64(2)}, {Key: "inf", Value: math.Inf(1)}}, false},
		{"binary", bson.D{{Key: "version", Value: int64(2)}, {Key: "b", Value: bson.Binary{Data: []byte{1, 2}}}}, false},
		{"regex", bson.D{{Key: "version", Value: int64(2)}, {Key: "re", Value: bson.Regex{Pattern: "a.*", Options: "i"}}}, false},
		{"timestamp", bson.D{{Key: "version", Value: int64(2)}, {Key: "ts", Value: bson.Timestamp{T: 1, I: 2}}}, false},
		{"key needing escapes", bson.D{{Key: "version", Value: int64(2)}, {Key: "a<b", Value: int32(1)}}, false},
		{"nested key needing escapes", bson.D{{Key: "version", Value: int64(2)}, {Key: "n", Value: bson.D{{Key: "q\"", Value: int32(1)}}}}, false},
		{"dotted key", bson.D{{Key: "version", Value: int64(2)}, {Key: "n", Value: bson.D{{Key: "a.b", Value: int32(1)}}}}, false},
		{"dollar key", bson.D{{Key: "version", Value: int64(2)}, {Key: "n", Value: bson.D{{Key: "$x", Value: int32(1)}}}}, false},
		{"duplicate key", bson.D{{Key: "version", Value: int64(2)}, {Key: "d", Value: int32(1)}, {Key: "d", Value: int32(2)}}, false},
		{"changed _id", bson.D{{Key: "_id", Value: "other"}, {Key: "version", Value: int64(2)}}, false},
	}
	cases = randomCases(cases, 7, 200, bson.D{{Key: "version", Value: int64(2)}})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d0, u0, f0 := r.srv.DirectWriteStats()
			fres, dres, ferr, derr := r.replaceBoth(t, "ID", c.doc)
			d1, u1, f1 := r.srv.DirectWriteStats()
			if (ferr == nil) != (derr == nil) || (ferr != nil && connection.ReplaceAllString(ferr.Error(), "") != connection.ReplaceAllString(derr.Error(), "")) {
				t.Fatalf("errors differ: FerretDB %v, direct %v", ferr, derr)
			}
			if ferr == nil && *fres != *dres {
				t.Errorf("results differ: FerretDB %+v, direct %+v", *fres, *dres)
			}
			if f1 != f0 {
				t.Errorf("%d direct writes failed in SQLite", f1-f0)
			}
			if got := d1 - d0; c.direct && got != 1 {
				t.Fatalf("the direct path wrote %d (left %d to FerretDB), want 1", got, u1-u0)
			} else if !c.direct && got != 0 {
				t.Fatalf("the direct path wrote %d, want 0: FerretDB must handle it", got)
			}
			if ferr != nil {
				return
			}
			if fr, dr := r.row(t, r.ferret, "ID"), r.row(t, r.direct, "ID"); fr != dr {
				t.Errorf("stored rows differ:\nFerretDB %s\ndirect   %s", fr, dr)
			}
		})
	}
}

// connection is the part of a driver error naming the connection.
var connection = regexp.MustCompile(`connection\([^)]*\)`)

// directCase is a document and whether the direct path handles it.
type directCase struct {
	name   string
	doc    bson.D
	direct bool
}

// when is the time in the test documents.
var when = time.Date(2026, 12, 1, 13, 14, 15, 678_000_000, time.UTC)

// randomCases appends n random documents (randomDoc, seeded) after prefix.
func randomCases(cases []directCase, seed uint64, n int, prefix bson.D) []directCase {
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := range n {
		doc, ok := randomDoc(rng, 0)
		cases = append(cases, directCase{fmt.Sprintf("random %d", i), append(slices.Clone(prefix), doc...), ok})
	}
	return cases
}

// jobLike is a document of a stored job's shape.
func jobLike(when time.Time) bson.D {
	conds := bson.A{}
	for i := range 4 {
		conds = append(conds, bson.D{{Key: "type", Value: fmt.Sprintf("C%d", i)}, {Key: "status", Value: "True"},
			{Key: "reason", Value: "Because"}, {Key: "message", Value: "admitted: 3 worker instances on queue q & 1 controller <ok>"},
			{Key: "last_transition_time", Value: bson.NewDateTimeFromTime(when)}})
	}
	return bson.D{{Key: "version", Value: int64(2)}, {Key: "status", Value: "admitted"}, {Key: "queue_id", Value: "queue-1"},
		{Key: "worker_instances", Value: int64(3)}, {Key: "submitted_at", Value: bson.NewDateTimeFromTime(when)},
		{Key: "admitted_at", Value: bson.NewDateTimeFromTime(when.Add(time.Millisecond))}, {Key: "finished_at", Value: nil},
		{Key: "application", Value: bson.D{{Key: "name", Value: "sim"}, {Key: "version", Value: "1"}, {Key: "image", Value: "registry.example/sim:1"}}},
		{Key: "runtime", Value: bson.D{{Key: "image", Value: "registry.example/sim:1"}, {Key: "args", Value: bson.A{"-a", "-b"}},
			{Key: "env", Value: bson.D{{Key: "A", Value: "1"}}}}},
		{Key: "conditions", Value: conds}, {Key: "labels", Value: bson.D{}}, {Key: "cancel_requested", Value: false},
		{Key: "instance_counts", Value: bson.D{{Key: "worker", Value: bson.D{{Key: "running", Value: int32(3)}}}}},
		{Key: "_outbox", Value: bson.A{bson.D{{Key: "id", Value: "ev-1"}, {Key: "at", Value: bson.NewDateTimeFromTime(when)},
			{Key: "data", Value: "{\"id\":\"job-1\",\"status\":\"admitted\"}"}}}}}
}

// randomDoc returns a random document of up to 6 fields, nested up to 3
// deep, and whether the direct path encodes it (no value outside its types).
func randomDoc(rng *rand.Rand, depth int) (bson.D, bool) {
	keys := []string{"a", "b", "status", "größe", "x_y", "n1", "long_key_name", "ü"}
	var d bson.D
	ok := true
	used := map[string]bool{}
	for range rng.IntN(7) {
		k := keys[rng.IntN(len(keys))]
		if used[k] {
			continue
		}
		used[k] = true
		v, vok := randomValue(rng, depth, true)
		ok = ok && vok
		d = append(d, bson.E{Key: k, Value: v})
	}
	return d, ok
}

func randomValue(rng *rand.Rand, depth int, arrays bool) (any, bool) {
	n := 12
	if depth < 3 {
		n = 14
	}
	switch k := rng.IntN(n); k {
	case 0:
		return strings.Repeat("s<&>\"é", rng.IntN(3)) + fmt.Sprint(rng.Int()), true
	case 1:
		return rng.Int32() - rng.Int32(), true
	case 2:
		return rng.Int64() - rng.Int64(), true
	case 3:
		return rng.NormFloat64() * math.Pow(10, float64(rng.IntN(40)-20)), true
	case 4:
		return float64(rng.IntN(1000)), true
	case 5:
		return rng.IntN(2) == 0, true
	case 6:
		return nil, true
	case 7:
		return bson.DateTime(rng.Int64N(1<<45) - 1<<44), true
	case 8:
		var oid bson.ObjectID
		for i := range oid {
			oid[i] = byte(rng.IntN(256))
		}
		return oid, true
	case 9:
		return "", true
	case 10:
		return bson.Binary{Subtype: 0, Data: []byte{byte(rng.IntN(256))}}, false
	case 11:
		return bson.Timestamp{T: rng.Uint32(), I: 1}, false
	case 12:
		return randomDoc(rng, depth+1)
	default:
		if !arrays {
			return bson.D{}, true
		}
		var a bson.A
		ok := true
		for range rng.IntN(4) {
			v, vok := randomValue(rng, depth+1, false) // FerretDB refuses nested arrays
			ok = ok && vok
			a = append(a, v)
		}
		if a == nil {
			a = bson.A{}
		}
		return a, ok
	}
}

// TestDirectInsertMatchesFerretDB inserts the same documents through
// FerretDB and through the fast path's direct write, and requires the same
// reply or error and the same stored row, byte for byte.
func TestDirectInsertMatchesFerretDB(t *testing.T) {
	r := newReplaceRig(t)
	ctx := context.Background()
	cases := []directCase{
		{"job-like", append(bson.D{{Key: "_id", Value: "ID"}}, jobLike(when)...), true},
		{"_id not first", bson.D{{Key: "a", Value: int32(1)}, {Key: "_id", Value: "ID"}, {Key: "b", Value: "x"}}, true},
		{"only _id", bson.D{{Key: "_id", Value: "ID"}}, true},
		{"ObjectId _id", bson.D{{Key: "_id", Value: bson.ObjectID{1}}, {Key: "a", Value: int32(1)}}, false},
		{"int _id", bson.D{{Key: "_id", Value: int32(4)}}, false},
		{"nested array", bson.D{{Key: "_id", Value: "ID"}, {Key: "a", Value: bson.A{bson.A{}}}}, false},
		{"dotted key", bson.D{{Key: "_id", Value: "ID"}, {Key: "a.b", Value: int32(1)}}, false},
	}
	cases = randomCases(cases, 11, 100, bson.D{{Key: "_id", Value: "ID"}})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var id any = "ID"
			for _, e := range c.doc {
				if e.Key == "_id" {
					id = e.Value
				}
			}
			var errs [2]error
			d0, _, f0 := r.srv.DirectWriteStats()
			for i, coll := range []*mongo.Collection{r.ferret, r.direct} {
				if _, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
					t.Fatal(err)
				}
				r.srv.SetDirect(coll == r.direct)
				_, errs[i] = coll.InsertOne(ctx, c.doc)
			}
			d1, _, f1 := r.srv.DirectWriteStats()
			if (errs[0] == nil) != (errs[1] == nil) || (errs[0] != nil && connection.ReplaceAllString(errs[0].Error(), "") != connection.ReplaceAllString(errs[1].Error(), "")) {
				t.Fatalf("errors differ: FerretDB %v, direct %v", errs[0], errs[1])
			}
			if f1 != f0 {
				t.Errorf("%d direct writes failed in SQLite", f1-f0)
			}
			if got, want := d1-d0, map[bool]int64{true: 1, false: 0}[c.direct]; got != want {
				t.Fatalf("the direct path wrote %d, want %d", got, want)
			}
			if s, ok := id.(string); ok && errs[0] == nil {
				if fr, dr := r.row(t, r.ferret, s), r.row(t, r.direct, s); fr != dr {
					t.Errorf("stored rows differ:\nFerretDB %s\ndirect   %s", fr, dr)
				}
			}
		})
	}
}

// TestDirectInsertConflicts: an insert of a taken _id or unique key fails
// with FerretDB's own write error and changes nothing; an insert into a
// collection that does not exist yet is FerretDB's (it creates it).
func TestDirectInsertConflicts(t *testing.T) {
	r := newReplaceRig(t)
	ctx := context.Background()
	errs := map[string][]string{}
	for _, c := range []*mongo.Collection{r.ferret, r.direct} {
		r.srv.SetDirect(c == r.direct)
		if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: "one"}, {Key: "key", Value: "k1"}}); err != nil {
			t.Fatal(err)
		}
		before := r.row(t, c, "one")
		_, _, f0 := r.srv.DirectWriteStats()
		for _, d := range []bson.D{
			{{Key: "_id", Value: "one"}, {Key: "key", Value: "k9"}},
			{{Key: "_id", Value: "two"}, {Key: "key", Value: "k1"}},
		} {
			_, err := c.InsertOne(ctx, d)
			if !mongo.IsDuplicateKeyError(err) {
				t.Errorf("%s: insert %v: %v, want a duplicate key error", c.Name(), d, err)
			}
			if err != nil {
				errs[c.Name()] = append(errs[c.Name()], strings.ReplaceAll(err.Error(), c.Name(), "COLL"))
			}
		}
		if after := r.row(t, c, "one"); after != before {
			t.Errorf("%s: the row changed: %s, was %s", c.Name(), after, before)
		}
		if n, err := c.CountDocuments(ctx, bson.D{}); err != nil || n != 1 {
			t.Errorf("%s: %d documents (%v), want 1", c.Name(), n, err)
		}
		if _, _, f1 := r.srv.DirectWriteStats(); c == r.direct && f1-f0 != 2 {
			t.Errorf("SQLite refused %d direct inserts, want 2 (then FerretDB answered)", f1-f0)
		}
	}
	if !slices.Equal(errs["ferret"], errs["direct"]) {
		t.Errorf("errors: through FerretDB %q, with the direct path %q", errs["ferret"], errs["direct"])
	}
	r.srv.SetDirect(true)
	_, u0, _ := r.srv.DirectWriteStats()
	fresh := r.direct.Database().Collection("fresh")
	if _, err := fresh.InsertOne(ctx, bson.D{{Key: "_id", Value: "f"}}); err != nil {
		t.Fatalf("insert into a new collection: %v", err)
	}
	if err := fresh.FindOne(ctx, bson.D{{Key: "_id", Value: "f"}}).Err(); err != nil {
		t.Errorf("the new collection's document: %v", err)
	}
	if _, u1, _ := r.srv.DirectWriteStats(); u1-u0 != 1 {
		t.Errorf("the direct path left %d inserts to FerretDB, want 1 (the new collection's)", u1-u0)
	}
}

// TestDirectReplaceUnchanged replaces a document with itself: no write
// (nModified 0) both ways, and the direct path still answers it.
func TestDirectReplaceUnchanged(t *testing.T) {
	r := newReplaceRig(t)
	ctx := context.Background()
	doc := bson.D{{Key: "_id", Value: "same"}, {Key: "version", Value: int64(1)}, {Key: "a", Value: "x"}}
	for _, c := range []*mongo.Collection{r.ferret, r.direct} {
		r.srv.SetDirect(false)
		if _, err := c.InsertOne(ctx, doc); err != nil {
			t.Fatal(err)
		}
		r.srv.SetDirect(c == r.direct)
		d0, _, _ := r.srv.DirectWriteStats()
		res, err := c.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "same"}, {Key: "version", Value: int64(1)}}, doc)
		if err != nil || res.MatchedCount != 1 || res.ModifiedCount != 0 {
			t.Errorf("%s: %+v, %v; want 1 matched, 0 modified", c.Name(), res, err)
		}
		if d1, _, _ := r.srv.DirectWriteStats(); c == r.direct && d1-d0 != 1 {
			t.Errorf("the direct path wrote %d replacements, want 1", d1-d0)
		}
	}
}

// TestDirectUpsertMatchesFerretDB: a replacement by the _id alone, with
// upsert (the scheduler's start estimates, a big job's instance chunks) or
// without, is written in SQL when the document exists, and inserted in SQL
// for an upsert when it does not; either way the reply and the stored row
// are FerretDB's. An upsert with a condition
// besides the _id is FerretDB's throughout: a condition that fails on a
// found document makes it insert.
func TestDirectUpsertMatchesFerretDB(t *testing.T) {
	r := newReplaceRig(t)
	ctx := context.Background()
	est := func(n int) bson.D {
		jobs := bson.A{}
		for i := range n {
			jobs = append(jobs, bson.D{{Key: "job_id", Value: fmt.Sprintf("job-%d", i)}, {Key: "position", Value: int32(i + 1)},
				{Key: "start_at", Value: bson.NewDateTimeFromTime(when.Add(time.Duration(i) * time.Second))}, {Key: "basis", Value: "median_run_time"}})
		}
		return bson.D{{Key: "queue_id", Value: "q-1"}, {Key: "epoch", Value: int64(3)}, {Key: "computed_at", Value: bson.NewDateTimeFromTime(when)}, {Key: "jobs", Value: jobs}}
	}
	byID := bson.D{{Key: "_id", Value: "q-1"}}
	cases := []struct {
		name           string
		upsert, exists bool
		filter         bson.D
		doc            bson.D
		direct         int64 // replacements the direct path writes
		// unchanged: the replacement equals the document. FerretDB's
		// upsert counts it as modified; MongoDB, the production store,
		// does not, nor does the direct path (TestDirectReplaceUnchanged).
		unchanged bool
	}{
		{"found", true, true, byID, est(50), 1, false},
		{"found, unchanged", true, true, byID, bson.D{{Key: "version", Value: int64(1)}}, 1, true},
		{"not found: inserted", true, false, byID, est(3), 1, false},
		{"not found, the _id in the replacement too", true, false, byID, append(bson.D{{Key: "_id", Value: "q-1"}}, est(3)...), 1, false},
		{"found, a condition besides the _id", true, true, bson.D{{Key: "_id", Value: "q-1"}, {Key: "version", Value: int64(1)}}, est(2), 0, false},
		{"found, a condition that fails", true, true, bson.D{{Key: "_id", Value: "q-1"}, {Key: "version", Value: int64(9)}}, est(2), 0, false},
		{"no upsert, found by the _id alone", false, true, byID, est(5), 1, false},
		{"no upsert, not found", false, false, byID, est(5), 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var res [2]*mongo.UpdateResult
			var errs [2]error
			for i, coll := range []*mongo.Collection{r.ferret, r.direct} {
				r.srv.SetDirect(false)
				if _, err := coll.DeleteMany(ctx, bson.D{}); err != nil {
					t.Fatal(err)
				}
				if c.exists {
					if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "q-1"}, {Key: "version", Value: int64(1)}}); err != nil {
						t.Fatal(err)
					}
				}
				r.srv.SetDirect(coll == r.direct)
				d0, _, f0 := r.srv.DirectWriteStats()
				res[i], errs[i] = coll.ReplaceOne(ctx, c.filter, c.doc, options.Replace().SetUpsert(c.upsert))
				d1, _, f1 := r.srv.DirectWriteStats()
				if coll == r.direct && (d1-d0 != c.direct || f1 != f0) {
					t.Errorf("the direct path wrote %d (%d failed), want %d", d1-d0, f1-f0, c.direct)
				}
			}
			if (errs[0] == nil) != (errs[1] == nil) || (errs[0] != nil && collName(errs[0]) != collName(errs[1])) {
				t.Fatalf("errors differ: FerretDB %v, direct %v", errs[0], errs[1])
			}
			if errs[0] != nil {
				return
			}
			want := *res[0]
			if c.unchanged {
				want.ModifiedCount = 0
			}
			if want != *res[1] {
				t.Errorf("results differ: FerretDB %+v, direct %+v (want %+v)", *res[0], *res[1], want)
			}
			if !c.exists && !c.upsert {
				return // nothing stored either way
			}
			if fr, dr := r.row(t, r.ferret, "q-1"), r.row(t, r.direct, "q-1"); fr != dr {
				t.Errorf("stored rows differ:\nFerretDB %s\ndirect   %s", fr, dr)
			}
		})
	}
}

// TestDirectUpsertAfterAWrongMiss: were the lookup to miss a document that
// exists, the upsert's insert in SQL fails on FerretDB's unique _id_ index
// and the command goes on to FerretDB, which replaces the document: the
// reply and the stored row are those of FerretDB alone, and no second
// document with the _id appears.
func TestDirectUpsertAfterAWrongMiss(t *testing.T) {
	r := newReplaceRig(t)
	ctx := context.Background()
	byID := bson.D{{Key: "_id", Value: "q-1"}}
	doc := bson.D{{Key: "queue_id", Value: "q-1"}, {Key: "epoch", Value: int64(4)}}
	var res [2]*mongo.UpdateResult
	for i, coll := range []*mongo.Collection{r.ferret, r.direct} {
		r.srv.SetDirect(false)
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "q-1"}, {Key: "version", Value: int64(1)}}); err != nil {
			t.Fatal(err)
		}
		r.srv.SetDirect(coll == r.direct)
		r.srv.MissAllLookups(coll == r.direct)
		d0, _, f0 := r.srv.DirectWriteStats()
		var err error
		if res[i], err = coll.ReplaceOne(ctx, byID, doc, options.Replace().SetUpsert(true)); err != nil {
			t.Fatal(err)
		}
		r.srv.MissAllLookups(false)
		d1, _, f1 := r.srv.DirectWriteStats()
		if coll == r.direct && (d1 != d0 || f1-f0 != 1) {
			t.Errorf("the direct path wrote %d and failed %d times; want 0 and 1 (the insert the unique index refused)", d1-d0, f1-f0)
		}
		if n, err := coll.CountDocuments(ctx, bson.D{}); err != nil || n != 1 {
			t.Errorf("%s holds %d documents (%v), want 1", coll.Name(), n, err)
		}
	}
	if *res[0] != *res[1] {
		t.Errorf("results differ: FerretDB %+v, after the miss %+v", *res[0], *res[1])
	}
	if fr, dr := r.row(t, r.ferret, "q-1"), r.row(t, r.direct, "q-1"); fr != dr {
		t.Errorf("stored rows differ:\nFerretDB   %s\nafter miss %s", fr, dr)
	}
}

// TestDirectPathIndexesCollectionsMadeLater: a collection FerretDB makes on
// its first write, after the start's EnsureIDIndex, gets its _id index from
// the first write that reaches the direct path, and the writes after it are
// written in SQL.
func TestDirectPathIndexesCollectionsMadeLater(t *testing.T) {
	ctx := context.Background()
	uri, srv := mongotest.Start(t)
	db := mongotest.Client(t, uri).Database("late")
	coll := db.Collection("queue_estimates")
	upsert := options.Replace().SetUpsert(true)
	if _, err := coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "q-1"}}, bson.D{{Key: "n", Value: int64(0)}}, upsert); err != nil {
		t.Fatal(err) // FerretDB makes the collection and inserts
	}
	sdb, err := srv.OpenSQLite("late")
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	table, err := srv.TableName(ctx, "late", coll.Name())
	if err != nil {
		t.Fatal(err)
	}
	indexes := func() int {
		var n int
		if err := sdb.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND name LIKE 'avxrm_idpath_%'`, table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := indexes(); n != 0 {
		t.Fatalf("%d _id indexes before any direct write; the test needs a collection without one", n)
	}
	for i := range 3 {
		d0, u0, f0 := srv.DirectWriteStats()
		if _, err := coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "q-1"}}, bson.D{{Key: "n", Value: int64(i + 1)}}, upsert); err != nil {
			t.Fatal(err)
		}
		if d1, u1, f1 := srv.DirectWriteStats(); d1-d0 != 1 {
			t.Errorf("write %d: the direct path wrote %d (%d outside its subset, %d failed), want 1", i+1, d1-d0, u1-u0, f1-f0)
		}
	}
	if n := indexes(); n != 1 {
		t.Errorf("%d _id indexes after the writes, want 1", n)
	}
	var got bson.M
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "q-1"}}).Decode(&got); err != nil || got["n"] != int64(3) {
		t.Errorf("stored %v (%v), want n 3", got, err)
	}
}

// collName is err's text without the connection and the collection's name.
func collName(err error) string {
	return strings.NewReplacer("replace.ferret", "replace.C", "replace.direct", "replace.C").Replace(connection.ReplaceAllString(err.Error(), ""))
}

// TestDirectReplaceUniqueViolation: a replacement that breaks a unique
// index fails as it does through FerretDB (which gives an InternalError
// naming the SQLite constraint, not MongoDB's duplicate key error) and
// changes nothing.
func TestDirectReplaceUniqueViolation(t *testing.T) {
	r := newReplaceRig(t)
	ctx := context.Background()
	codes := map[string][]int{}
	for _, c := range []*mongo.Collection{r.ferret, r.direct} {
		r.srv.SetDirect(false)
		for _, d := range []bson.D{
			{{Key: "_id", Value: "one"}, {Key: "version", Value: int64(1)}, {Key: "key", Value: "k1"}},
			{{Key: "_id", Value: "two"}, {Key: "version", Value: int64(1)}, {Key: "key", Value: "k2"}},
		} {
			if _, err := c.InsertOne(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		r.srv.SetDirect(c == r.direct)
		before := r.row(t, c, "two")
		_, _, f0 := r.srv.DirectWriteStats()
		_, err := c.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "two"}, {Key: "version", Value: int64(1)}},
			bson.D{{Key: "version", Value: int64(2)}, {Key: "key", Value: "k1"}})
		var se mongo.ServerError
		if !errors.As(err, &se) {
			t.Fatalf("%s: replacement onto a taken unique key: %v, want the store's error", c.Name(), err)
		}
		codes[c.Name()] = se.ErrorCodes()
		if after := r.row(t, c, "two"); after != before {
			t.Errorf("%s: the row changed: %s, was %s", c.Name(), after, before)
		}
		if _, _, f1 := r.srv.DirectWriteStats(); c == r.direct && f1-f0 != 1 {
			t.Errorf("SQLite refused %d direct writes, want 1 (then FerretDB answered)", f1-f0)
		}
	}
	if !slices.Equal(codes["ferret"], codes["direct"]) {
		t.Errorf("error codes: through FerretDB %v, with the direct path %v", codes["ferret"], codes["direct"])
	}
}

// TestDirectReplaceIsDurableByFsync checks that the connection the proxy
// writes replacements with has synchronous=FULL, SQLite's default, which
// FerretDB's connections keep too (FerretDB sets no synchronous pragma): in
// WAL mode each commit is fsync'd before the proxy replies.
func TestDirectReplaceIsDurableByFsync(t *testing.T) {
	r := newReplaceRig(t)
	n, err := r.srv.ProxySynchronous("replace")
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("PRAGMA synchronous on the proxy's connection: %d, want 2 (FULL)", n)
	}
}
