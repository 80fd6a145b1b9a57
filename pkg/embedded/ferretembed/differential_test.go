package ferretembed_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
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
// byte, and the documents afterwards must be the same. Before each write, a
// find by the write's filter goes to both: the proxy's direct finds
// evaluate the same conditions (finddirect.go), and their replies must be
// FerretDB's too.

// diffCase is one generated write and the documents it runs on.
type diffCase struct {
	docs   []bson.D
	cmd    bson.D
	filter bson.D // the write's, also sent as a find
	near   bool   // generated to stray from the fast path's subset
}

var diffOID = bson.ObjectID{0x65, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}

// diffValues are the values documents hold and filters compare with:
// the scalars the fast path compares, numbers of every type with equal and
// unequal values, integers a double cannot hold exactly, and values it must
// not compare (arrays, documents). FerretDB v1 refuses NaN and infinities in
// any message.
var diffValues = []any{
	int32(1), int64(1), 1.0, int32(2), int64(2), 2.5, "1", "pending", "done", "",
	true, false, nil, diffOID, bson.A{int32(1), "x"}, bson.A{}, bson.D{{Key: "k", Value: int32(1)}},
	int64(1<<60 + 1), float64(1 << 60), int64(math.MinInt64), -0.0,
	bson.DateTime(1764547200000), bson.DateTime(1764547200001), int64(1764547200000),
}

// diffScalars are the values of diffValues the fast path compares.
var diffScalars = []any{
	int32(1), int64(1), 1.0, int32(2), int64(2), 2.5, "1", "pending", "done", "",
	true, false, nil, diffOID, bson.DateTime(1764547200000), bson.DateTime(1764547200001), int64(1764547200000),
}

var diffFields = []string{"version", "status", "owner", "flag"}

func pick[T any](rnd *rand.Rand, xs []T) T { return xs[rnd.IntN(len(xs))] }

// genDiffCase generates a case from rnd: half the time one entirely in the
// fast path's subset, otherwise one that may stray from it anywhere.
func genDiffCase(rnd *rand.Rand) diffCase {
	var c diffCase
	g := diffGen{rnd: rnd, near: rnd.IntN(2) == 0}
	c.near = g.near
	values := diffValues
	if !g.near {
		values = diffScalars
	}
	ids := []any{"a", "b", diffOID}
	for _, id := range ids[:1+rnd.IntN(3)] {
		d := bson.D{{Key: "_id", Value: id}}
		for _, f := range diffFields {
			if rnd.IntN(4) > 0 {
				d = append(d, bson.E{Key: f, Value: pick(rnd, values)})
			}
		}
		switch rnd.IntN(8) { // a document for the paths sub.k, or an array or a scalar on their way
		case 0, 1, 2:
			d = append(d, bson.E{Key: "sub", Value: bson.D{{Key: "k", Value: pick(rnd, values)}}})
		case 3:
			d = append(d, bson.E{Key: "sub", Value: bson.D{{Key: "k", Value: pick(rnd, diffValues)}}})
		case 4:
			d = append(d, bson.E{Key: "sub", Value: bson.A{bson.D{{Key: "k", Value: pick(rnd, values)}}}})
		case 5:
			d = append(d, bson.E{Key: "sub", Value: pick(rnd, values)})
		}
		c.docs = append(c.docs, d)
	}
	filter := g.filter(c.docs)
	c.filter = filter
	update := g.update()
	switch rnd.IntN(4) {
	case 0, 1:
		stmt := bson.D{{Key: "q", Value: filter}, {Key: "u", Value: update}}
		stmt = append(stmt, g.optional("upsert", false, true)...)
		stmt = append(stmt, g.optional("multi", false, true)...)
		c.cmd = bson.D{{Key: "update", Value: "docs"}, {Key: "updates", Value: bson.A{stmt}}}
	case 2:
		limit := pick(rnd, []any{int32(1), 1.0, int64(1)})
		if g.miss() {
			limit = int32(0)
		}
		stmt := bson.D{{Key: "q", Value: filter}, {Key: "limit", Value: limit}}
		c.cmd = bson.D{{Key: "delete", Value: "docs"}, {Key: "deletes", Value: bson.A{stmt}}}
	default:
		c.cmd = bson.D{{Key: "findAndModify", Value: "docs"}, {Key: "query", Value: filter}}
		remove := rnd.IntN(3) == 0
		if remove {
			c.cmd = append(c.cmd, bson.E{Key: "remove", Value: true})
		} else {
			c.cmd = append(c.cmd, bson.E{Key: "update", Value: update})
		}
		if !remove || g.miss() {
			c.cmd = append(c.cmd, g.optional("new", true, false)...)
		}
		c.cmd = append(c.cmd, g.optional("upsert", false, true)...)
		if g.miss() { // FerretDB v1 does not implement fields
			c.cmd = append(c.cmd, bson.E{Key: "fields", Value: bson.D{{Key: "status", Value: int32(1)}}})
		}
	}
	if g.miss() { // a field FerretDB does not implement
		c.cmd = append(c.cmd, bson.E{Key: "let", Value: bson.D{{Key: "x", Value: int32(1)}}})
	}
	if rnd.IntN(3) == 0 { // neutral fields
		c.cmd = append(c.cmd, pick(rnd, []bson.E{
			{Key: "comment", Value: "diff"}, {Key: "writeConcern", Value: bson.D{{Key: "w", Value: "majority"}}},
		}))
	}
	if g.miss() { // fields FerretDB refuses for some commands or with some values
		e := pick(rnd, []bson.E{
			{Key: "ordered", Value: true}, {Key: "ordered", Value: int32(1)}, {Key: "maxTimeMS", Value: int32(5000)},
			{Key: "maxTimeMS", Value: int32(-1)}, {Key: "comment", Value: int32(1)}, {Key: "bypassDocumentValidation", Value: true},
		})
		if !slices.ContainsFunc(c.cmd, func(x bson.E) bool { return x.Key == e.Key }) {
			c.cmd = append(c.cmd, e)
		}
	}
	return c
}

// diffGen generates the parts of a case; near: it may stray from the fast
// path's subset.
type diffGen struct {
	rnd  *rand.Rand
	near bool
}

// miss reports whether to take a near miss here.
func (g diffGen) miss() bool { return g.near && g.rnd.IntN(6) == 0 }

func (g diffGen) optional(key string, usual, unusual any) bson.D {
	if g.miss() {
		return bson.D{{Key: key, Value: unusual}}
	}
	if g.rnd.IntN(2) == 0 {
		return bson.D{{Key: key, Value: usual}}
	}
	return nil
}

// filter returns {_id: X, conditions...}, in the fast path's subset unless
// g.near.
func (g diffGen) filter(docs []bson.D) bson.D {
	rnd := g.rnd
	var id any = pick(rnd, []any{"a", "b", diffOID, "missing"})
	if g.miss() {
		id = pick(rnd, []any{int32(1), bson.D{{Key: "$eq", Value: "a"}}})
	}
	f := bson.D{{Key: "_id", Value: id}}
	if g.miss() {
		f = nil // no _id condition
	}
	conds := 1 + rnd.IntN(3)
	if g.miss() {
		conds = 0 // {_id} alone
	}
	values := diffValues
	if !g.near {
		values = diffScalars
	}
	used := map[string]bool{}
	for range conds {
		field := pick(rnd, diffFields)
		if rnd.IntN(5) == 0 {
			field = "sub.k" // a path into an embedded document
		} else if rnd.IntN(4) > 0 {
			// Usually compare with the value a document holds, so that
			// filters match about as often as not.
			if d := pick(rnd, docs); len(d) > 1 {
				e := d[1+rnd.IntN(len(d)-1)]
				if e.Key != "sub" {
					field = e.Key
				}
			}
		}
		if used[field] && !g.near {
			continue // a repeated key is a near miss
		}
		used[field] = true
		v := pick(rnd, values)
		for _, d := range docs {
			for _, e := range d {
				if e.Key == field && rnd.IntN(2) == 0 {
					v = e.Value
				}
				if sub, ok := e.Value.(bson.D); ok && e.Key+".k" == field && len(sub) > 0 && scalarValue(sub[0].Value) && rnd.IntN(2) == 0 {
					v = sub[0].Value
				}
			}
		}
		var cond any
		shapes := 9
		if g.near {
			shapes = 14
		}
		switch rnd.IntN(shapes) {
		case 0, 1, 2, 3:
			cond = v
		case 4:
			cond = bson.D{{Key: "$eq", Value: v}}
		case 5:
			cond = bson.D{{Key: "$ne", Value: v}}
		case 6:
			cond = bson.D{{Key: "$in", Value: bson.A{v, pick(rnd, values)}}}
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
		case 12: // paths the fast path leaves to FerretDB
			field = pick(rnd, []string{"sub.0", "sub.k.z", "sub..k", "_id.k"})
			cond = v
		default:
			field = "$or"
			cond = bson.A{bson.D{{Key: "version", Value: v}}}
		}
		f = append(f, bson.E{Key: field, Value: cond})
	}
	return f
}

// update returns an update document: usually the services' $set and $inc,
// sometimes a replacement, or, if g.near, one FerretDB rejects.
func (g diffGen) update() any {
	rnd := g.rnd
	r := rnd.IntN(10)
	if !g.near && r != 0 && r != 3 && r != 6 {
		r = 9
	}
	switch r {
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

	// routes counts the fast path's routes for cases in its subset and
	// near misses; finds, the finds answered directly and left to FerretDB.
	routes map[bool]map[fastPathOutcome]int64
	finds  map[bool][2]int64
}

func startDiffStores(tb testing.TB) *diffStores {
	tb.Helper()
	fastURI, fastSrv := mongotest.Start(tb)
	slowURI, slowSrv := mongotest.Start(tb)
	slowSrv.SetFastPath(false)
	slowSrv.SetDirect(false) // finds too: FerretDB answers every one
	s := &diffStores{
		fast: mongotest.Client(tb, fastURI).Database("app"), slow: mongotest.Client(tb, slowURI).Database("app"),
		fastSrv: fastSrv, slowSrv: slowSrv,
		routes: map[bool]map[fastPathOutcome]int64{false: {}, true: {}},
		finds:  map[bool][2]int64{},
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
	Found string // the reply to the find by the filter, or the error
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
		a0, f0 := s.fastSrv.DirectFindStats()
		found, err := db.RunCommand(ctx, bson.D{{Key: "find", Value: "docs"}, {Key: "filter", Value: c.filter}}).Raw()
		if a1, f1 := s.fastSrv.DirectFindStats(); db == s.fast {
			n := s.finds[c.near]
			n[0], n[1] = n[0]+a1-a0, n[1]+f1-f0
			s.finds[c.near] = n
		}
		if err != nil {
			o.Found = "error: " + err.Error()
		} else {
			o.Found = found.String()
		}
		r0, w0, u0 := s.fastSrv.FastPathStats()
		raw, err := db.RunCommand(ctx, c.cmd).Raw()
		if r1, w1, u1 := s.fastSrv.FastPathStats(); db == s.fast {
			s.routes[c.near][fastPathOutcome(0)] += r1 - r0
			s.routes[c.near][fastPathOutcome(1)] += w1 - w0
			s.routes[c.near][fastPathOutcome(2)] += u1 - u0
		}
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
	// Compare documents through their extended JSON, which keeps types, and
	// without the ObjectIds each store generates for an upsert.
	fast.Reply, slow.Reply = normalReply(fast.Reply), normalReply(slow.Reply)
	fast.Found, slow.Found = normalReply(fast.Found), normalReply(slow.Found)
	if diff := cmp.Diff(slow, fast, cmp.Transformer("json", func(d bson.D) string {
		b, err := bson.MarshalExtJSON(d, true, false)
		if err != nil {
			return fmt.Sprint(d)
		}
		return generatedOIDs(string(b))
	})); diff != "" {
		tb.Errorf("seed %d: documents %v\ncommand %v\nfast path differs from FerretDB (-FerretDB +fast path):\n%s", seed, c.docs, c.cmd, diff)
	}
}

var (
	oidJSON  = regexp.MustCompile(`"\$oid":\s*"[0-9a-f]{24}"`)
	connAddr = regexp.MustCompile(`connection\(\S+\)`)
)

// normalReply is a reply without generated ObjectIds, or an error without
// the connection's addresses (FerretDB closes the connection on a command it
// cannot parse at all).
func normalReply(s string) string {
	return connAddr.ReplaceAllString(generatedOIDs(s), "connection(…)")
}

// generatedOIDs replaces in s the ObjectIds other than diffOID.
func generatedOIDs(s string) string {
	return oidJSON.ReplaceAllStringFunc(s, func(m string) string {
		if strings.Contains(m, diffOID.Hex()) {
			return m
		}
		return `"$oid": "generated"`
	})
}

// TestFastPathDifferential runs a fixed set of generated cases and requires
// that each of the fast path's routes was taken.
func TestFastPathDifferential(t *testing.T) {
	ctx := loadContext(t)
	s := startDiffStores(t)
	const cases = 200
	for seed := range uint64(cases) {
		s.check(ctx, t, seed)
	}
	t.Logf("%d cases; routes of the fast path, in its subset: %v; near misses: %v (others never reached it); finds answered directly and left to FerretDB, in the subset: %v, near misses: %v",
		cases, s.routes[false], s.routes[true], s.finds[false], s.finds[true])
	for _, r := range []fastPathOutcome{replied, rewritten, unchanged} {
		if s.routes[false][r]+s.routes[true][r] == 0 {
			t.Errorf("the fast path never %v a write; the generator needs widening", r)
		}
	}
	if s.finds[false][0] == 0 || s.finds[true][1] == 0 {
		t.Errorf("finds answered directly in the subset %d, left to FerretDB among near misses %d: the generator needs widening",
			s.finds[false][0], s.finds[true][1])
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

// scalarValue reports whether v is one of the values the fast path
// compares (diffScalars).
func scalarValue(v any) bool {
	for _, x := range diffScalars {
		if fmt.Sprintf("%T %v", x, x) == fmt.Sprintf("%T %v", v, v) {
			return true
		}
	}
	return false
}
