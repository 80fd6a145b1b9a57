package ferretembed_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
	"github.com/avxrm/rm/pkg/embedded/mongotest"
)

// The differential test: random conditional writes, of the shapes the fast
// path answers and of near misses it must leave to FerretDB, sent to two
// stores holding the same documents, one with the fast path on and one with
// it off (FerretDB evaluating every filter itself). The replies, byte for
// byte, and the documents afterwards must be the same.

// diffCase is one generated write and the documents it runs on.
type diffCase struct {
	docs []bson.D
	cmd  bson.D
}

var diffOID = bson.ObjectID{0x65, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}

// diffValues are the values documents hold and filters compare with:
// the scalars the fast path compares, numbers of every type with equal and
// unequal values, and values it must not compare (arrays, documents, NaN).
var diffValues = []any{
	int32(1), int64(1), 1.0, int32(2), int64(2), 2.5, "1", "pending", "done", "",
	true, false, nil, diffOID, bson.A{int32(1), "x"}, bson.A{}, bson.D{{Key: "k", Value: int32(1)}},
	math.NaN(), math.Inf(1), int64(1 << 60), float64(1 << 60),
}

var diffFields = []string{"version", "status", "owner", "flag"}

func pick[T any](rnd *rand.Rand, xs []T) T { return xs[rnd.IntN(len(xs))] }

// genDiffCase generates a case from rnd.
func genDiffCase(rnd *rand.Rand) diffCase {
	var c diffCase
	ids := []any{"a", "b", diffOID}
	for _, id := range ids[:1+rnd.IntN(3)] {
		d := bson.D{{Key: "_id", Value: id}}
		for _, f := range diffFields {
			if rnd.IntN(4) > 0 {
				d = append(d, bson.E{Key: f, Value: pick(rnd, diffValues)})
			}
		}
		if rnd.IntN(4) == 0 {
			d = append(d, bson.E{Key: "sub", Value: bson.D{{Key: "k", Value: pick(rnd, diffValues)}}})
		}
		c.docs = append(c.docs, d)
	}
	filter := genDiffFilter(rnd, c.docs)
	update := genDiffUpdate(rnd)
	switch rnd.IntN(4) {
	case 0, 1:
		stmt := bson.D{{Key: "q", Value: filter}, {Key: "u", Value: update}}
		stmt = append(stmt, genOptional(rnd, "upsert", false, true)...)
		stmt = append(stmt, genOptional(rnd, "multi", false, true)...)
		c.cmd = bson.D{{Key: "update", Value: "docs"}, {Key: "updates", Value: bson.A{stmt}}}
	case 2:
		stmt := bson.D{{Key: "q", Value: filter}, {Key: "limit", Value: pick(rnd, []any{int32(1), int32(1), 1.0, int64(1), int32(0)})}}
		c.cmd = bson.D{{Key: "delete", Value: "docs"}, {Key: "deletes", Value: bson.A{stmt}}}
	default:
		c.cmd = bson.D{{Key: "findAndModify", Value: "docs"}, {Key: "query", Value: filter}}
		if rnd.IntN(3) == 0 {
			c.cmd = append(c.cmd, bson.E{Key: "remove", Value: true})
		} else {
			c.cmd = append(c.cmd, bson.E{Key: "update", Value: update})
		}
		c.cmd = append(c.cmd, genOptional(rnd, "new", true, false)...)
		c.cmd = append(c.cmd, genOptional(rnd, "upsert", false, true)...)
		if rnd.IntN(4) == 0 {
			c.cmd = append(c.cmd, bson.E{Key: "fields", Value: bson.D{{Key: "status", Value: int32(1)}}})
		}
	}
	if rnd.IntN(10) == 0 { // a field the fast path does not know
		c.cmd = append(c.cmd, bson.E{Key: "let", Value: bson.D{{Key: "x", Value: int32(1)}}})
	}
	if rnd.IntN(4) == 0 { // neutral fields
		c.cmd = append(c.cmd, bson.E{Key: "ordered", Value: true}, bson.E{Key: "comment", Value: "diff"})
	}
	return c
}

func genOptional(rnd *rand.Rand, key string, usual, unusual any) bson.D {
	switch rnd.IntN(6) {
	case 0:
		return bson.D{{Key: key, Value: unusual}}
	case 1, 2:
		return bson.D{{Key: key, Value: usual}}
	}
	return nil
}

// genDiffFilter returns {_id: X, conditions...}, usually in the fast path's
// subset, sometimes just outside it.
func genDiffFilter(rnd *rand.Rand, docs []bson.D) bson.D {
	var id any = pick(rnd, []any{"a", "b", diffOID, "missing"})
	switch rnd.IntN(12) {
	case 0:
		id = int32(1) // an _id type the fast path leaves alone
	case 1:
		id = bson.D{{Key: "$eq", Value: "a"}}
	}
	f := bson.D{{Key: "_id", Value: id}}
	if rnd.IntN(15) == 0 {
		f = nil // no _id condition
	}
	for range rnd.IntN(4) {
		field := pick(rnd, diffFields)
		if rnd.IntN(4) > 0 {
			// Usually compare with the value a document holds, so that
			// filters match about as often as not.
			if d := pick(rnd, docs); len(d) > 1 {
				e := d[1+rnd.IntN(len(d)-1)]
				if e.Key != "sub" {
					field = e.Key
				}
			}
		}
		v := pick(rnd, diffValues)
		for _, d := range docs {
			for _, e := range d {
				if e.Key == field && rnd.IntN(2) == 0 {
					v = e.Value
				}
			}
		}
		var cond any
		switch rnd.IntN(14) {
		case 0, 1, 2, 3:
			cond = v
		case 4:
			cond = bson.D{{Key: "$eq", Value: v}}
		case 5:
			cond = bson.D{{Key: "$ne", Value: v}}
		case 6:
			cond = bson.D{{Key: "$in", Value: bson.A{v, pick(rnd, diffValues)}}}
		case 7:
			cond = bson.D{{Key: "$exists", Value: rnd.IntN(2) == 0}}
		case 8:
			cond = bson.D{{Key: "$exists", Value: rnd.IntN(2) == 0}, {Key: "$ne", Value: v}}
		case 9: // near misses below
			cond = bson.D{{Key: "$gt", Value: v}}
		case 10:
			cond = bson.D{{Key: "$exists", Value: int32(rnd.IntN(2))}}
		case 11:
			cond = bson.D{}
		case 12:
			field = "sub.k"
			cond = v
		default:
			field = "$or"
			cond = bson.A{bson.D{{Key: "version", Value: v}}}
		}
		f = append(f, bson.E{Key: field, Value: cond})
	}
	return f
}

// genDiffUpdate returns an update document: usually the services' $set and
// $inc, sometimes a replacement, or one FerretDB rejects.
func genDiffUpdate(rnd *rand.Rand) any {
	switch rnd.IntN(10) {
	case 0:
		return bson.D{{Key: "version", Value: int32(9)}, {Key: "status", Value: "replaced"}}
	case 1:
		return bson.D{{Key: "$set", Value: bson.D{{Key: "sub.k", Value: 1}}}, {Key: "$unset", Value: bson.D{{Key: "sub", Value: ""}}}}
	case 2:
		return bson.D{{Key: "$inc", Value: bson.D{{Key: "status", Value: int32(1)}}}} // fails on a string
	case 3:
		return bson.D{{Key: "$unset", Value: bson.D{{Key: "owner", Value: ""}}}}
	case 4:
		return bson.D{{Key: "$frobnicate", Value: bson.D{{Key: "x", Value: 1}}}}
	case 5:
		return bson.D{}
	case 6:
		return bson.D{{Key: "$set", Value: bson.D{{Key: "flag", Value: pick(rnd, diffValues)}}}}
	}
	return bson.D{
		{Key: "$set", Value: bson.D{{Key: "status", Value: "done"}, {Key: "version", Value: int32(rnd.IntN(5))}}},
		{Key: "$inc", Value: bson.D{{Key: "n", Value: int32(1)}}},
	}
}

// diffStores is the pair of stores the cases run on.
type diffStores struct {
	fast, slow         *mongo.Database
	fastSrv, slowSrv   *ferretembed.Server
	fastColl, slowColl *mongo.Collection
}

func startDiffStores(tb testing.TB) *diffStores {
	tb.Helper()
	fastURI, fastSrv := mongotest.Start(tb)
	slowURI, slowSrv := mongotest.Start(tb)
	slowSrv.SetFastPath(false)
	s := &diffStores{
		fast: mongotest.Client(tb, fastURI).Database("app"), slow: mongotest.Client(tb, slowURI).Database("app"),
		fastSrv: fastSrv, slowSrv: slowSrv,
	}
	s.fastColl, s.slowColl = s.fast.Collection("docs"), s.slow.Collection("docs")
	ctx := context.Background()
	for _, srv := range []*ferretembed.Server{fastSrv, slowSrv} {
		if err := srv.EnsureIDIndex(ctx, "app", "docs"); err != nil {
			tb.Fatal(err)
		}
	}
	return s
}

// diffOutcome is what a client sees of one case on one store.
type diffOutcome struct {
	Reply string // the raw reply, or the error
	Docs  []bson.D
}

func (s *diffStores) run(ctx context.Context, tb testing.TB, c diffCase) (fast, slow diffOutcome) {
	tb.Helper()
	one := func(db *mongo.Database, coll *mongo.Collection) diffOutcome {
		if _, err := coll.DeleteMany(ctx, bson.D{}); err != nil {
			tb.Fatal(err)
		}
		docs := make([]any, len(c.docs))
		for i, d := range c.docs {
			docs[i] = d
		}
		if _, err := coll.InsertMany(ctx, docs); err != nil {
			tb.Fatal(err)
		}
		var o diffOutcome
		raw, err := db.RunCommand(ctx, c.cmd).Raw()
		if err != nil {
			o.Reply = "error: " + err.Error()
		} else {
			o.Reply = raw.String()
		}
		cur, err := coll.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
		if err != nil {
			tb.Fatal(err)
		}
		if err := cur.All(ctx, &o.Docs); err != nil {
			tb.Fatal(err)
		}
		return o
	}
	return one(s.fast, s.fastColl), one(s.slow, s.slowColl)
}

// check runs the case generated from seed and reports a difference.
func (s *diffStores) check(ctx context.Context, tb testing.TB, seed uint64) {
	tb.Helper()
	c := genDiffCase(rand.New(rand.NewPCG(seed, 0x5eed)))
	fast, slow := s.run(ctx, tb, c)
	// NaN != NaN: compare documents through their extended JSON.
	if diff := cmp.Diff(slow, fast, cmp.Transformer("json", func(d bson.D) string {
		b, err := bson.MarshalExtJSON(d, true, false)
		if err != nil {
			return fmt.Sprint(d)
		}
		return string(b)
	})); diff != "" {
		tb.Errorf("seed %d: documents %v\ncommand %v\nfast path differs from FerretDB (-FerretDB +fast path):\n%s", seed, c.docs, c.cmd, diff)
	}
}

// TestFastPathDifferential runs a fixed set of generated cases and requires
// that each of the fast path's routes was taken.
func TestFastPathDifferential(t *testing.T) {
	ctx := loadContext(t)
	s := startDiffStores(t)
	r0, w0, u0 := s.fastSrv.FastPathStats()
	const cases = 300
	for seed := range uint64(cases) {
		s.check(ctx, t, seed)
	}
	r1, w1, u1 := s.fastSrv.FastPathStats()
	t.Logf("%d cases: the fast path answered %d, rewrote %d and forwarded unchanged %d (others never reached it)",
		cases, r1-r0, w1-w0, u1-u0)
	if r1 == r0 || w1 == w0 || u1 == u0 {
		t.Errorf("a route of the fast path was never taken; the generator needs widening")
	}
	if r, w, u := s.slowSrv.FastPathStats(); r+w+u != 0 {
		t.Errorf("the store with the fast path off used it: %d %d %d", r, w, u)
	}
}

// FuzzFastPathDifferential is TestFastPathDifferential driven by the fuzzer:
// make fuzz runs it for FUZZTIME.
func FuzzFastPathDifferential(f *testing.F) {
	for seed := range uint64(8) {
		f.Add(seed + 1000)
	}
	s := startDiffStores(f)
	f.Fuzz(func(t *testing.T, seed uint64) {
		ctx := testContext(t)
		s.check(ctx, t, seed)
	})
}
