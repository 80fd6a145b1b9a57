package ferretembed_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
	"github.com/avxrm/rm/pkg/embedded/mongotest"
)

// fastDocs are the documents every semantics case starts from.
var fastDocs = []any{
	bson.D{{Key: "_id", Value: "a"}, {Key: "version", Value: int32(7)}, {Key: "status", Value: "admitted"},
		{Key: "owner", Value: nil}, {Key: "tags", Value: bson.A{"x", "y"}}, {Key: "n", Value: int32(0)}},
	bson.D{{Key: "_id", Value: "b"}, {Key: "version", Value: int64(3)}, {Key: "status", Value: "pending"},
		{Key: "_deleted", Value: true}, {Key: "n", Value: int32(0)}},
	bson.D{{Key: "_id", Value: "c"}, {Key: "version", Value: 2.0}, {Key: "status", Value: "pending"},
		{Key: "n", Value: int32(0)}},
	// Stored types the SQL lookup converts (fastpath_sql.go) or refuses.
	bson.D{{Key: "_id", Value: "d"}, {Key: "ref", Value: fastOID}, {Key: "ratio", Value: 2.5},
		{Key: "big", Value: int64(1) << 40}, {Key: "at", Value: bson.DateTime(1764547200000)}, {Key: "n", Value: int32(0)}},
}

var fastOID = bson.ObjectID{0x65, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}

// fastPathOutcome is what the fast path should do with a filter.
type fastPathOutcome int

const (
	replied   fastPathOutcome = iota // conditions false: answered by the proxy
	rewritten                        // forwarded with {_id: X} (match, or no document)
	unchanged                        // outside the subset: forwarded as is
)

func (o fastPathOutcome) String() string {
	return [...]string{"replied", "rewritten", "unchanged"}[o]
}

type fastCase struct {
	name   string
	filter bson.D
	want   fastPathOutcome
}

func id(v string, rest ...bson.E) bson.D { return append(bson.D{{Key: "_id", Value: v}}, rest...) }

func e(k string, v any) bson.E { return bson.E{Key: k, Value: v} }

func op(name string, v any) bson.D { return bson.D{{Key: name, Value: v}} }

var fastCases = []fastCase{
	{"version match", id("a", e("version", 7)), rewritten},
	{"version mismatch", id("a", e("version", 8)), replied},
	{"version int32 stored, int64 filter", id("a", e("version", int64(7))), rewritten},
	{"version int32 stored, double filter", id("a", e("version", 7.0)), rewritten},
	{"version int64 stored, int32 filter", id("b", e("version", int32(3))), rewritten},
	{"version double stored, int32 filter", id("c", e("version", int32(2))), rewritten},
	{"version string vs number", id("a", e("version", "7")), replied},
	{"status match", id("a", e("status", "admitted")), rewritten},
	{"status mismatch", id("b", e("status", "admitted")), replied},
	{"version and status", id("a", e("version", 7), e("status", "admitted")), rewritten},
	{"version ok, status not", id("a", e("version", 7), e("status", "pending")), replied},
	{"null matches null", id("a", e("owner", nil)), rewritten},
	{"null matches missing", id("b", e("owner", nil)), rewritten},
	{"null vs value", id("a", e("status", nil)), replied},
	{"bool match", id("b", e("_deleted", true)), rewritten},
	{"bool mismatch", id("b", e("_deleted", false)), replied},
	{"bool vs missing", id("a", e("_deleted", false)), replied},
	{"exists false, missing", id("a", e("_deleted", op("$exists", false))), rewritten},
	{"exists false, present", id("b", e("_deleted", op("$exists", false))), replied},
	{"exists true, present", id("b", e("_deleted", op("$exists", true))), rewritten},
	{"exists true, null", id("a", e("owner", op("$exists", true))), rewritten},
	{"exists true, missing", id("c", e("_deleted", op("$exists", true))), replied},
	{"version and exists", id("a", e("version", 3), e("_deleted", op("$exists", false))), replied},
	{"version and exists match", id("b", e("version", 3), e("_deleted", op("$exists", true))), rewritten},
	{"eq", id("a", e("status", op("$eq", "admitted"))), rewritten},
	{"eq null missing", id("c", e("owner", op("$eq", nil))), rewritten},
	{"ne match", id("a", e("status", op("$ne", "done"))), rewritten},
	{"ne mismatch", id("a", e("status", op("$ne", "admitted"))), replied},
	{"ne missing", id("c", e("owner", op("$ne", "x"))), rewritten},
	{"ne null, null", id("a", e("owner", op("$ne", nil))), replied},
	{"ne null, missing", id("b", e("owner", op("$ne", nil))), replied},
	{"ne null, value", id("b", e("status", op("$ne", nil))), rewritten},
	{"ne numeric", id("b", e("version", op("$ne", 3.0))), replied},
	{"in match", id("a", e("status", op("$in", bson.A{"pending", "admitted"}))), rewritten},
	{"in mismatch", id("b", e("status", op("$in", bson.A{"admitted", "done"}))), replied},
	{"in empty", id("b", e("status", op("$in", bson.A{}))), replied},
	{"in null, missing", id("b", e("owner", op("$in", bson.A{nil}))), rewritten},
	{"in numeric", id("c", e("version", op("$in", bson.A{int64(1), int32(2)}))), rewritten},
	{"two operators", id("a", e("version", bson.D{{Key: "$ne", Value: 3}, {Key: "$exists", Value: true}})), rewritten},
	{"objectId match", id("d", e("ref", fastOID)), rewritten},
	{"objectId mismatch", id("d", e("ref", bson.ObjectID{1})), replied},
	{"objectId vs its hex", id("d", e("ref", fastOID.Hex())), replied},
	{"fraction match", id("d", e("ratio", 2.5)), rewritten},
	{"fraction vs whole", id("d", e("ratio", int32(2))), replied},
	{"large int64 match", id("d", e("big", int64(1)<<40)), rewritten},
	{"large int64 as double", id("d", e("big", float64(int64(1)<<40))), rewritten},
	{"large int64 mismatch", id("d", e("big", int64(1)<<40+1)), replied},
	{"date match", id("d", e("at", bson.DateTime(1764547200000))), rewritten},
	{"date mismatch", id("d", e("at", bson.DateTime(1764547200001))), replied},
	{"date vs its milliseconds", id("d", e("at", int64(1764547200000))), replied},
	{"date in", id("d", e("at", op("$in", bson.A{bson.DateTime(1), bson.DateTime(1764547200000)}))), rewritten},
	{"date ne", id("d", e("at", op("$ne", bson.DateTime(1764547200000)))), replied},
	{"document missing", id("zzz", e("version", 1)), rewritten},
	{"document missing, exists false", id("zzz", e("_deleted", op("$exists", false))), rewritten},
	{"array field falls back", id("a", e("tags", "x")), unchanged},
	{"array field ne falls back", id("a", e("tags", op("$ne", "z"))), unchanged},
	{"dotted path falls back", id("a", e("tags.0", "x")), unchanged},
	{"gt falls back", id("a", e("version", op("$gt", 5))), unchanged},
	{"document value falls back", id("a", e("owner", bson.D{{Key: "k", Value: 1}})), unchanged},
	{"or falls back", id("a", e("$or", bson.A{bson.D{{Key: "version", Value: 7}}})), unchanged},
	{"_id alone unchanged", id("a"), unchanged},
}

// fastResult is everything a client can observe of one operation.
type fastResult struct {
	Matched, Modified, Deleted int64
	Doc                        bson.D
	Err                        string
	Final                      []bson.D
}

type fastOp struct {
	name string
	run  func(ctx context.Context, coll *mongo.Collection, filter bson.D) (fastResult, error)
}

var setDone = bson.D{
	{Key: "$set", Value: bson.D{{Key: "status", Value: "done"}}},
	{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}},
}

func findOneAnd(sr *mongo.SingleResult) (fastResult, error) {
	var r fastResult
	if err := sr.Err(); errors.Is(err, mongo.ErrNoDocuments) {
		r.Err = err.Error()
		return r, nil
	} else if err != nil {
		return r, err
	}
	return r, sr.Decode(&r.Doc)
}

var fastOps = []fastOp{
	{"updateOne", func(ctx context.Context, coll *mongo.Collection, filter bson.D) (fastResult, error) {
		res, err := coll.UpdateOne(ctx, filter, setDone)
		if err != nil {
			return fastResult{}, err
		}
		return fastResult{Matched: res.MatchedCount, Modified: res.ModifiedCount}, nil
	}},
	{"updateOne no-op", func(ctx context.Context, coll *mongo.Collection, filter bson.D) (fastResult, error) {
		res, err := coll.UpdateOne(ctx, filter, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: int32(0)}}}})
		if err != nil {
			return fastResult{}, err
		}
		return fastResult{Matched: res.MatchedCount, Modified: res.ModifiedCount}, nil
	}},
	{"deleteOne", func(ctx context.Context, coll *mongo.Collection, filter bson.D) (fastResult, error) {
		res, err := coll.DeleteOne(ctx, filter)
		if err != nil {
			return fastResult{}, err
		}
		return fastResult{Deleted: res.DeletedCount}, nil
	}},
	{"findOneAndUpdate before", func(ctx context.Context, coll *mongo.Collection, filter bson.D) (fastResult, error) {
		return findOneAnd(coll.FindOneAndUpdate(ctx, filter, setDone))
	}},
	{"findOneAndUpdate after", func(ctx context.Context, coll *mongo.Collection, filter bson.D) (fastResult, error) {
		return findOneAnd(coll.FindOneAndUpdate(ctx, filter, setDone,
			options.FindOneAndUpdate().SetReturnDocument(options.After)))
	}},
	{"findOneAndDelete", func(ctx context.Context, coll *mongo.Collection, filter bson.D) (fastResult, error) {
		return findOneAnd(coll.FindOneAndDelete(ctx, filter))
	}},
}

// runFastCase reseeds coll, runs op with the fast path on or off and returns
// the result with the final contents.
func runFastCase(ctx context.Context, t *testing.T, srv *ferretembed.Server, coll *mongo.Collection,
	fo fastOp, filter bson.D, fast bool,
) fastResult {
	t.Helper()
	srv.SetFastPath(false)
	if _, err := coll.DeleteMany(ctx, bson.D{}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.InsertMany(ctx, fastDocs); err != nil {
		t.Fatal(err)
	}
	srv.SetFastPath(fast)
	r, err := fo.run(ctx, coll, filter)
	srv.SetFastPath(true)
	if err != nil {
		r.Err = "error: " + err.Error()
	}
	cur, err := coll.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		t.Fatal(err)
	}
	if err := cur.All(ctx, &r.Final); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestFastPathMatchesFerretDB runs every operation with every filter twice,
// through the fast path and with it off (FerretDB evaluating the filter), on
// identical collections, and requires identical results, returned documents
// and final contents, and that the fast path took the expected route.
func TestFastPathMatchesFerretDB(t *testing.T) {
	ctx := loadContext(t)
	uri, srv := mongotest.Start(t)
	db := mongotest.Client(t, uri).Database("app")
	fastColl, slowColl := db.Collection("fast"), db.Collection("slow")
	for _, name := range []string{"fast", "slow"} {
		if err := srv.EnsureIDIndex(ctx, "app", name); err != nil {
			t.Fatal(err)
		}
	}
	for _, fo := range fastOps {
		for _, tc := range fastCases {
			t.Run(fo.name+"/"+tc.name, func(t *testing.T) {
				slow := runFastCase(ctx, t, srv, slowColl, fo, tc.filter, false)
				r0, w0, u0 := srv.FastPathStats()
				fast := runFastCase(ctx, t, srv, fastColl, fo, tc.filter, true)
				r1, w1, u1 := srv.FastPathStats()
				if diff := cmp.Diff(slow, fast); diff != "" {
					t.Errorf("filter %v: fast path differs from FerretDB (-slow +fast):\n%s", tc.filter, diff)
				}
				got := map[fastPathOutcome]int64{replied: r1 - r0, rewritten: w1 - w0, unchanged: u1 - u0}
				want := map[fastPathOutcome]int64{replied: 0, rewritten: 0, unchanged: 0}
				want[tc.want] = 1
				if !cmp.Equal(got, want) {
					t.Errorf("filter %v: fast path routes %v; want %v", tc.filter, got, tc.want)
				}
			})
		}
	}
	// The lookups went to SQLite (fastpath_sql.go) wherever the document
	// existed; FerretDB's find answered the rest.
	answered, fellBack := srv.FastPathSQLLookups()
	t.Logf("lookups answered from SQLite: %d, by FerretDB's find: %d", answered, fellBack)
	if answered == 0 {
		t.Error("no lookup was answered from SQLite")
	}
}

// TestFastPathNoMatchRepliesAreFerretDBs compares, byte for byte, the replies
// the proxy makes up for non-matching conditional writes with FerretDB's own
// replies to the same commands. The commands carry their statements in the
// body (kind 0); the driver's UpdateOne and DeleteOne above send document
// sequences (kind 1).
func TestFastPathNoMatchRepliesAreFerretDBs(t *testing.T) {
	ctx := testContext(t)
	uri, srv := mongotest.Start(t)
	proxied := mongotest.Client(t, uri).Database("app")
	direct := mongotest.Client(t, srv.InternalURI()).Database("app")
	if _, err := proxied.Collection("jobs").InsertOne(ctx, bson.D{{Key: "_id", Value: "j"}, {Key: "version", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	stale := bson.D{{Key: "_id", Value: "j"}, {Key: "version", Value: 2}}
	update := bson.D{{Key: "$set", Value: bson.D{{Key: "version", Value: 3}}}}
	cmds := map[string]bson.D{
		"update": {{Key: "update", Value: "jobs"}, {Key: "updates", Value: bson.A{
			bson.D{{Key: "q", Value: stale}, {Key: "u", Value: update}, {Key: "upsert", Value: false}, {Key: "multi", Value: false}},
		}}, {Key: "ordered", Value: true}},
		"delete": {{Key: "delete", Value: "jobs"}, {Key: "deletes", Value: bson.A{
			bson.D{{Key: "q", Value: stale}, {Key: "limit", Value: 1}},
		}}},
		"findAndModify update": {{Key: "findAndModify", Value: "jobs"}, {Key: "query", Value: stale},
			{Key: "update", Value: update}, {Key: "new", Value: true}},
		"findAndModify remove": {{Key: "findAndModify", Value: "jobs"}, {Key: "query", Value: stale},
			{Key: "remove", Value: true}},
	}
	for name, cmd := range cmds {
		t.Run(name, func(t *testing.T) {
			want, err := direct.RunCommand(ctx, cmd).Raw()
			if err != nil {
				t.Fatal(err)
			}
			r0, _, _ := srv.FastPathStats()
			got, err := proxied.RunCommand(ctx, cmd).Raw()
			if err != nil {
				t.Fatal(err)
			}
			if r1, _, _ := srv.FastPathStats(); r1 != r0+1 {
				t.Errorf("the proxy did not answer %s itself", name)
			}
			if string(got) != string(want) {
				t.Errorf("reply\n got %v\nwant %v (FerretDB's)", got, want)
			}
		})
	}
	var doc bson.D
	if err := proxied.Collection("jobs").FindOne(ctx, bson.D{}).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if want := (bson.D{{Key: "_id", Value: "j"}, {Key: "version", Value: int32(1)}}); !cmp.Equal(doc, want) {
		t.Errorf("document = %v; want %v unchanged", doc, want)
	}
}

// BenchmarkConditionalUpdate measures the services' optimistic-concurrency
// write, updateOne({_id, version}), through the proxy with the fast path on
// and off, on collections with EnsureIDIndex. Off, FerretDB scans and decodes
// the collection; on, the cost should not grow with its size.
//
//	go test -run '^$' -bench BenchmarkConditionalUpdate -benchtime 20x ./ferretembed/
func BenchmarkConditionalUpdate(b *testing.B) {
	for _, docs := range []int{1_000, 20_000} {
		b.Run(fmt.Sprintf("docs=%d", docs), func(b *testing.B) {
			ctx := context.Background()
			uri, srv := mongotest.Start(b)
			db := mongotest.Client(b, uri).Database("bench")
			for _, fast := range []string{"on", "off"} {
				seedVersioned(ctx, b, db.Collection(fast), docs)
				if err := srv.EnsureIDIndex(ctx, "bench", fast); err != nil {
					b.Fatal(err)
				}
			}
			for _, fast := range []string{"on", "off"} {
				// Outside b.Run, whose function runs once per b.N tried.
				versions := make(map[string]int32)
				b.Run("fast="+fast, func(b *testing.B) {
					srv.SetFastPath(fast == "on")
					defer srv.SetFastPath(true)
					coll := db.Collection(fast)
					rnd := rand.New(rand.NewPCG(2, uint64(docs)))
					b.ResetTimer()
					for range b.N {
						id := docID(rnd.IntN(docs))
						v := versions[id]
						res, err := coll.UpdateOne(ctx,
							bson.D{{Key: "_id", Value: id}, {Key: "version", Value: v}},
							bson.D{{Key: "$set", Value: bson.D{{Key: "version", Value: v + 1}}}})
						if err != nil || res.MatchedCount != 1 {
							b.Fatalf("UpdateOne(%s, version %d) = %+v, %v", id, v, res, err)
						}
						versions[id] = v + 1
					}
				})
			}
		})
	}
}

// BenchmarkConditionsBesideID: the services' reads and writes by _id with
// conditions FerretDB does not push down to SQLite, on collections of 1,000
// and 20,000 documents: the export service's claim renewal (a path into the
// claim, "claim.owner") and a read of 100 documents by _id with the
// tombstone and the readable queues beside (how a submission's
// dependencies were read).
//
//	go test -run '^$' -bench BenchmarkConditionsBesideID -benchtime 20x ./ferretembed/
func BenchmarkConditionsBesideID(b *testing.B) {
	for _, docs := range []int{1_000, 20_000} {
		b.Run(fmt.Sprintf("docs=%d", docs), func(b *testing.B) {
			ctx := context.Background()
			uri, srv := mongotest.Start(b)
			coll := mongotest.Client(b, uri).Database("bench").Collection("c")
			seedVersioned(ctx, b, coll, docs, bson.E{Key: "claim", Value: bson.D{{Key: "owner", Value: "builder-1"}, {Key: "until", Value: time.Now()}}})
			if err := srv.EnsureIDIndex(ctx, "bench", "c"); err != nil {
				b.Fatal(err)
			}
			rnd := rand.New(rand.NewPCG(3, uint64(docs)))
			b.Run("renew claim.owner", func(b *testing.B) {
				versions := make(map[string]int32)
				for range b.N {
					id := docID(rnd.IntN(docs))
					v := versions[id]
					res, err := coll.UpdateOne(ctx,
						bson.D{{Key: "_id", Value: id}, {Key: "version", Value: v}, {Key: "claim.owner", Value: "builder-1"}},
						bson.D{{Key: "$set", Value: bson.D{{Key: "claim.until", Value: time.Now()}, {Key: "version", Value: v + 1}}}})
					if err != nil || res.MatchedCount != 1 {
						b.Fatalf("UpdateOne(%s, version %d) = %+v, %v", id, v, res, err)
					}
					versions[id] = v + 1
				}
			})
			b.Run("100 by _id, tombstone, queue", func(b *testing.B) {
				for range b.N {
					ids := make(bson.A, 100)
					for i := range ids {
						ids[i] = docID(rnd.IntN(docs))
					}
					cur, err := coll.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}},
						{Key: "_deleted", Value: bson.D{{Key: "$exists", Value: false}}},
						{Key: "queue", Value: bson.D{{Key: "$in", Value: bson.A{"Default", "other"}}}}})
					var got []bson.Raw
					if err != nil || cur.All(ctx, &got) != nil || len(got) == 0 {
						b.Fatalf("find: %v, %d documents", err, len(got))
					}
				}
			})
		})
	}
}

// seedVersioned inserts n job-like documents at version 0, with extra
// fields.
func seedVersioned(ctx context.Context, b *testing.B, coll *mongo.Collection, n int, extra ...bson.E) {
	b.Helper()
	const batch = 1_000
	payload := strings.Repeat("x", 200)
	for start := 0; start < n; start += batch {
		docs := make([]any, 0, batch)
		for i := start; i < min(start+batch, n); i++ {
			docs = append(docs, append(bson.D{
				{Key: "_id", Value: docID(i)},
				{Key: "version", Value: int32(0)},
				{Key: "status", Value: "pending"},
				{Key: "queue", Value: "Default"},
				{Key: "payload", Value: payload},
			}, extra...))
		}
		if _, err := coll.InsertMany(ctx, docs); err != nil {
			b.Fatalf("seed %s: %v", coll.Name(), err)
		}
	}
}

// TestFastPathRewritesWireMessages sends matching conditional writes as raw
// OP_MSGs with a checksum, with the statement in the body and in a document
// sequence, and checks that the rewritten commands (filter {_id: X}, lengths
// recomputed, checksum dropped) are accepted and applied.
func TestFastPathRewritesWireMessages(t *testing.T) {
	ctx := testContext(t)
	uri, srv := mongotest.Start(t)
	coll := mongotest.Client(t, uri).Database("app").Collection("jobs")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "j"}, {Key: "version", Value: int32(0)}}); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	conn := dial(t, u.Host)

	marshal := func(d bson.D) []byte {
		b, err := bson.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	filter := func(v int) bson.D { return bson.D{{Key: "_id", Value: "j"}, {Key: "version", Value: v}} }
	bump := func(v int) bson.D {
		return bson.D{{Key: "$set", Value: bson.D{{Key: "version", Value: v + 1}}}}
	}
	// message assembles an OP_MSG with a body, optional document sequence
	// and a CRC-32C checksum.
	message := func(id int32, body bson.D, seqID string, seq bson.D) []byte {
		le := binary.LittleEndian
		msg := make([]byte, 20, 256)
		le.PutUint32(msg[4:], uint32(id))
		le.PutUint32(msg[12:], 2013)
		le.PutUint32(msg[16:], 1) // checksumPresent
		msg = append(msg, 0)
		msg = append(msg, marshal(body)...)
		if seqID != "" {
			doc := marshal(seq)
			msg = append(msg, 1)
			msg = le.AppendUint32(msg, uint32(4+len(seqID)+1+len(doc)))
			msg = append(msg, seqID...)
			msg = append(msg, 0)
			msg = append(msg, doc...)
		}
		le.PutUint32(msg[0:], uint32(len(msg)+4))
		return le.AppendUint32(msg, crc32.Checksum(msg, crc32.MakeTable(crc32.Castagnoli)))
	}
	cases := []struct {
		name string
		msg  func(v int) []byte
		want func(v int) bson.D
	}{
		{"update in body", func(v int) []byte {
			return message(1, bson.D{{Key: "update", Value: "jobs"}, {Key: "updates", Value: bson.A{
				bson.D{{Key: "q", Value: filter(v)}, {Key: "u", Value: bump(v)}},
			}}, {Key: "ordered", Value: true}, {Key: "$db", Value: "app"}}, "", nil)
		}, func(int) bson.D {
			return bson.D{{Key: "n", Value: int32(1)}, {Key: "nModified", Value: int32(1)}, {Key: "ok", Value: 1.0}}
		}},
		{"update in document sequence", func(v int) []byte {
			return message(2, bson.D{{Key: "update", Value: "jobs"}, {Key: "ordered", Value: true}, {Key: "$db", Value: "app"}},
				"updates", bson.D{{Key: "q", Value: filter(v)}, {Key: "u", Value: bump(v)}, {Key: "multi", Value: false}})
		}, func(int) bson.D {
			return bson.D{{Key: "n", Value: int32(1)}, {Key: "nModified", Value: int32(1)}, {Key: "ok", Value: 1.0}}
		}},
		{"findAndModify", func(v int) []byte {
			return message(3, bson.D{{Key: "findAndModify", Value: "jobs"}, {Key: "query", Value: filter(v)},
				{Key: "update", Value: bump(v)}, {Key: "new", Value: true}, {Key: "$db", Value: "app"}}, "", nil)
		}, func(v int) bson.D {
			return bson.D{
				{Key: "lastErrorObject", Value: bson.D{{Key: "n", Value: int32(1)}, {Key: "updatedExisting", Value: true}}},
				{Key: "value", Value: bson.D{{Key: "_id", Value: "j"}, {Key: "version", Value: int32(v + 1)}}},
				{Key: "ok", Value: 1.0},
			}
		}},
	}
	for v, tc := range cases {
		_, w0, _ := srv.FastPathStats()
		if _, err := conn.Write(tc.msg(v)); err != nil {
			t.Fatal(err)
		}
		_, _, raw, err := readMsg(conn)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var got bson.D
		if err := bson.Unmarshal(raw, &got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want(v), got); diff != "" {
			t.Errorf("%s: reply (-want +got):\n%s", tc.name, diff)
		}
		if _, w1, _ := srv.FastPathStats(); w1 != w0+1 {
			t.Errorf("%s: not rewritten", tc.name)
		}
	}
	var doc bson.D
	if err := coll.FindOne(ctx, bson.D{}).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if want := (bson.D{{Key: "_id", Value: "j"}, {Key: "version", Value: int32(len(cases))}}); !cmp.Equal(doc, want) {
		t.Errorf("document = %v; want %v", doc, want)
	}
}

// TestFastPathLeavesInvalidUpdatesToFerretDB checks that an update FerretDB
// rejects whether or not anything matches is not answered with "nothing
// matched" by the fast path, but reaches FerretDB, which fails it.
func TestFastPathLeavesInvalidUpdatesToFerretDB(t *testing.T) {
	ctx := testContext(t)
	uri, srv := mongotest.Start(t)
	coll := mongotest.Client(t, uri).Database("app").Collection("jobs")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "j"}, {Key: "version", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	stale := bson.D{{Key: "_id", Value: "j"}, {Key: "version", Value: 2}}
	conflict := bson.D{
		{Key: "$set", Value: bson.D{{Key: "a.b", Value: 1}}},
		{Key: "$unset", Value: bson.D{{Key: "a", Value: ""}}},
	}
	errText := func(fast bool) string {
		srv.SetFastPath(fast)
		defer srv.SetFastPath(true)
		err := coll.FindOneAndUpdate(ctx, stale, conflict).Err()
		if err == nil {
			return "<nil>"
		}
		return err.Error()
	}
	slow := errText(false)
	_, _, u0 := srv.FastPathStats()
	fast := errText(true)
	if _, _, u1 := srv.FastPathStats(); u1 != u0+1 {
		t.Errorf("conflicting update not forwarded unchanged")
	}
	if fast != slow {
		t.Errorf("findAndModify with a conflicting update: %q through the fast path, %q from FerretDB", fast, slow)
	}
	t.Logf("FerretDB: %s", slow)
}
