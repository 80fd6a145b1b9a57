package ferretembed_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
	"github.com/avxrm/rm/pkg/embedded/mongotest"
)

// Optimistic-concurrency load: workers × increments conditional updates on
// one document. Enough that, without the proxy, lost updates show up in
// practically every run even on two cores.
const (
	workers    = 8
	increments = 25
)

// loadContext is testContext with room for the contention tests, which do
// hundreds of retried round trips and run under -race on a shared machine.
func loadContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// incrementAll runs the services' optimistic-concurrency pattern: read the
// version, update conditionally on it, retry when nothing matched. It
// returns the final n and version and how many updates matched.
func incrementAll(ctx context.Context, t *testing.T, coll *mongo.Collection) (n, version, matched int) {
	start := time.Now()
	t.Helper()
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "x"}, {Key: "version", Value: 0}, {Key: "n", Value: 0}}); err != nil {
		t.Fatal(err)
	}
	var total, attempts atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for done := 0; done < increments; {
				var doc struct{ Version int }
				if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "x"}}).Decode(&doc); err != nil {
					errs <- err
					return
				}
				res, err := coll.UpdateOne(ctx,
					bson.D{{Key: "_id", Value: "x"}, {Key: "version", Value: doc.Version}},
					bson.D{
						{Key: "$set", Value: bson.D{{Key: "version", Value: doc.Version + 1}}},
						{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}},
					})
				if err != nil {
					errs <- err
					return
				}
				attempts.Add(1)
				if res.MatchedCount == 1 {
					done++
					total.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("increment: %v", err)
	}
	var doc struct{ N, Version int }
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "x"}}).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d conditional updates in %v", attempts.Load(), time.Since(start).Round(time.Millisecond))
	return doc.N, doc.Version, int(total.Load())
}

func TestConditionalUpdatesThroughProxyLoseNothing(t *testing.T) {
	ctx := loadContext(t)
	uri, _ := mongotest.Start(t)
	coll := mongotest.Client(t, uri).Database("app").Collection("occ")

	n, version, matched := incrementAll(ctx, t, coll)
	const want = workers * increments
	if n != want || version != want || matched != want {
		t.Errorf("through the proxy: n = %d, version = %d, matched updates = %d; want %d each", n, version, matched, want)
	}
}

// TestFerretDBLosesConditionalUpdates pins the FerretDB behaviour the proxy
// exists for: straight to FerretDB, concurrent conditional updates on the
// same version both match. If lost updates stop occurring after a FerretDB
// upgrade, the proxy may be obsolete; a single run without any is logged
// only, since the race is timing-dependent.
func TestFerretDBLosesConditionalUpdates(t *testing.T) {
	ctx := loadContext(t)
	_, srv := mongotest.Start(t)
	coll := mongotest.Client(t, srv.InternalURI()).Database("app").Collection("occ")

	n, version, matched := incrementAll(ctx, t, coll)
	const want = workers * increments
	t.Logf("straight to FerretDB: %d matched updates, n = %d, version = %d: %d lost", matched, n, version, matched-n)
	if n > want || version != n {
		t.Errorf("n = %d, version = %d; want equal and at most %d", n, version, want)
	}
	if matched != want {
		t.Errorf("matched updates = %d; want %d (each worker stops after %d)", matched, want, increments)
	}
	if n == want {
		t.Logf("no lost update in this run")
	}
}

// contend races, for each of docs pending documents, one claimant per
// conditional write kind (findAndModify, update, delete, each conditional on
// status pending) and returns how many documents had more than one winner.
func contend(ctx context.Context, t *testing.T, coll *mongo.Collection, docs, rounds int) (multi int) {
	t.Helper()
	for r := range rounds {
		var seed []any
		for i := range docs {
			seed = append(seed, bson.D{{Key: "_id", Value: fmt.Sprintf("r%d-%d", r, i)}, {Key: "status", Value: "pending"}})
		}
		if _, err := coll.InsertMany(ctx, seed); err != nil {
			t.Fatal(err)
		}
		wins := make([]atomic.Int32, docs)
		var wg sync.WaitGroup
		for i := range docs {
			id := fmt.Sprintf("r%d-%d", r, i)
			pending := bson.D{{Key: "_id", Value: id}, {Key: "status", Value: "pending"}}
			for c := range 2 { // two claimants per kind
				wg.Go(func() {
					owner := bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: "claimed"}, {Key: "owner", Value: c}}}}
					err := coll.FindOneAndUpdate(ctx, pending, owner).Err()
					if err == nil {
						wins[i].Add(1)
					} else if !errors.Is(err, mongo.ErrNoDocuments) {
						t.Errorf("findAndModify %s: %v", id, err)
					}
				})
				wg.Go(func() {
					res, err := coll.UpdateOne(ctx, pending, bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: "running"}}}})
					if err != nil {
						t.Errorf("update %s: %v", id, err)
					} else if res.MatchedCount == 1 {
						wins[i].Add(1)
					}
				})
				wg.Go(func() {
					res, err := coll.DeleteOne(ctx, pending)
					if err != nil {
						t.Errorf("delete %s: %v", id, err)
					} else if res.DeletedCount == 1 {
						wins[i].Add(1)
					}
				})
			}
		}
		wg.Wait()
		for i := range docs {
			switch w := wins[i].Load(); {
			case w == 0:
				t.Errorf("r%d-%d: no claimant won", r, i)
			case w > 1:
				multi++
			}
		}
	}
	return multi
}

func TestConditionalClaimsThroughProxyAreExclusive(t *testing.T) {
	ctx := loadContext(t)
	uri, srv := mongotest.Start(t)
	coll := mongotest.Client(t, uri).Database("app").Collection("claims")
	if multi := contend(ctx, t, coll, 8, 5); multi != 0 {
		t.Errorf("through the proxy %d documents had more than one winner; want 0", multi)
	}

	// For comparison only: the same race straight to FerretDB.
	direct := mongotest.Client(t, srv.InternalURI()).Database("app").Collection("claims_direct")
	t.Logf("straight to FerretDB: %d of 40 documents had more than one winner", contend(ctx, t, direct, 8, 5))
}

// --- Proxy mechanics against a scripted upstream. ---

// fakeUpstream answers every OP_MSG with {ok: 1}, one at a time per
// connection as FerretDB does, except the command "hold", which it answers
// only once the test sends on release. It reports each command it receives,
// with its flags.
type fakeUpstream struct {
	addr    string
	cmds    chan string
	flags   chan uint32
	release chan struct{}
}

func startFakeUpstream(t *testing.T) *fakeUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeUpstream{addr: ln.Addr().String(), cmds: make(chan string, 100), flags: make(chan uint32, 100),
		release: make(chan struct{})}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(stop); ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				for {
					id, flags, doc, err := readMsg(conn)
					if err != nil {
						return
					}
					cmd := doc.Index(0).Key()
					f.cmds <- cmd
					f.flags <- flags
					if cmd == "hold" {
						select {
						case <-f.release:
						case <-stop:
							return
						}
					}
					if _, err := conn.Write(opMsg(t, 0, id, 0, bson.D{{Key: "ok", Value: 1.0}})); err != nil {
						return
					}
				}
			})
		}
	})
	return f
}

// startProxy serves a proxy to upstream and returns its address.
func startProxy(t *testing.T, upstream string, lockTimeout time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ferretembed.StartProxy(ln, upstream, lockTimeout))
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	return conn
}

func opMsg(t *testing.T, id, responseTo int32, flags uint32, doc bson.D) []byte {
	t.Helper()
	body, err := bson.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, 21, 21+len(body))
	le := binary.LittleEndian
	le.PutUint32(msg[0:], uint32(21+len(body)))
	le.PutUint32(msg[4:], uint32(id))
	le.PutUint32(msg[8:], uint32(responseTo))
	le.PutUint32(msg[12:], 2013)
	le.PutUint32(msg[16:], flags)
	return append(msg, body...)
}

// readMsg reads an OP_MSG with a single kind-0 section.
func readMsg(r io.Reader) (id int32, flags uint32, doc bson.Raw, err error) {
	var hdr [21]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, 0, nil, err
	}
	le := binary.LittleEndian
	body := make([]byte, int(le.Uint32(hdr[0:]))-21)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, 0, nil, err
	}
	return int32(le.Uint32(hdr[4:])), le.Uint32(hdr[16:]), body, nil
}

func send(t *testing.T, conn net.Conn, id int32, flags uint32, cmd string) {
	t.Helper()
	if _, err := conn.Write(opMsg(t, id, 0, flags, bson.D{{Key: cmd, Value: 1}, {Key: "$db", Value: "app"}})); err != nil {
		t.Fatalf("send %s: %v", cmd, err)
	}
}

func expectReply(t *testing.T, conn net.Conn, id int32) {
	t.Helper()
	if _, _, _, err := readMsg(conn); err != nil {
		t.Fatalf("reply to %d: %v", id, err)
	}
}

func expectCmd(t *testing.T, f *fakeUpstream, want string) {
	t.Helper()
	select {
	case got := <-f.cmds:
		if got != want {
			t.Fatalf("upstream received %s; want %s", got, want)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("upstream did not receive %s", want)
	}
}

// expectNoCmd checks that nothing reached the upstream for a while. It can
// only miss a bug, never flag a correct proxy.
func expectNoCmd(t *testing.T, f *fakeUpstream) {
	t.Helper()
	select {
	case got := <-f.cmds:
		t.Fatalf("upstream received %s while the write lock was held", got)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestProxyHoldsWriteLockUntilFerretDBReplies(t *testing.T) {
	f := startFakeUpstream(t)
	addr := startProxy(t, f.addr, time.Minute)
	writer, reader, waiter := dial(t, addr), dial(t, addr), dial(t, addr)

	send(t, writer, 1, 0, "hold") // unknown command: a write, answered on release
	expectCmd(t, f, "hold")

	// Reads pass while the write is in progress.
	send(t, reader, 1, 0, "find")
	expectCmd(t, f, "find")
	expectReply(t, reader, 1)

	// Another write waits for it...
	send(t, waiter, 1, 0, "update")
	expectNoCmd(t, f)
	// ...even once the writer has gone (its driver timed out, say), since
	// FerretDB may still apply the write...
	writer.Close()
	expectNoCmd(t, f)
	// ...until FerretDB answers it.
	f.release <- struct{}{}
	expectCmd(t, f, "update")
	expectReply(t, waiter, 1)

	// An answered write releases the lock once its reply is forwarded.
	send(t, waiter, 2, 0, "insert")
	expectCmd(t, f, "insert")
	expectReply(t, waiter, 2)
	send(t, reader, 2, 0, "delete")
	expectCmd(t, f, "delete")
	expectReply(t, reader, 2)
}

// TestProxyHoldsWriteLockForMoreToCome: an unacknowledged write (moreToCome)
// reaches FerretDB as an acknowledged one and holds the lock until FerretDB
// answers; the answer is not passed to the client, which expects none.
func TestProxyHoldsWriteLockForMoreToCome(t *testing.T) {
	f := startFakeUpstream(t)
	addr := startProxy(t, f.addr, time.Minute)
	writer, other := dial(t, addr), dial(t, addr)

	send(t, writer, 1, 2, "hold")
	expectCmd(t, f, "hold")
	if flags := <-f.flags; flags&2 != 0 {
		t.Errorf("FerretDB received flags %#x; want moreToCome cleared", flags)
	}
	send(t, other, 1, 0, "findAndModify")
	expectNoCmd(t, f)
	f.release <- struct{}{}
	expectCmd(t, f, "findAndModify")
	expectReply(t, other, 1)

	// The writer's next reply answers its next command, not the write.
	send(t, writer, 2, 0, "ping")
	expectCmd(t, f, "ping")
	if _, _, _, err := readMsg(writer); err != nil {
		t.Fatal(err)
	}
	_ = writer.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := writer.Read(make([]byte, 1)); err == nil {
		t.Error("a second reply reached the client; want the moreToCome write's reply dropped")
	}
}

// TestProxyWriteLockTimeoutOnlyWarns: a write FerretDB takes long to answer
// keeps the lock past the timeout; the holder gets its reply and the waiter
// goes next.
func TestProxyWriteLockTimeoutOnlyWarns(t *testing.T) {
	f := startFakeUpstream(t)
	addr := startProxy(t, f.addr, 100*time.Millisecond)
	writer, waiter := dial(t, addr), dial(t, addr)

	send(t, writer, 1, 0, "hold")
	expectCmd(t, f, "hold")
	send(t, waiter, 1, 0, "update")
	time.Sleep(300 * time.Millisecond) // three timeouts
	expectNoCmd(t, f)
	f.release <- struct{}{}
	expectReply(t, writer, 1)
	expectCmd(t, f, "update")
	expectReply(t, waiter, 1)
}

func TestProxyRejectsOversizedMessage(t *testing.T) {
	f := startFakeUpstream(t)
	conn := dial(t, startProxy(t, f.addr, time.Minute))
	var hdr [16]byte
	binary.LittleEndian.PutUint32(hdr[0:], ferretembed.MaxMessageSize+1)
	binary.LittleEndian.PutUint32(hdr[12:], 2013)
	if _, err := conn.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after an oversized header succeeded; want the connection closed")
	}
}

func TestClassify(t *testing.T) {
	doc := func(d bson.D) []byte {
		b, err := bson.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	header := func(opCode uint32, rest []byte) []byte {
		msg := make([]byte, 16, 16+len(rest))
		binary.LittleEndian.PutUint32(msg[0:], uint32(16+len(rest)))
		binary.LittleEndian.PutUint32(msg[12:], opCode)
		return append(msg, rest...)
	}
	msg := func(flags uint32, sections ...[]byte) []byte {
		rest := binary.LittleEndian.AppendUint32(nil, flags)
		for _, s := range sections {
			rest = append(rest, s...)
		}
		return header(2013, rest)
	}
	body := func(d bson.D) []byte { return append([]byte{0}, doc(d)...) }
	sequence := func(id string, docs ...bson.D) []byte {
		var payload []byte
		payload = append(append(payload, id...), 0)
		for _, d := range docs {
			payload = append(payload, doc(d)...)
		}
		s := []byte{1}
		s = binary.LittleEndian.AppendUint32(s, uint32(4+len(payload)))
		return append(s, payload...)
	}
	query := func(coll string, d bson.D) []byte {
		rest := binary.LittleEndian.AppendUint32(nil, 0)
		rest = append(append(rest, coll...), 0)
		rest = binary.LittleEndian.AppendUint32(rest, 0)
		rest = binary.LittleEndian.AppendUint32(rest, 0xffffffff)
		return header(2004, append(rest, doc(d)...))
	}
	one := bson.D{{Key: "x", Value: 1}}

	for _, tc := range []struct {
		name             string
		msg              []byte
		cmd              string
		write, moreToCom bool
	}{
		{"find", msg(0, body(bson.D{{Key: "find", Value: "c"}, {Key: "$db", Value: "app"}})), "find", false, false},
		{"update", msg(0, body(bson.D{{Key: "update", Value: "c"}})), "update", true, false},
		{"findAndModify", msg(0, body(bson.D{{Key: "findAndModify", Value: "c"}})), "findAndModify", true, false},
		{"unknown command", msg(0, body(bson.D{{Key: "compact", Value: "c"}})), "compact", true, false},
		{"empty document", msg(0, body(bson.D{})), "", true, false},
		{"sequence before body", msg(0, sequence("documents", one, one), body(bson.D{{Key: "insert", Value: "c"}})), "insert", true, false},
		{"moreToCome", msg(2, body(bson.D{{Key: "delete", Value: "c"}})), "delete", true, true},
		{"checksum", msg(1, body(bson.D{{Key: "ping", Value: 1}}), []byte{1, 2, 3, 4}), "ping", false, false},
		{"aggregate", msg(0, body(bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$match", Value: one}}}}})), "aggregate", false, false},
		{"aggregate $out", msg(0, body(bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$out", Value: "d"}}}}})), "aggregate", true, false},
		{"aggregate $merge", msg(0, body(bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$merge", Value: bson.D{{Key: "into", Value: "d"}}}}}}})), "aggregate", true, false},
		{"legacy hello", query("admin.$cmd", bson.D{{Key: "isMaster", Value: 1}, {Key: "helloOk", Value: true}}), "isMaster", false, false},
		{"legacy wrapped", query("admin.$cmd", bson.D{{Key: "$query", Value: bson.D{{Key: "ismaster", Value: 1}}}}), "ismaster", false, false},
		{"legacy write", query("app.$cmd", bson.D{{Key: "drop", Value: "c"}}), "drop", true, false},
		{"compressed", header(2012, make([]byte, 9)), "", true, false},
		{"truncated section", msg(0, []byte{0, 200, 0, 0, 0, 1}), "", true, false},
		{"truncated query", header(2004, []byte{0, 0, 0, 0, 'a'}), "", true, false},
		{"no sections", msg(0), "", true, false},
	} {
		cmd, write, moreToCome := ferretembed.Classify(tc.msg)
		if cmd != tc.cmd || write != tc.write || moreToCome != tc.moreToCom {
			t.Errorf("%s: Classify = %q, write %v, moreToCome %v; want %q, %v, %v",
				tc.name, cmd, write, moreToCome, tc.cmd, tc.write, tc.moreToCom)
		}
	}
}

// TestProxyServesDriverTraffic covers what the driver does beyond plain
// commands: batched inserts in document sequences, cursors across getMore,
// and a client of its own (EnsureIDIndex) sharing the lock. It also pins
// that FerretDB negotiates no compression, so OP_COMPRESSED, whose command
// the proxy cannot see, never occurs.
func TestProxyServesDriverTraffic(t *testing.T) {
	ctx := testContext(t)
	uri, srv := mongotest.Start(t)
	client := mongotest.Client(t, uri)
	coll := client.Database("app").Collection("traffic")

	hello, err := client.Database("admin").RunCommand(ctx, bson.D{
		{Key: "hello", Value: 1},
		{Key: "compression", Value: bson.A{"zstd", "zlib", "snappy"}},
	}).Raw()
	if err != nil {
		t.Fatalf("hello: %v", err)
	}
	if c, err := hello.LookupErr("compression"); err == nil {
		t.Errorf("hello offers compression %v; the proxy would serialize every compressed message", c)
	}
	if err := srv.EnsureIDIndex(ctx, "app", "traffic"); err != nil {
		t.Fatal(err)
	}
	var docs []any
	for i := range 3000 {
		docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("d%05d", i)}, {Key: "pad", Value: "0123456789abcdef"}})
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatalf("insertMany: %v", err)
	}
	cur, err := coll.Find(ctx, bson.D{}, options.Find().SetBatchSize(100))
	if err != nil {
		t.Fatal(err)
	}
	var got []bson.Raw
	if err := cur.All(ctx, &got); err != nil || len(got) != 3000 {
		t.Fatalf("find = %d documents, %v; want 3000", len(got), err)
	}
}

// TestUnacknowledgedWritesThroughProxy: the Go driver's w:0 writes
// (moreToCome) are applied in order with the lock, and FerretDB's replies to
// them, which the driver does not read, never reach it: on one pooled
// connection every later command gets its own reply.
func TestUnacknowledgedWritesThroughProxy(t *testing.T) {
	ctx := testContext(t)
	uri, _ := mongotest.Start(t)
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetMaxPoolSize(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	coll := client.Database("app").Collection("w0")
	unacked := client.Database("app").Collection("w0", options.Collection().SetWriteConcern(writeconcern.Unacknowledged()))
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "x"}, {Key: "n", Value: 0}}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 20; i++ {
		if _, err := unacked.UpdateOne(ctx, bson.D{{Key: "_id", Value: "x"}, {Key: "n", Value: i - 1}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: i}}}}); err != nil {
			t.Fatalf("w:0 update %d: %v", i, err)
		}
		var doc struct{ N int }
		if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "x"}}).Decode(&doc); err != nil {
			t.Fatalf("find after w:0 update %d: %v", i, err)
		}
		// FerretDB runs one connection's commands in order, so the find
		// sees the update.
		if doc.N != i {
			t.Fatalf("after w:0 update %d: n = %d", i, doc.N)
		}
	}
}
