package export_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/avxrm/rm/pkg/blob"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/indexed/ferretlookup"
	"github.com/avxrm/rm/pkg/events/outbox"
	export "github.com/avxrm/rm/services/scenario-export"
	"github.com/avxrm/rm/services/scenario-export/internal/artifacts"
	"github.com/avxrm/rm/services/scenario-export/internal/zipper"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// env is real FerretDB and NATS, with artifacts and export requests written
// as the API writes them.
type env struct {
	t       testing.TB
	uri     string // MongoDB
	natsURL string
	db      *mongo.Database
	js      jetstream.JetStream
	ob      *outbox.Outbox
	st      *artifacts.Store
	ferret  *ferretembed.Server
	// The services' store connection (nil: db's) and Lookup (nil: none).
	svcDB  *mongo.Database
	lookup indexed.Lookup
}

func quiet() *slog.Logger {
	if os.Getenv("RM_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newEnv(t testing.TB) *env {
	t.Helper()
	uri, srv := mongotest.Start(t)
	db := mongotest.Client(t, uri).Database("rm")
	ns := eventstest.RunServer(t)
	_, js := eventstest.Connect(t, ns)
	ob := outboxFor(js)
	st := artifacts.NewStore(db, ob, nil)
	ctx := context.Background()
	if err := st.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range export.Collections() {
		if err := srv.EnsureIDIndex(ctx, "rm", c); err != nil {
			t.Fatal(err)
		}
	}
	return &env{t: t, uri: uri, natsURL: ns.ClientURL(), db: db, js: js, ob: ob, st: st, ferret: srv}
}

func outboxFor(js jetstream.JetStream) *outbox.Outbox {
	return outbox.New(events.NewPublisher(js), quiet())
}

// artifact stores data as an artifact of job, as an upload through the API does.
func (e *env) artifact(job, kind, group, path string, data io.Reader) artifacts.Artifact {
	e.t.Helper()
	ctx := context.Background()
	a := artifacts.Artifact{JobID: job, Kind: kind, Path: path, CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
	k := "a"
	if kind == zipper.KindScenario {
		a.SampleID, k = group, "s"
	} else {
		a.Declaration = group
	}
	a.ID = job + "/" + k + "/" + group + "/" + path
	w, err := e.st.Artifacts.Create(ctx, a.ID, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := io.Copy(w, data); err != nil {
		e.t.Fatal(err)
	}
	f, err := w.Commit()
	if err != nil {
		e.t.Fatal(err)
	}
	a.Size, a.SHA256, a.FileID = f.Length, f.Metadata.SHA256, f.ID
	if _, err := e.db.Collection(artifacts.ArtifactsColl).InsertOne(ctx, a); err != nil {
		e.t.Fatal(err)
	}
	return a
}

// request stores an export request with its event, as the API does.
func (e *env) request(job string, req zipper.Request, ttl time.Duration) string {
	e.t.Helper()
	now := time.Now().UTC().Truncate(time.Millisecond)
	x := artifacts.Export{Meta: events.Meta{ID: events.NewID("exp"), CreatedAt: now, UpdatedAt: now, Version: 1},
		JobID: job, QueueID: "q-test", Status: artifacts.StatusPending, Request: req, ExpiresAt: now.Add(ttl)}
	ev, err := events.New(events.TypeExportRequested, "/rm/api", x.QueueID, x.ID, x)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.ob.Insert(context.Background(), e.db.Collection(artifacts.ExportsColl), x.ID, x.Version, x, ev); err != nil {
		e.t.Fatal(err)
	}
	return x.ID
}

// service starts an export service until the returned stop is called.
func (e *env) service(cfg export.Config, prepare func(*export.Service)) (stop func()) {
	e.t.Helper()
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = 100 * time.Millisecond
	}
	db := e.db
	if e.svcDB != nil {
		db = e.svcDB
	}
	svc, err := export.New(context.Background(), cfg, export.Deps{DB: db, JS: e.js, Outbox: e.ob, Logger: quiet().With("owner", cfg.Owner), Lookup: e.lookup})
	if err != nil {
		e.t.Fatal(err)
	}
	if prepare != nil {
		prepare(svc)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("export service %s: %v", cfg.Owner, err)
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

func (e *env) load(id string) artifacts.Export {
	e.t.Helper()
	l, err := e.st.Load(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return l.Export
}

// wait polls export id until done says so.
func (e *env) wait(id string, what string, done func(artifacts.Export) bool) artifacts.Export {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		x := e.load(id)
		if done(x) {
			return x
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("export %s never %s: %+v", id, what, x)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testLease is long enough for renewals to keep up on a busy machine; the
// race detector slows FerretDB's SQLite (C translated to Go) many times over.
var testLease = map[bool]time.Duration{false: 2 * time.Second, true: 8 * time.Second}[raceEnabled]

func finished(x artifacts.Export) bool {
	return x.Status == artifacts.StatusReady || x.Status == artifacts.StatusFailed
}

// unzip reads an export's zip (small in these tests) and returns its entries.
func (e *env) unzip(x artifacts.Export) map[string][]byte {
	e.t.Helper()
	r, err := e.st.Zips.Open(context.Background(), x.ZipFileID)
	if err != nil {
		e.t.Fatal(err)
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		e.t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	if int64(len(raw)) != x.Size || hex.EncodeToString(sum[:]) != x.SHA256 {
		e.t.Fatalf("zip of %s: %d bytes, sha256 %x; recorded %d, %s", x.ID, len(raw), sum, x.Size, x.SHA256)
	}
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			e.t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			e.t.Fatalf("%s: %v", f.Name, err)
		}
		out[f.Name] = b
	}
	return out
}

func (e *env) count(coll string) int64 {
	e.t.Helper()
	n, err := e.db.Collection(coll).CountDocuments(context.Background(), bson.D{})
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) exportEvents(id string) map[string]int {
	e.t.Helper()
	counts := map[string]int{}
	for _, ev := range eventstest.ReadAll(e.t, e.js, events.FilterSubject(events.KindExport, "", id)) {
		counts[ev.Type]++
	}
	return counts
}

func data(seed byte, n int) []byte {
	var s [32]byte
	s[0] = seed
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}

// fixture stores a job with several multi-chunk files and returns them by zip path.
func (e *env) fixture(job string) map[string][]byte {
	files := map[string][]byte{}
	for i := range 6 {
		d := data(byte(i), 1<<20+i*100000) // a little over a chunk each
		p := "f" + string(rune('0'+i)) + ".bin"
		e.artifact(job, zipper.KindScenario, "s-1", p, bytes.NewReader(d))
		files["scenarios/s-1/"+p] = d
	}
	return files
}

func checkZip(t *testing.T, got map[string][]byte, want map[string][]byte) {
	t.Helper()
	if len(got) != len(want)+1 || got[zipper.ManifestName] == nil {
		t.Errorf("zip has %d entries, want %d and a manifest", len(got), len(want))
	}
	for p, d := range want {
		if !bytes.Equal(got[p], d) {
			t.Errorf("%s: %d bytes in the zip differ from the %d stored", p, len(got[p]), len(d))
		}
	}
}

// blockAfter returns a hook that signals once n entries are written and then
// holds the build until its context ends, as a long build would.
func blockAfter(n int, reached chan<- string) func(context.Context, string, int) error {
	return func(ctx context.Context, id string, written int) error {
		if written != n {
			return nil
		}
		reached <- id
		<-ctx.Done()
		return ctx.Err()
	}
}

// TestRestartMidBuild stops a builder part way through, in both ways a
// process stops: cleanly (it gives the export back at once) and by crashing
// (its claim must expire first). While the first builder lives, a second one
// must not touch the export; afterwards the second builds it, once, right.
func TestRestartMidBuild(t *testing.T) {
	for _, crash := range []bool{false, true} {
		name := map[bool]string{false: "clean stop", true: "crash"}[crash]
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			want := e.fixture("job-1")
			id := e.request("job-1", zipper.Request{Samples: []string{"s-1"}, Include: []string{zipper.KindScenario}}, time.Hour)

			reached := make(chan string, 1)
			lease := testLease
			stop1 := e.service(export.Config{Owner: "first", Lease: lease}, func(s *export.Service) {
				s.SetAfterEntry(t, blockAfter(3, reached))
				if crash {
					s.WithoutRelease(t)
				}
			})
			select {
			case <-reached:
			case <-time.After(30 * time.Second):
				t.Fatal("the first builder never got to entry 3")
			}
			e.service(export.Config{Owner: "second", Lease: lease}, nil)
			// Two leases long: the first builder renews its claim, so the
			// second never takes the export.
			for end := time.Now().Add(2 * lease); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
				if x := e.load(id); x.Status != artifacts.StatusBuilding || x.Claim == nil || x.Claim.Owner != "first" {
					t.Fatalf("while the first builder works: %+v", x)
				}
			}
			stopped := time.Now()
			stop1()
			x := e.wait(id, "finished", finished)
			if x.Status != artifacts.StatusReady || x.Attempts != 2 || x.FileCount != len(want) {
				t.Fatalf("after the restart: %+v", x)
			}
			if crash && time.Since(stopped) < lease/2 {
				t.Errorf("taken over %v after a crash; the lease is %v", time.Since(stopped), lease)
			}
			checkZip(t, e.unzip(x), want)
			if got := e.exportEvents(id); got[events.TypeExportReady] != 1 || got[events.TypeExportFailed] != 0 {
				t.Errorf("events %v, want one ready", got)
			}
			// A clean stop removes its partial zip; a crash leaves it for
			// the orphan sweep (tested below).
			wantZips := int64(1)
			if crash {
				wantZips = 2
			}
			if n := e.count(artifacts.ZipBucket + ".files"); n != wantZips {
				t.Errorf("%d zip blobs, want %d", n, wantZips)
			}
		})
	}
}

// TestOrphanSweep: the sweep removes what nobody refers to, once old
// enough, and keeps the rest; on the embedded store (with a Lookup) it
// lists the blobs by the _id index, never asking the store for the whole
// files collection.
func TestOrphanSweep(t *testing.T) {
	for _, lookup := range []bool{false, true} {
		t.Run(fmt.Sprintf("lookup=%v", lookup), func(t *testing.T) { testOrphanSweep(t, lookup) })
	}
}

func testOrphanSweep(t *testing.T, lookup bool) {
	e := newEnv(t)
	ctx := context.Background()
	e.fixture("job-1")
	id := e.request("job-1", zipper.Request{Samples: []string{"s-1"}}, time.Hour)
	reached := make(chan string, 1)
	stop1 := e.service(export.Config{Owner: "first", Lease: testLease}, func(s *export.Service) {
		s.SetAfterEntry(t, blockAfter(2, reached))
		s.WithoutRelease(t)
	})
	<-reached
	stop1() // a crash: a partial zip is left behind
	stop2 := e.service(export.Config{Owner: "second", Lease: testLease}, nil)
	x := e.wait(id, "ready", finished)
	stop2()

	// An upload cut short, one finished but never recorded, and a replaced one.
	w, err := e.st.Artifacts.Create(ctx, "job-1/a//cut.bin", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write(data(9, 3<<20))
	w2, err := e.st.Artifacts.Create(ctx, "job-1/a//never-recorded.bin", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w2.Write([]byte("x"))
	if _, err := w2.Commit(); err != nil {
		t.Fatal(err)
	}
	artifactBlobs := e.count(artifacts.ArtifactBucket + ".files")

	deps := export.Deps{DB: e.db, JS: e.js, Outbox: e.ob, Logger: quiet()}
	mon, scans := mongotest.FindsNotByID(artifacts.ArtifactBucket+".files", artifacts.ZipBucket+".files")
	if lookup {
		deps.DB, deps.Lookup = mongotest.SeenClient(t, e.uri, mon).Database("rm"), ferretlookup.New(e.ferret, "rm")
	}
	svc, err := export.New(ctx, export.Config{Owner: "sweeper", UploadGrace: time.Hour}, deps)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if s := scans(); len(s) > 0 {
			t.Errorf("the sweep asked the store for blobs by another field than _id %d times, first %s", len(s), s[0])
		}
	}()
	// Now: nothing is old enough to go.
	if err := svc.SweepOrphans(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.count(artifacts.ZipBucket + ".files"); n != 2 {
		t.Errorf("young partial zip removed: %d zips", n)
	}
	// Two minutes on: the dead zip and the unrecorded blob go, the upload in
	// progress (within UploadGrace) stays. Two hours on, that goes too.
	svc.SetClock(t, func() time.Time { return time.Now().Add(2 * time.Minute) })
	if err := svc.SweepOrphans(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.count(artifacts.ZipBucket + ".files"); n != 1 {
		t.Errorf("%d zips after the sweep, want 1", n)
	}
	if n := e.count(artifacts.ArtifactBucket + ".files"); n != artifactBlobs-1 {
		t.Errorf("%d artifact blobs after the sweep, want %d", n, artifactBlobs-1)
	}
	svc.SetClock(t, func() time.Time { return time.Now().Add(2 * time.Hour) })
	if err := svc.SweepOrphans(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.count(artifacts.ArtifactBucket + ".files"); n != artifactBlobs-2 {
		t.Errorf("%d artifact blobs after the second sweep, want %d", n, artifactBlobs-2)
	}
	// What is left is exactly what is referred to, chunk for chunk.
	if got := e.unzip(e.load(x.ID)); len(got) != 7 {
		t.Errorf("the export's zip has %d entries, want 7", len(got))
	}
	var chunks int64
	for _, f := range []string{artifacts.ArtifactBucket, artifacts.ZipBucket} {
		b := blob.NewBucket(e.db, f, 0)
		_ = b.Each(ctx, func(bf blob.File) error {
			chunks += (bf.Length + int64(bf.ChunkSize) - 1) / int64(bf.ChunkSize)
			return nil
		})
	}
	if got := e.count(artifacts.ArtifactBucket+".chunks") + e.count(artifacts.ZipBucket+".chunks"); got != chunks {
		t.Errorf("%d chunks stored, %d referred to", got, chunks)
	}
}

// TestEachFileWhenTheIndexOrderIsNotGos: the orphan sweep's listing by the
// _id index passes every blob once even when the index's order (of the
// _ids' JSON text: "a!" before "a") differs from Go's past its first
// batch: the rest come from the store's find, without those passed.
func TestEachFileWhenTheIndexOrderIsNotGos(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	mon, scans := mongotest.FindsNotByID(artifacts.ZipBucket + ".files")
	st := artifacts.NewStore(mongotest.SeenClient(t, e.uri, mon).Database("rm"), e.ob, ferretlookup.New(e.ferret, "rm"))
	want := map[string]int{}
	var docs []any
	for i := range 1100 { // more than the listing's first batch of 1,000
		id := fmt.Sprintf("blob-%04d", i)
		if i == 1050 {
			id = "blob-1049!" // after blob-1049 in Go's order, before it in the index's
		}
		want[id] = 1
		docs = append(docs, bson.D{{Key: "_id", Value: id}, {Key: "length", Value: int64(1)}, {Key: "chunkSize", Value: int32(1024)},
			{Key: "uploadDate", Value: time.Now()}, {Key: "filename", Value: id}, {Key: "metadata", Value: bson.D{{Key: "state", Value: blob.StateComplete}}}})
	}
	if _, err := e.db.Collection(artifacts.ZipBucket+".files").InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	if err := st.EachFile(ctx, st.Zips, func(f blob.File) error { got[f.ID]++; return nil }); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		var twice, missed []string
		for id := range want {
			if got[id] > 1 {
				twice = append(twice, id)
			} else if got[id] == 0 {
				missed = append(missed, id)
			}
		}
		t.Errorf("%d blobs passed, want %d: %d twice (e.g. %v), %d missed (e.g. %v)", len(got), len(want), len(twice), first(twice), len(missed), first(missed))
	}
	if len(scans()) == 0 {
		t.Error("the listing never fell back to the store's find: the index's order was Go's, so the test checked nothing")
	}

	// A bucket whose files collection has no _id index yet (FerretDB
	// made it; the store gives it one at its first direct write, or on
	// its next pass over the collections): every blob, from the find.
	fresh := blob.NewBucket(e.db, "fresh", 0)
	if _, err := fresh.Files.InsertMany(ctx, docs[:3]); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := st.EachFile(ctx, fresh, func(blob.File) error { n++; return nil }); err != nil || n != 3 {
		t.Errorf("a files collection without an _id index: %d blobs passed, %v; want 3", n, err)
	}
}

// first is the first of ids, or "".
func first(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	return ids[0]
}

func TestExportFailsOnCorruptArtifact(t *testing.T) {
	e := newEnv(t)
	a := e.artifact("job-1", zipper.KindAsset, "", "a.bin", strings.NewReader("hello"))
	// The record no longer matches the bytes.
	if _, err := e.db.Collection(artifacts.ArtifactsColl).UpdateOne(context.Background(), bson.D{{Key: "_id", Value: a.ID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "sha256", Value: strings.Repeat("0", 64)}}}}); err != nil {
		t.Fatal(err)
	}
	id := e.request("job-1", zipper.Request{}, time.Hour)
	e.service(export.Config{Owner: "one"}, nil)
	x := e.wait(id, "finished", finished)
	if x.Status != artifacts.StatusFailed || !strings.Contains(x.Reason, "assets/a.bin") || x.ZipFileID != "" {
		t.Errorf("export %+v, want failed naming assets/a.bin", x)
	}
	if got := e.exportEvents(id); got[events.TypeExportFailed] != 1 || got[events.TypeExportReady] != 0 {
		t.Errorf("events %v", got)
	}
	if n := e.count(artifacts.ZipBucket + ".chunks"); n != 0 {
		t.Errorf("%d zip chunks left", n)
	}
}

// TestExportFailsOnFileAndDirectory: a sample with both a file x and a file
// x/y cannot make a zip that extracts; the export fails naming both.
func TestExportFailsOnFileAndDirectory(t *testing.T) {
	e := newEnv(t)
	e.artifact("job-1", zipper.KindScenario, "s-1", "run", strings.NewReader("a file"))
	e.artifact("job-1", zipper.KindScenario, "s-1", "run/out.xosc", strings.NewReader("under it"))
	id := e.request("job-1", zipper.Request{Samples: []string{"s-1"}}, time.Hour)
	e.service(export.Config{Owner: "one"}, nil)
	x := e.wait(id, "finished", finished)
	if x.Status != artifacts.StatusFailed || !strings.Contains(x.Reason, "scenarios/s-1/run/out.xosc") || x.ZipFileID != "" {
		t.Errorf("export %+v, want failed naming scenarios/s-1/run/out.xosc", x)
	}
	if got := e.exportEvents(id); got[events.TypeExportFailed] != 1 || got[events.TypeExportReady] != 0 {
		t.Errorf("events %v", got)
	}
	if n := e.count(artifacts.ZipBucket + ".chunks"); n != 0 {
		t.Errorf("%d zip chunks left", n)
	}
}

// TestExportWarnsOfCaseClashes: files whose paths differ only in case are
// all in the zip, and the ready export warns that unpacked where case is
// ignored one replaces the other; and of a name Windows cannot hold (a
// device's), after the clashes.
func TestExportWarnsOfCaseClashes(t *testing.T) {
	e := newEnv(t)
	e.artifact("job-1", zipper.KindScenario, "s-1", "Run.xosc", strings.NewReader("upper"))
	e.artifact("job-1", zipper.KindScenario, "s-1", "run.xosc", strings.NewReader("lower"))
	e.artifact("job-1", zipper.KindScenario, "s-1", "aux.xosc", strings.NewReader("device"))
	id := e.request("job-1", zipper.Request{Samples: []string{"s-1"}}, time.Hour)
	e.service(export.Config{Owner: "one"}, nil)
	x := e.wait(id, "finished", finished)
	if x.Status != artifacts.StatusReady || x.FileCount != 3 || len(x.Warnings) != 2 ||
		!strings.HasPrefix(x.Warnings[0], "scenarios/s-1/Run.xosc and scenarios/s-1/run.xosc differ only in case") ||
		!strings.HasPrefix(x.Warnings[1], "scenarios/s-1/aux.xosc cannot be unpacked on Windows") {
		t.Fatalf("export %+v, want ready with the three files, a warning naming the two that clash, then one naming aux.xosc", x)
	}
	if files := e.unzip(x); string(files["scenarios/s-1/Run.xosc"]) != "upper" || string(files["scenarios/s-1/run.xosc"]) != "lower" ||
		string(files["scenarios/s-1/aux.xosc"]) != "device" {
		t.Errorf("zip holds %v, want every file", files)
	}
}

func TestExpiredExportsAreDeleted(t *testing.T) {
	e := newEnv(t)
	e.artifact("job-1", zipper.KindAsset, "", "a.bin", strings.NewReader("hello"))
	id := e.request("job-1", zipper.Request{}, 1500*time.Millisecond)
	e.service(export.Config{Owner: "one"}, nil)
	x := e.wait(id, "ready", finished)
	if x.Status != artifacts.StatusReady {
		t.Fatalf("export %+v", x)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := e.st.Load(context.Background(), id)
		if errors.Is(err, artifacts.ErrNotFound) && e.count(artifacts.ZipBucket+".files") == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("expired export still there: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := e.count(artifacts.ZipBucket + ".chunks"); n != 0 {
		t.Errorf("%d zip chunks left after expiry", n)
	}
	if got := e.exportEvents(id); got[export.TypeExportDeleted] != 1 {
		t.Errorf("events %v, want one deleted", got)
	}
}

// TestSweepFindsExportsByIndex: the sweep builds what waits for a builder
// and deletes what expired, leaving the rest; with a Lookup (the embedded
// store) it finds them by indexes, never asking the store for exports by
// another field than _id (a find FerretDB answers by decoding every
// export, every 30 s).
func TestSweepFindsExportsByIndex(t *testing.T) {
	for _, lookup := range []bool{false, true} {
		t.Run(fmt.Sprintf("lookup=%v", lookup), func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			e.artifact("job-1", zipper.KindAsset, "", "a.bin", strings.NewReader("hello"))
			pending := e.request("job-1", zipper.Request{}, time.Hour)
			expired := e.request("job-1", zipper.Request{}, -time.Minute)
			failed := e.request("job-1", zipper.Request{}, time.Hour)
			for id, status := range map[string]string{expired: artifacts.StatusReady, failed: artifacts.StatusFailed} {
				if _, err := e.db.Collection(artifacts.ExportsColl).UpdateOne(ctx, bson.D{{Key: "_id", Value: id}},
					bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: status}}}}); err != nil {
					t.Fatal(err)
				}
			}
			deps := export.Deps{DB: e.db, JS: e.js, Outbox: e.ob, Logger: quiet()}
			mon, scans := mongotest.FindsNotByID(artifacts.ExportsColl)
			if lookup {
				deps.DB, deps.Lookup = mongotest.SeenClient(t, e.uri, mon).Database("rm"), ferretlookup.New(e.ferret, "rm")
			}
			svc, err := export.New(ctx, export.Config{Owner: "sweeper"}, deps)
			if err != nil {
				t.Fatal(err)
			}
			if err := svc.Sweep(ctx); err != nil {
				t.Fatal(err)
			}
			if x := e.wait(pending, "ready", finished); x.Status != artifacts.StatusReady {
				t.Errorf("the pending export: %+v, want it built", x)
			}
			if _, err := e.st.Load(ctx, expired); !errors.Is(err, artifacts.ErrNotFound) {
				t.Errorf("the expired export: %v, want it deleted", err)
			}
			if x := e.load(failed); x.Status != artifacts.StatusFailed {
				t.Errorf("the failed export: %+v, want it left alone", x)
			}
			if s := scans(); len(s) > 0 {
				t.Errorf("the sweep asked the store for exports by another field than _id %d times, first %s", len(s), s[0])
			}
		})
	}
}

// An export deleted while it is built (DELETE, expiry, its job's deletion)
// stops its build as soon as the service reads the deletion's event, and
// leaves no zip and no ready event; the build used to go on until its next
// claim renewal (a third of the lease) and then logged the loss as a fault.
func TestBuildStopsWhenItsExportIsDeleted(t *testing.T) {
	e := newEnv(t)
	e.fixture("job-1")
	id := e.request("job-1", zipper.Request{Samples: []string{"s-1"}, Include: []string{zipper.KindScenario}}, time.Hour)
	reached := make(chan string, 1)
	stopped := make(chan error, 1)
	e.service(export.Config{Owner: "one", Lease: 10 * time.Minute}, func(s *export.Service) {
		s.SetAfterEntry(t, func(ctx context.Context, id string, written int) error {
			if written != 3 {
				return nil
			}
			reached <- id
			<-ctx.Done()
			stopped <- context.Cause(ctx)
			return ctx.Err()
		})
	})
	select {
	case <-reached:
	case <-time.After(30 * time.Second):
		t.Fatal("the build never got to entry 3")
	}
	ctx := context.Background()
	l, err := e.st.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := events.New(export.TypeExportDeleted, "/rm/api", l.Export.QueueID, id, l.Export)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.Delete(ctx, l, ev); err != nil {
		t.Fatal(err)
	}
	select {
	case cause := <-stopped:
		if cause == nil || cause.Error() != "export deleted" {
			t.Errorf("the build stopped for %v, want its export's deletion", cause)
		}
	case <-time.After(30 * time.Second): // the renewal would come after 200 s
		t.Fatal("the build went on for 30 s after its export was deleted")
	}
	for deadline := time.Now().Add(30 * time.Second); e.count(artifacts.ZipBucket+".files") != 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the partial zip is still there 30 s after the build stopped")
		}
	}
	if got := e.exportEvents(id); got[events.TypeExportReady] != 0 || got[export.TypeExportDeleted] != 1 {
		t.Errorf("events %v, want the deletion alone", got)
	}
}

// TestArtifactReplacedMidBuild: a worker of a running job uploads a file
// again while its export is built, and the bytes the build was reading are
// removed. That failed the export for good ("blob corrupt: chunk 0 … is
// missing"), though a rebuild reads the new record; it is built again, with
// the new bytes.
func TestArtifactReplacedMidBuild(t *testing.T) {
	e := newEnv(t)
	want := e.fixture("job-1")
	id := e.request("job-1", zipper.Request{Samples: []string{"s-1"}}, time.Hour)
	var once sync.Once
	e.service(export.Config{Owner: "one"}, func(s *export.Service) {
		s.SetAfterEntry(t, func(ctx context.Context, _ string, written int) error {
			if written != 1 { // f0.bin is written; f1.bin is next
				return nil
			}
			once.Do(func() {
				// As the API replaces an upload: a new blob and record, then
				// the old blob removed.
				var old artifacts.Artifact
				if err := e.db.Collection(artifacts.ArtifactsColl).FindOneAndDelete(ctx,
					bson.D{{Key: "_id", Value: "job-1/s/s-1/f1.bin"}}).Decode(&old); err != nil {
					t.Error(err)
				}
				d := data(42, 3000)
				e.artifact("job-1", zipper.KindScenario, "s-1", "f1.bin", bytes.NewReader(d))
				want["scenarios/s-1/f1.bin"] = d
				if err := e.st.Artifacts.Delete(ctx, old.FileID); err != nil {
					t.Error(err)
				}
			})
			return nil
		})
	})
	x := e.wait(id, "finished", finished)
	if x.Status != artifacts.StatusReady {
		t.Fatalf("export %s %s (%s), want ready", x.ID, x.Status, x.Reason)
	}
	checkZip(t, e.unzip(x), want)
}

// On the embedded store the builder finds a job's artifacts by the Lookup's
// index of job_id, asking the store for artifacts by _id only: a {job_id}
// filter made FerretDB read the records of every job for each build.
func TestBuildReadsItsJobsArtifactsByIndex(t *testing.T) {
	e := newEnv(t)
	mon, scans := mongotest.FindsNotByID(artifacts.ArtifactsColl)
	e.svcDB, e.lookup = mongotest.SeenClient(t, e.uri, mon).Database("rm"), ferretlookup.New(e.ferret, "rm")
	files := map[string][]byte{}
	for _, job := range []string{"job-a", "job-b", "job-bb", "job-c"} {
		for i := range 3 {
			d := data(byte(i), 100+len(job))
			p := fmt.Sprintf("f%d.bin", i)
			e.artifact(job, zipper.KindScenario, "s-1", p, bytes.NewReader(d))
			if job == "job-b" {
				files["scenarios/s-1/"+p] = d
			}
		}
	}
	e.service(export.Config{Owner: "one"}, nil)
	id := e.request("job-b", zipper.Request{Samples: []string{"s-1"}}, time.Hour)
	x := e.wait(id, "finished", finished)
	if x.Status != artifacts.StatusReady {
		t.Fatalf("export = %+v", x)
	}
	checkZip(t, e.unzip(x), files)
	if s := scans(); len(s) > 0 {
		t.Errorf("the builder asked the store for artifacts by another field than _id %d times, first %s", len(s), s[0])
	}
}

// BenchmarkSweepExports times one sweep of the exports (Service.Sweep,
// every 30 s) over RM_BENCH_EXPORTS (default 5,000) ready exports, none
// expired, without a Lookup (finds by status and by expiry sent to the
// store) and with one (as in the all-in-one):
// cd services/scenario-export && go test -run '^$' -bench BenchmarkSweepExports -benchtime 5x .
func BenchmarkSweepExports(b *testing.B) {
	n := 5000
	if v := os.Getenv("RM_BENCH_EXPORTS"); v != "" {
		fmt.Sscan(v, &n)
	}
	e := newEnv(b)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	docs := make([]any, n)
	for i := range docs {
		docs[i] = artifacts.Export{Meta: events.Meta{ID: events.NewID("exp"), CreatedAt: now, UpdatedAt: now, Version: 2},
			JobID: fmt.Sprintf("job-%05d", i), QueueID: "q-test", Status: artifacts.StatusReady, ExpiresAt: now.Add(time.Hour)}
	}
	if _, err := e.db.Collection(artifacts.ExportsColl).InsertMany(ctx, docs); err != nil {
		b.Fatal(err)
	}
	for _, lookup := range []bool{false, true} {
		b.Run(fmt.Sprintf("lookup=%v", lookup), func(b *testing.B) {
			deps := export.Deps{DB: e.db, JS: e.js, Outbox: e.ob, Logger: quiet()}
			if lookup {
				deps.Lookup = ferretlookup.New(e.ferret, "rm")
			}
			svc, err := export.New(ctx, export.Config{Owner: "sweeper"}, deps)
			if err != nil {
				b.Fatal(err)
			}
			if err := svc.Sweep(ctx); err != nil { // the Lookup makes its indexes
				b.Fatal(err)
			}
			for b.Loop() {
				if err := svc.Sweep(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSweepOrphans times one sweep of orphaned blobs over
// RM_BENCH_ORPHAN_ARTIFACTS (default 2,000) artifacts, each a blob and the
// record that refers to it, none orphaned, without a Lookup (the blobs
// listed by a find of the whole files collection) and with one (by the _id
// index, as in the all-in-one):
// cd services/scenario-export && go test -run '^$' -bench BenchmarkSweepOrphans -benchtime 3x .
func BenchmarkSweepOrphans(b *testing.B) {
	n := 2000
	if v := os.Getenv("RM_BENCH_ORPHAN_ARTIFACTS"); v != "" {
		fmt.Sscan(v, &n)
	}
	e := newEnv(b)
	for i := range n {
		e.artifact(fmt.Sprintf("job-%05d", i/10), zipper.KindScenario, "s-1", fmt.Sprintf("f%d.bin", i%10), strings.NewReader("x"))
	}
	ctx := context.Background()
	for _, lookup := range []bool{false, true} {
		b.Run(fmt.Sprintf("lookup=%v", lookup), func(b *testing.B) {
			deps := export.Deps{DB: e.db, JS: e.js, Outbox: e.ob, Logger: quiet()}
			if lookup { // as on the embedded store, in the all-in-one
				deps.Lookup = ferretlookup.New(e.ferret, "rm")
			}
			svc, err := export.New(ctx, export.Config{Owner: "sweeper"}, deps)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := svc.SweepOrphans(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if got := e.count(artifacts.ArtifactBucket + ".files"); got != int64(n) {
				b.Fatalf("%d artifact blobs after the sweeps, want %d: a referred one went", got, n)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(n), "µs/artifact")
		})
	}
}
