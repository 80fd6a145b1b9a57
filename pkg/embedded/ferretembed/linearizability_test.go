package ferretembed_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
)

// The linearizability check: concurrent clients do the services' kind of
// writes (inserts, updates and deletes conditioned on a version) on a few
// documents through the proxy while the store restarts, and porcupine checks
// every history against a sequential model of one versioned document.

const (
	linClients = 8
	linDB      = "lin"
	linColl    = "docs"
)

type linKind int

const (
	linRead          linKind = iota // find {_id}
	linInsert                       // insertOne {_id, version: 1, val}
	linUpdate                       // updateOne {_id, version} {$set: {version+1, val}}
	linFindAndUpdate                // findOneAndUpdate, same, returning the document before
	linDelete                       // deleteOne {_id, version}
	linFindAndDelete                // findOneAndDelete {_id, version}
	linReplace                      // replaceOne {_id, version} {version+1, val}: the services' write of a job, which the proxy makes in SQL
)

var linKindNames = [...]string{"read", "insert", "update", "findAndUpdate", "delete", "findAndDelete", "replace"}

// linInput is one operation on document key.
type linInput struct {
	kind linKind
	key  string
	ver  int // the version the write is conditioned on
	val  int // the value an insert or update writes; unique per history
	w0   bool
}

// linOutput is what the client saw. unknown: the operation may or may not
// have taken effect (an error, a timeout, an unacknowledged write, the store
// restarting); its return time is then infinite, so porcupine may place it
// anywhere after its call, including after everything else, where it has no
// visible effect.
type linOutput struct {
	unknown bool
	unsent  bool // the driver says it never sent the write: it is left out
	ok      bool // insert: inserted; update, delete: matched
	found   bool // read, findAnd*: a document came back
	ver     int  // of that document
	val     int
}

// linDoc is the model's state of one document.
type linDoc struct {
	exists   bool
	ver, val int
}

// linApply is the sequential specification: the next state and what the
// operation returns.
func linApply(s linDoc, in linInput) (next linDoc, out linOutput) {
	match := s.exists && s.ver == in.ver
	switch in.kind {
	case linRead:
		return s, linOutput{found: s.exists, ver: s.ver, val: s.val}
	case linInsert:
		if s.exists {
			return s, linOutput{}
		}
		return linDoc{exists: true, ver: 1, val: in.val}, linOutput{ok: true}
	case linUpdate, linFindAndUpdate, linReplace:
		out := linOutput{ok: match}
		if in.kind == linFindAndUpdate && match {
			out = linOutput{ok: true, found: true, ver: s.ver, val: s.val}
		}
		if match {
			return linDoc{exists: true, ver: in.ver + 1, val: in.val}, out
		}
		return s, out
	default: // linDelete, linFindAndDelete
		out := linOutput{ok: match}
		if in.kind == linFindAndDelete && match {
			out = linOutput{ok: true, found: true, ver: s.ver, val: s.val}
		}
		if match {
			return linDoc{}, out
		}
		return s, out
	}
}

var linModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(linInput).key
			if byKey[k] == nil {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return linDoc{} },
	Step: func(state, input, output any) (bool, any) {
		in, got := input.(linInput), output.(linOutput)
		next, want := linApply(state.(linDoc), in)
		if got.unknown {
			return true, next
		}
		return got == want, next
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		s := fmt.Sprintf("%s(%s v%d val %d)", linKindNames[in.kind], in.key, in.ver, in.val)
		if in.w0 {
			s += " w:0"
		}
		switch {
		case out.unknown:
			return s + " -> ?"
		case out.found:
			return fmt.Sprintf("%s -> %v {v%d val %d}", s, out.ok, out.ver, out.val)
		}
		return fmt.Sprintf("%s -> %v", s, out.ok)
	},
	DescribeState: func(state any) string {
		s := state.(linDoc)
		if !s.exists {
			return "absent"
		}
		return fmt.Sprintf("v%d val %d", s.ver, s.val)
	},
}

// linStore is an embedded store on a fixed address and directory that the
// test restarts.
type linStore struct {
	t         *testing.T
	addr, dir string
	broken    int32 // ferretembed.Lock*

	mu  sync.Mutex
	srv *ferretembed.Server
	// The direct writes and their commits of the servers restarted away:
	// the check's coverage counts the whole run, not only its last part.
	directBefore, commitsBefore int64
}

// directTotals are the writes the proxy made in SQL, and their commits,
// over every server of the run.
func (s *linStore) directTotals() (direct, commits int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.srv.WriteStats()
	return s.directBefore + ws.DirectWrites, s.commitsBefore + ws.DirectCommits
}

func startLinStore(t *testing.T, broken int32) *linStore {
	t.Helper()
	s := &linStore{t: t, addr: "127.0.0.1:0", dir: filepath.Join(t.TempDir(), "data"), broken: broken}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(s.srv.URI())
	if err != nil {
		t.Fatal(err)
	}
	s.addr = u.Host // restarts bind the same port, so clients reconnect
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.srv != nil {
			s.srv.Close()
		}
	})
	ctx := testContext(t)
	if err := s.srv.EnsureIDIndex(ctx, linDB, linColl); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *linStore) start() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	for range 50 { // the port may linger for a moment after Close
		var srv *ferretembed.Server
		if srv, err = ferretembed.Start(ctx, ferretembed.Config{Addr: s.addr, Dir: s.dir}); err == nil {
			srv.SetBrokenLock(s.broken)
			s.mu.Lock()
			s.srv = srv
			s.mu.Unlock()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// restart stops the whole store (proxy and FerretDB) and starts it again
// on the same address and data.
func (s *linStore) restart() {
	start := time.Now()
	defer func() { s.t.Logf("store restarted in %v", time.Since(start).Round(time.Millisecond)) }()
	s.mu.Lock()
	s.srv.Close()
	ws := s.srv.WriteStats()
	s.directBefore += ws.DirectWrites
	s.commitsBefore += ws.DirectCommits
	s.srv = nil
	s.mu.Unlock()
	if err := s.start(); err != nil {
		s.t.Errorf("restart: %v", err)
	}
}

// linRun is one run's workload settings.
type linRun struct {
	duration time.Duration // of the workload
	restarts int           // evenly spaced within it
	// One write in unacked is unacknowledged (w:0), one operation in
	// expire gets a deadline that may expire in flight.
	unacked, expire int
	keys            int // documents
}

// linDefault is the workload of TestProxyIsLinearizable.
var linDefault = linRun{duration: 4 * time.Second, restarts: 2, unacked: 25, expire: 25, keys: 3}

// runLinearizability runs the workload against store and returns the
// history and how many operations had an unknown outcome.
func runLinearizability(t *testing.T, store *linStore, run linRun) (history []porcupine.Operation, unknown int) {
	t.Helper()
	var (
		mu    sync.Mutex
		seq   atomic.Int64
		start = time.Now()
	)
	now := func() int64 { return int64(time.Since(start)) }
	record := func(op porcupine.Operation) {
		mu.Lock()
		defer mu.Unlock()
		history = append(history, op)
		if op.Output.(linOutput).unknown {
			unknown++
		}
	}
	stop := time.Now().Add(run.duration)

	var wg sync.WaitGroup
	for c := range linClients {
		client, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + store.addr + "/").
			SetServerSelectionTimeout(10 * time.Second).SetMaxPoolSize(4))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
		coll := client.Database(linDB).Collection(linColl)
		unacked := client.Database(linDB).Collection(linColl,
			options.Collection().SetWriteConcern(writeconcern.Unacknowledged()))
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(c), uint64(start.UnixNano())))
			known := map[string]int{} // the version last read per key
			for time.Now().Before(stop) {
				in := linInput{key: fmt.Sprintf("k%d", rnd.IntN(run.keys)), val: int(seq.Add(1))}
				in.ver = known[in.key]
				if rnd.IntN(8) == 0 { // a stale or future version now and then
					in.ver = max(1, in.ver+rnd.IntN(3)-1)
				}
				switch r := rnd.IntN(100); {
				case r < 15 || in.ver < 0:
					in.kind = linRead
				case r < 25 || in.ver == 0:
					in.kind = linInsert
				case r < 45:
					in.kind = linUpdate
				case r < 70:
					in.kind = linReplace
				case r < 82:
					in.kind = linFindAndUpdate
				case r < 92:
					in.kind = linDelete
				default:
					in.kind = linFindAndDelete
				}
				in.w0 = in.kind != linRead && in.kind != linFindAndUpdate && in.kind != linFindAndDelete && rnd.IntN(run.unacked) == 0
				// A few operations get a deadline short enough to expire
				// in flight: the driver then closes its connection.
				timeout := 5 * time.Second
				if rnd.IntN(run.expire) == 0 {
					timeout = time.Duration(1+rnd.IntN(3000)) * time.Microsecond
				}
				target := coll
				if in.w0 {
					target = unacked
				}
				call := now()
				out := linDo(target, in, timeout)
				ret := now()
				if out.unsent {
					continue // no effect, and no constraint on the others
				}
				if out.unknown {
					if in.kind == linRead {
						continue // an unanswered read tells nothing
					}
					ret = math.MaxInt64
				}
				known[in.key] = linNextKnown(known[in.key], in, out)
				record(porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: ret})
			}
		})
	}
	for i := range run.restarts {
		time.Sleep(time.Until(start.Add(run.duration * time.Duration(i+1) / time.Duration(run.restarts+1))))
		store.restart()
	}
	wg.Wait()
	return history, unknown
}

// linNextKnown is the version a client expects key to have after in
// returned out: what it read or wrote, or -1 (read it again) when the
// outcome or the current version is not known.
func linNextKnown(known int, in linInput, out linOutput) int {
	switch {
	case out.unknown:
		return -1
	case in.kind == linRead && out.found:
		return out.ver
	case in.kind == linRead:
		return 0
	case in.kind == linInsert && out.ok:
		return 1
	case (in.kind == linUpdate || in.kind == linFindAndUpdate || in.kind == linReplace) && out.ok:
		return in.ver + 1
	case (in.kind == linDelete || in.kind == linFindAndDelete) && out.ok:
		return 0
	}
	return -1
}

// linReads counts linDo's reads, to vary their filter.
var linReads atomic.Int64

// linDo performs in and reports what the client saw.
func linDo(coll *mongo.Collection, in linInput, timeout time.Duration) linOutput {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	filter := bson.D{{Key: "_id", Value: in.key}, {Key: "version", Value: in.ver}}
	set := bson.D{{Key: "$set", Value: bson.D{{Key: "version", Value: in.ver + 1}, {Key: "val", Value: in.val}}}}
	var doc struct{ Version, Val int }
	var out linOutput
	var err error
	switch in.kind {
	case linRead:
		// Every other read with a condition beside the _id that every
		// document meets: the proxy answers it by reading the row and
		// evaluating the condition itself (finddirect.go).
		read := bson.D{{Key: "_id", Value: in.key}}
		if linReads.Add(1)%2 == 0 {
			read = append(read, bson.E{Key: "version", Value: bson.D{{Key: "$exists", Value: true}}})
		}
		err = coll.FindOne(ctx, read).Decode(&doc)
		if errors.Is(err, mongo.ErrNoDocuments) {
			return linOutput{}
		}
		out = linOutput{found: true, ver: doc.Version, val: doc.Val}
	case linInsert:
		_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: in.key}, {Key: "version", Value: 1}, {Key: "val", Value: in.val}})
		if mongo.IsDuplicateKeyError(err) {
			return linOutput{}
		}
		out.ok = true
	case linUpdate:
		var res *mongo.UpdateResult
		if res, err = coll.UpdateOne(ctx, filter, set); err == nil {
			out.ok = res.MatchedCount == 1
		}
	case linReplace:
		var res *mongo.UpdateResult
		if res, err = coll.ReplaceOne(ctx, filter, bson.D{{Key: "version", Value: in.ver + 1}, {Key: "val", Value: in.val}}); err == nil {
			out.ok = res.MatchedCount == 1
		}
	case linDelete:
		var res *mongo.DeleteResult
		if res, err = coll.DeleteOne(ctx, filter); err == nil {
			out.ok = res.DeletedCount == 1
		}
	case linFindAndUpdate, linFindAndDelete:
		var r *mongo.SingleResult
		if in.kind == linFindAndUpdate {
			r = coll.FindOneAndUpdate(ctx, filter, set)
		} else {
			r = coll.FindOneAndDelete(ctx, filter)
		}
		err = r.Decode(&doc)
		if errors.Is(err, mongo.ErrNoDocuments) {
			return linOutput{}
		}
		out = linOutput{ok: true, found: true, ver: doc.Version, val: doc.Val}
	}
	if err != nil && notSent(err) {
		return linOutput{unsent: true}
	}
	if err != nil || in.w0 {
		return linOutput{unknown: true}
	}
	return out
}

// notSent reports whether the driver failed an operation before writing it
// to a connection: no server was selected, or the deadline left too little
// time for a round trip ("operation not sent to server"). The driver
// retries no write here (FerretDB is a standalone server, where retryable
// writes are off), so such a write had no effect. Leaving these out of the
// history, rather than keeping them pending forever, keeps porcupine's
// search small: every pending operation may be placed anywhere after its
// call.
func notSent(err error) bool {
	var sel topology.ServerSelectionError
	return errors.Is(err, driver.ErrDeadlineWouldBeExceeded) || errors.As(err, &sel)
}

// checkLinearizable runs porcupine on history.
func checkLinearizable(t *testing.T, history []porcupine.Operation) (porcupine.CheckResult, porcupine.LinearizationInfo) {
	t.Helper()
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(linModel, history, 60*time.Second)
	t.Logf("porcupine: %s in %v", res, time.Since(start).Round(time.Millisecond))
	return res, info
}

// TestProxyIsLinearizable: 8 clients, 3 documents, the whole store restarted
// twice while they run; every history must be linearizable. Run against the
// proxy as it was before the lock was held until FerretDB's reply (commit
// 2673d5d: moreToCome writes released once forwarded, their replies passed on
// to the client, the writes of a client that went away released at once),
// it failed in 4 of 5 runs.
func TestProxyIsLinearizable(t *testing.T) {
	store := startLinStore(t, ferretembed.LockCorrect)
	history, unknown := runLinearizability(t, store, linDefault)
	logHistory(t, history, unknown)
	r, w, u := store.srv.FastPathStats()
	t.Logf("since the last restart the fast path answered %d writes, rewrote %d, forwarded %d unchanged", r, w, u)
	direct, gc := store.directTotals()
	t.Logf("over the whole run (every restart) %d writes went in SQL, in %d commits", direct, gc)
	if direct == 0 || gc == 0 {
		t.Errorf("no write went the direct path (%d) or was group-committed (%d commits): the check did not cover it", direct, gc)
	}
	res, info := checkLinearizable(t, history)
	if res != porcupine.Ok {
		// Not in t.TempDir, which is removed when the test ends.
		if f, err := os.CreateTemp("", "linearizability-*.html"); err == nil {
			if err := porcupine.Visualize(linModel, info, f); err == nil {
				t.Logf("visualization: %s", f.Name())
			}
			f.Close()
		}
		t.Fatalf("history of %d operations is %s; want Ok", len(history), res)
	}
}

func logHistory(t *testing.T, history []porcupine.Operation, unknown int) {
	t.Helper()
	counts := map[string]int{}
	for _, op := range history {
		in, out := op.Input.(linInput), op.Output.(linOutput)
		name := linKindNames[in.kind]
		if !out.unknown && in.kind != linRead && out.ok {
			name += " ok"
		}
		counts[name]++
	}
	t.Logf("%d operations, %d with unknown outcome: %v", len(history), unknown, counts)
}

// TestLinearizabilityCheckCatchesEarlyRelease proves the check above can
// fail: with the proxy's lock released as soon as a write is forwarded,
// porcupine must find a non-linearizable history.
func TestLinearizabilityCheckCatchesEarlyRelease(t *testing.T) {
	run := linDefault
	run.duration, run.restarts = 2*time.Second, 0
	expectViolation(t, ferretembed.LockReleaseOnForward, run, 3)
}

// expectViolation runs the workload on a store broken as said up to
// attempts times, until porcupine finds a violation.
func expectViolation(t *testing.T, broken int32, run linRun, attempts int) {
	t.Helper()
	for attempt := 1; attempt <= attempts; attempt++ {
		store := startLinStore(t, broken)
		history, unknown := runLinearizability(t, store, run)
		logHistory(t, history, unknown)
		if res, _ := checkLinearizable(t, history); res == porcupine.Illegal {
			t.Logf("violation found in attempt %d", attempt)
			return
		}
	}
	t.Fatalf("no violation found in %d attempts with the lock released early", attempts)
}
