package export_test

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	export "github.com/avxrm/rm/services/scenario-export"
	"github.com/avxrm/rm/services/scenario-export/internal/artifacts"
	"github.com/avxrm/rm/services/scenario-export/internal/zipper"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Environment of the benchmark's child process (see TestMain).
const (
	childMode  = "RM_EXPORT_BENCH_CHILD" // build | read
	childMongo = "RM_EXPORT_BENCH_MONGO"
	childNATS  = "RM_EXPORT_BENCH_NATS"
	childID    = "RM_EXPORT_BENCH_ID" // the export (build) or job (read)
)

// TestMain lets the benchmark run the export service in a child process of
// its own, so that the child's peak RSS is the service's alone (FerretDB and
// NATS stay in the parent).
func TestMain(m *testing.M) {
	if mode := os.Getenv(childMode); mode != "" {
		if err := runChild(mode); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// childResult is what a child prints on its last line, after "RESULT ".
type childResult struct {
	Mode    string  `json:"mode"`
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
	MBps    float64 `json:"mb_per_s"`
	VmHWMMB float64 `json:"peak_rss_mb"` // VmHWM of /proc/self/status
	Status  string  `json:"status,omitempty"`
}

func runChild(mode string) error {
	ctx := context.Background()
	mc, err := mongo.Connect(options.Client().ApplyURI(os.Getenv(childMongo)))
	if err != nil {
		return err
	}
	defer mc.Disconnect(ctx)
	db := mc.Database("rm")
	nc, err := nats.Connect(os.Getenv(childNATS))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ob := outboxFor(js)
	st := artifacts.NewStore(db, ob, nil)
	id := os.Getenv(childID)
	res := childResult{Mode: mode}
	start := time.Now()
	switch mode {
	case "build":
		// The service as the all-in-one runs it, default configuration.
		svc, err := export.New(ctx, export.Config{Owner: "bench"}, export.Deps{DB: db, JS: js, Outbox: ob, Logger: quiet()})
		if err != nil {
			return err
		}
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- svc.Run(rctx) }()
		for {
			l, err := st.Load(ctx, id)
			if err != nil {
				return err
			}
			if l.Export.Status == artifacts.StatusReady || l.Export.Status == artifacts.StatusFailed {
				res.Status, res.Bytes = strings.TrimSpace(l.Export.Status+" "+l.Export.Reason), 0
				arts, err := st.JobArtifacts(ctx, l.Export.JobID)
				if err != nil {
					return err
				}
				for _, a := range zipper.Select(l.Export.Request, entries(arts)) {
					res.Bytes += a.Size
				}
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		res.Seconds = time.Since(start).Seconds()
		cancel()
		if err := <-done; err != nil {
			return err
		}
	case "read":
		// A raw GridFS read of the same bytes, each blob hashed as the build does.
		arts, err := st.JobArtifacts(ctx, id)
		if err != nil {
			return err
		}
		buf := make([]byte, 256<<10)
		for _, a := range arts {
			r, err := st.Artifacts.Open(ctx, a.FileID)
			if err != nil {
				return err
			}
			h := sha256.New()
			n, err := io.CopyBuffer(h, r, buf)
			if err != nil {
				return err
			}
			if hex.EncodeToString(h.Sum(nil)) != a.SHA256 {
				return fmt.Errorf("%s: sha256 differs", a.Path)
			}
			res.Bytes += n
		}
		res.Seconds = time.Since(start).Seconds()
	default:
		return fmt.Errorf("mode %q", mode)
	}
	res.MBps = float64(res.Bytes) / 1e6 / res.Seconds
	res.VmHWMMB = vmHWM()
	raw, _ := json.Marshal(res)
	fmt.Println("RESULT " + string(raw))
	return nil
}

func entries(arts []artifacts.Artifact) []zipper.Entry {
	out := make([]zipper.Entry, len(arts))
	for i, a := range arts {
		out[i] = a.Entry()
	}
	return out
}

// vmHWM is the process's peak resident set size in MB (VmHWM in /proc/self/status).
func vmHWM() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb / 1024
		}
	}
	return -1
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkBigExport builds a 1 GiB export: 200 files of 1 MiB and 8 of
// 100 MiB (RM_BIG_EXPORT_SMALL, RM_BIG_EXPORT_LARGE_MB scale it), generated
// deterministically and streamed, never held in memory. The export service
// runs in a child process; its peak RSS (VmHWM) is reported next to the build
// throughput and that of a raw GridFS read of the same bytes, also in a child.
// The zip is then read back and every entry checked against its sha256.
//
//	RM_BIG_EXPORT=1 go test -run '^$' -bench BigExport -benchtime 1x -timeout 60m -v .
//
// go test without -bench does not run it; with RM_BIG_EXPORT unset it fails
// rather than run for many minutes by accident.
func BenchmarkBigExport(b *testing.B) {
	if os.Getenv("RM_BIG_EXPORT") != "1" {
		b.Fatal("set RM_BIG_EXPORT=1 to run the 1 GiB export (several minutes, ~3 GB of disk)")
	}
	small, largeMB := envInt("RM_BIG_EXPORT_SMALL", 200), envInt("RM_BIG_EXPORT_LARGE_MB", 100)
	e := newEnv(b)
	ctx := context.Background()

	// Upload, as workers would (in this process, next to FerretDB).
	start := time.Now()
	var total int64
	want := map[string]string{}
	put := func(i int, path string, size int64) {
		var seed [32]byte
		seed[0], seed[1] = byte(i), byte(i>>8)
		a := e.artifact("job-big", zipper.KindScenario, fmt.Sprintf("s-%03d", i%10), path, io.LimitReader(rand.NewChaCha8(seed), size))
		want[a.Entry().ZipPath()] = a.SHA256
		total += size
	}
	for i := range small {
		put(i, fmt.Sprintf("small/%03d.bin", i), 1<<20)
	}
	for i := range 8 {
		put(1000+i, fmt.Sprintf("large/%d.bin", i), int64(largeMB)<<20)
	}
	upload := time.Since(start)
	samples := make([]string, 10)
	for i := range samples {
		samples[i] = fmt.Sprintf("s-%03d", i)
	}
	id := e.request("job-big", zipper.Request{Samples: samples, Include: []string{zipper.KindScenario}}, 24*time.Hour)
	b.Logf("date %s, GOMAXPROCS %d, %d files, %d bytes (%.0f MiB); upload into GridFS %.1fs = %.1f MB/s",
		time.Now().UTC().Format(time.RFC3339), runtime.GOMAXPROCS(0), len(want), total, float64(total)/(1<<20), upload.Seconds(), float64(total)/1e6/upload.Seconds())

	b.ResetTimer()
	build := runChildProcess(b, "build", e, id)
	b.StopTimer()
	if !strings.HasPrefix(build.Status, "ready") {
		b.Fatalf("export %s", build.Status)
	}
	read := runChildProcess(b, "read", e, "job-big")
	x := e.load(id)
	b.Logf("export build: %d bytes in %.1fs = %.1f MB/s, zip %d bytes, peak RSS of the export service %.1f MB",
		build.Bytes, build.Seconds, build.MBps, x.Size, build.VmHWMMB)
	b.Logf("raw GridFS read of the same bytes: %d bytes in %.1fs = %.1f MB/s, peak RSS %.1f MB",
		read.Bytes, read.Seconds, read.MBps, read.VmHWMMB)
	b.ReportMetric(build.MBps, "build-MB/s")
	b.ReportMetric(read.MBps, "raw-read-MB/s")
	b.ReportMetric(build.VmHWMMB, "build-peak-RSS-MB")
	if build.VmHWMMB >= 100 {
		b.Errorf("peak RSS of the export service %.1f MB, want < 100", build.VmHWMMB)
	}

	// Every entry of the zip, streamed back out of GridFS, matches its upload.
	start = time.Now()
	r, err := e.st.Zips.Open(ctx, x.ZipFileID)
	if err != nil {
		b.Fatal(err)
	}
	zr, err := zip.NewReader(&readerAt{r: r}, x.Size)
	if err != nil {
		b.Fatal(err)
	}
	seen := 0
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			b.Fatal(err)
		}
		h := sha256.New()
		_, err = io.Copy(h, rc)
		rc.Close()
		if err != nil {
			b.Fatalf("%s: %v", f.Name, err)
		}
		if f.Name == zipper.ManifestName {
			continue
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != want[f.Name] {
			b.Errorf("%s: sha256 %s, uploaded %s", f.Name, got, want[f.Name])
		}
		seen++
	}
	if seen != len(want) {
		b.Errorf("zip has %d files, want %d", seen, len(want))
	}
	b.Logf("zip verified entry by entry in %.1fs", time.Since(start).Seconds())
}

// runChildProcess runs this test binary as the export service (or a raw
// reader) and returns what it measured.
func runChildProcess(b *testing.B, mode string, e *env, id string) childResult {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childMode+"="+mode, childMongo+"="+e.uri, childNATS+"="+e.natsURL, childID+"="+id)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("child %s: %v\n%s", mode, err, out.String())
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, "RESULT "); ok {
			b.Logf("child %s: %s", mode, rest)
			var res childResult
			if err := json.Unmarshal([]byte(rest), &res); err != nil {
				b.Fatal(err)
			}
			return res
		}
	}
	b.Fatalf("child %s printed no result:\n%s", mode, out.String())
	return childResult{}
}

// readerAt reads a blob at offsets for zip.NewReader, by seeking; zip reads
// one entry at a time, so the reader's chunk cache serves its small reads.
type readerAt struct {
	mu sync.Mutex
	r  io.ReadSeeker
}

func (ra *readerAt) ReadAt(p []byte, off int64) (int, error) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if _, err := ra.r.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	n, err := io.ReadFull(ra.r, p)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	return n, err
}
