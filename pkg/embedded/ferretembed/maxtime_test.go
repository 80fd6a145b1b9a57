package ferretembed_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
)

// TestReadsStayFreshWhileQueriesTimeOut: finds whose deadline expires
// while FerretDB runs them must not leave a stale read behind. The Go
// driver sends every operation that has a context deadline with maxTimeMS;
// FerretDB v1.24 cancels such a find's context when the time is up, and
// modernc.org/sqlite v1.32 then may drop the statement it has just stepped
// without finalizing it (stmt.query returns ctx.Err() once its interrupt
// goroutine has fired): the pooled SQLite connection keeps an open read
// transaction, so every later read on it sees the database as it was then.
// The proxy strips maxTimeMS, so that FerretDB never cancels a query.
//
// Against FerretDB's own port (Server.InternalURI) the same workload found
// stale and interrupted reads with modernc.org/sqlite v1.32, and finds none
// with v1.62: TestFerretDBReadsStayFreshWhenQueriesTimeOut
// (storefault_test.go, make test-linearizability).
func TestReadsStayFreshWhileQueriesTimeOut(t *testing.T) {
	srv := startInterruptStore(t)
	stale, errs := staleReadsUnderTimeouts(t, srv.URI(), 3*time.Second)
	if stale != 0 {
		t.Fatalf("%d stale reads through the proxy (and %d failed reads)", stale, errs)
	}
	if errs != 0 {
		t.Errorf("%d reads without a deadline problem failed through the proxy", errs)
	}
}

func startInterruptStore(t *testing.T) *ferretembed.Server {
	t.Helper()
	srv, err := ferretembed.Start(testContext(t), ferretembed.Config{Addr: "127.0.0.1:0", Dir: filepath.Join(t.TempDir(), "data")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	if err := srv.EnsureIDIndex(testContext(t), linDB, linColl); err != nil {
		t.Fatal(err)
	}
	return srv
}

// staleReadsUnderTimeouts runs, for d, finds with deadlines of a few
// milliseconds beside a writer that sets v to 1, 2, 3, … and reads each
// value back with a deadline of a minute. It returns how many read-backs
// saw an older value, and how many failed.
func staleReadsUnderTimeouts(t *testing.T, uri string, d time.Duration) (stale, failed int) {
	t.Helper()
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetMaxPoolSize(16))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	coll := client.Database(linDB).Collection(linColl)
	ctx := testContext(t)
	if _, err := coll.DeleteMany(ctx, bson.D{}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "k"}, {Key: "v", Value: 0}}); err != nil {
		t.Fatal(err)
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	for c := range 6 {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(c), uint64(time.Now().UnixNano())))
			for !stop.Load() {
				tctx, cancel := context.WithTimeout(context.Background(), time.Duration(200+rnd.IntN(3000))*time.Microsecond)
				_ = coll.FindOne(tctx, bson.D{{Key: "_id", Value: "k"}}).Err()
				cancel()
			}
		})
	}
	defer func() { stop.Store(true); wg.Wait() }()

	for i, end := 1, time.Now().Add(d); time.Now().Before(end); i++ {
		wctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := coll.UpdateOne(wctx, bson.D{{Key: "_id", Value: "k"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: i}}}})
		cancel()
		if err != nil {
			failed++ // an interrupted or stale-snapshot write: the value stays i-1
			i--
			continue
		}
		for range 3 {
			rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			var doc struct{ V int }
			err := coll.FindOne(rctx, bson.D{{Key: "_id", Value: "k"}}).Decode(&doc)
			cancel()
			switch {
			case errors.Is(err, mongo.ErrNoDocuments):
				stale++
			case err != nil:
				failed++
				t.Logf("read-back of v=%d: %v", i, err)
			case doc.V != i:
				stale++
				t.Logf("read-back of v=%d saw v=%d", i, doc.V)
			}
		}
	}
	return stale, failed
}

// The proxy removes exactly the command's top-level maxTimeMS, whatever its
// type, and keeps the message well-formed.
func TestStripMaxTimeMS(t *testing.T) {
	const checksum = 1
	seq := func(msg []byte) []byte { // a document sequence before the body
		docs := [][]byte{mustMarshal(t, bson.D{{Key: "q", Value: bson.D{{Key: "maxTimeMS", Value: 1}}}})}
		id := []byte("updates\x00")
		size := 4 + len(id) + len(docs[0])
		sec := binary.LittleEndian.AppendUint32([]byte{1}, uint32(size))
		sec = append(append(sec, id...), docs[0]...)
		out := append(append(append([]byte(nil), msg[:20]...), sec...), msg[20:]...)
		binary.LittleEndian.PutUint32(out, uint32(len(out)))
		return out
	}
	for _, tc := range []struct {
		name  string
		flags uint32
		in    bson.D
		want  bson.D // nil: the message is returned as is
		edit  func([]byte) []byte
	}{
		{name: "int64", in: bson.D{{Key: "find", Value: "c"}, {Key: "filter", Value: bson.D{}}, {Key: "maxTimeMS", Value: int64(5)}, {Key: "$db", Value: "d"}},
			want: bson.D{{Key: "find", Value: "c"}, {Key: "filter", Value: bson.D{}}, {Key: "$db", Value: "d"}}},
		{name: "int32 last", in: bson.D{{Key: "update", Value: "c"}, {Key: "$db", Value: "d"}, {Key: "maxTimeMS", Value: int32(7)}},
			want: bson.D{{Key: "update", Value: "c"}, {Key: "$db", Value: "d"}}},
		{name: "double with checksum", flags: checksum, in: bson.D{{Key: "count", Value: "c"}, {Key: "maxTimeMS", Value: 2.5}, {Key: "$db", Value: "d"}},
			want: bson.D{{Key: "count", Value: "c"}, {Key: "$db", Value: "d"}}},
		{name: "nested only", in: bson.D{{Key: "find", Value: "c"}, {Key: "filter", Value: bson.D{{Key: "maxTimeMS", Value: 3}}}, {Key: "$db", Value: "d"}}},
		{name: "none", in: bson.D{{Key: "find", Value: "c"}, {Key: "$db", Value: "d"}}},
		{name: "after a sequence", in: bson.D{{Key: "update", Value: "c"}, {Key: "maxTimeMS", Value: int64(9)}, {Key: "$db", Value: "d"}},
			want: bson.D{{Key: "update", Value: "c"}, {Key: "$db", Value: "d"}}, edit: seq},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := opMsg(t, 42, 0, tc.flags, tc.in)
			if tc.edit != nil {
				msg = tc.edit(msg)
			}
			if tc.flags&checksum != 0 {
				msg = binary.LittleEndian.AppendUint32(msg, 0xdeadbeef)
				binary.LittleEndian.PutUint32(msg, uint32(len(msg)))
			}
			got := ferretembed.StripMaxTimeMS(msg)
			if tc.want == nil {
				if !bytes.Equal(got, msg) {
					t.Fatalf("message changed:\n%x\n%x", msg, got)
				}
				return
			}
			le := binary.LittleEndian
			if int(le.Uint32(got)) != len(got) || le.Uint32(got[4:]) != 42 || le.Uint32(got[16:]) != tc.flags&^checksum {
				t.Fatalf("header: length %d of %d, id %d, flags %d", le.Uint32(got), len(got), le.Uint32(got[4:]), le.Uint32(got[16:]))
			}
			body := got[20:]
			if tc.edit != nil { // skip the sequence, which must be intact
				n := int(le.Uint32(body[1:]))
				if !bytes.Equal(body[:1+n], msg[20:21+n]) {
					t.Fatal("document sequence changed")
				}
				body = body[1+n:]
			}
			if body[0] != 0 || int(le.Uint32(body[1:])) != len(body)-1 {
				t.Fatalf("body section: kind %d, length %d of %d", body[0], le.Uint32(body[1:]), len(body)-1)
			}
			var doc bson.D
			if err := bson.Unmarshal(body[1:], &doc); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(mustMarshal(t, tc.want), mustMarshal(t, doc)); diff != "" {
				t.Errorf("command (-want +got):\n%s", diff)
			}
		})
	}
}

func mustMarshal(t *testing.T, d bson.D) []byte {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
