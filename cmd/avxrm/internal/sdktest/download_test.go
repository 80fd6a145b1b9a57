package sdktest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
	"github.com/oapi-codegen/nullable"
)

// cuttingProxy forwards TCP connections to addr and cuts each one once it
// has sent limit bytes of answers to the client (0: no limit), as a
// network that drops a long download does.
type cuttingProxy struct {
	addr  string
	limit atomic.Int64
	cuts  atomic.Int32
}

func startCuttingProxy(t *testing.T, addr string, limit int64) (*cuttingProxy, string) {
	t.Helper()
	p := &cuttingProxy{addr: addr}
	p.limit.Store(limit)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(conn)
		}
	}()
	return p, ln.Addr().String()
}

func (p *cuttingProxy) serve(conn net.Conn) {
	defer conn.Close()
	up, err := net.Dial("tcp", p.addr)
	if err != nil {
		return
	}
	defer up.Close()
	go func() { _, _ = io.Copy(up, conn); up.Close() }()
	var down io.Reader = up
	if limit := p.limit.Load(); limit > 0 {
		down = io.LimitReader(up, limit)
	}
	n, _ := io.Copy(conn, down)
	if limit := p.limit.Load(); limit > 0 && n >= limit {
		p.cuts.Add(1)
	}
}

// exportFixture is a job with a scenario file and an incompressible asset
// of size bytes, and its ready export of both.
type exportFixture struct {
	job, export string
	asset       []byte
	x           *api.ScenarioExport
}

func newExportFixture(t *testing.T, c *avxrm.Client, size int) exportFixture {
	t.Helper()
	ctx := context.Background()
	if _, err := c.CreateQueue(ctx, api.QueueBody{Name: "exports"}); err != nil {
		t.Fatal(err)
	}
	img := "local"
	app, err := c.CreateApplication(ctx, api.ApplicationBody{Name: "true", Version: "1", Image: &img,
		Command: nullable.NewNullableWithValue([]string{"/bin/true"})})
	if err != nil {
		t.Fatal(err)
	}
	job, err := c.SubmitJob(ctx, api.JobBody{QueueId: "exports", WorkerInstances: 1, Application: api.JobApplicationRef{Id: app.Id}})
	if err != nil {
		t.Fatal(err)
	}
	f := exportFixture{job: *job.Id, asset: make([]byte, size)}
	_, _ = rand.Read(f.asset)
	for path, body := range map[string][]byte{"scenarios/s-001/scenario.xosc": []byte("<OpenSCENARIO/>"), "assets/road.bin": f.asset} {
		if _, err := c.Do(ctx, http.MethodPut, "/jobs/"+f.job+"/artifacts/"+path, body, nil); err != nil {
			t.Fatal(err)
		}
	}
	x, err := c.CreateExport(ctx, f.job, api.ExportRequest{Samples: nullable.NewNullableWithValue([]string{"s-001"})})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if f.x, err = c.WaitExport(wctx, *x.Id); err != nil || *f.x.Status != "ready" {
		t.Fatalf("export: %+v %v", f.x, err)
	}
	f.export = *x.Id
	return f
}

// exchange is one download request as it went out and was answered.
type exchange struct {
	rng, ifRange string
	status       int
}

// recording is an HTTP client that remembers the download requests (an
// export's zip, an artifact) and their statuses; before, if set, is called
// before each is sent.
func recording(before func(r *http.Request)) (*http.Client, func() []exchange) {
	var mu sync.Mutex
	var seen []exchange
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		download := strings.HasSuffix(r.URL.Path, "/download") || strings.Contains(r.URL.Path, "/artifacts/")
		if download && before != nil {
			before(r)
		}
		resp, err := http.DefaultTransport.RoundTrip(r)
		if download && err == nil && r.Method == http.MethodGet {
			mu.Lock()
			seen = append(seen, exchange{r.Header.Get("Range"), r.Header.Get("If-Range"), resp.StatusCode})
			mu.Unlock()
		}
		return resp, err
	})}
	return hc, func() []exchange {
		mu.Lock()
		defer mu.Unlock()
		return append([]exchange(nil), seen...)
	}
}

// A download whose connection is cut again and again resumes each time
// where it broke off (Range, If-Range on the zip's sha256) and ends with
// the whole zip, checked; the file variant leaves no .part, the writer
// variant writes each byte once, and Progress counts up to the size.
func TestDownloadExportResumesACutConnection(t *testing.T) {
	sys := start(t, t.TempDir(), "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := newExportFixture(t, newClient(t, sys.Addr), 1<<20)
	var whole bytes.Buffer
	d, err := newClient(t, sys.Addr).DownloadExport(ctx, f.export, &whole, avxrm.DownloadOptions{})
	if err != nil || d.Size != *f.x.Size || d.SHA256 != *f.x.Sha256 || int64(whole.Len()) != d.Size {
		t.Fatalf("DownloadExport: %+v, %d bytes, %v; want %d bytes, sha256 %s", d, whole.Len(), err, *f.x.Size, *f.x.Sha256)
	}

	proxy, addr := startCuttingProxy(t, sys.Addr, 300<<10)
	hc, seen := recording(nil)
	c := newClient(t, addr, avxrm.WithHTTPClient(hc), avxrm.WithBackoff(avxrm.Backoff{Initial: time.Millisecond, Max: 10 * time.Millisecond}))
	var progress []int64
	var last int64 = -1
	opts := avxrm.DownloadOptions{Progress: func(written, size int64) {
		if written < last || size != *f.x.Size {
			progress = append(progress, -1)
		}
		last = written
	}}
	out := filepath.Join(t.TempDir(), "export.zip")
	d, err = c.DownloadExportFile(ctx, f.export, out, opts)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, whole.Bytes()) || d.Size != *f.x.Size || d.SHA256 != *f.x.Sha256 || d.Files != 2 {
		t.Errorf("DownloadExportFile through cuts: %+v, %d bytes, want the zip of %d bytes and 2 files", d, len(got), *f.x.Size)
	}
	if _, err := os.Stat(out + ".part"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the .part is left: %v", err)
	}
	if len(progress) > 0 || last != *f.x.Size {
		t.Errorf("Progress went back or named another size (%d times), ended at %d of %d", len(progress), last, *f.x.Size)
	}
	ex := seen()
	t.Logf("%d cuts, requests %+v", proxy.cuts.Load(), ex)
	if proxy.cuts.Load() < 3 || len(ex) < 4 || ex[0].rng != "" || ex[0].status != http.StatusOK {
		t.Fatalf("%d cuts, requests %+v; want a whole one, then one for the rest after each cut", proxy.cuts.Load(), ex)
	}
	for _, e := range ex[1:] {
		if !strings.HasPrefix(e.rng, "bytes=") || e.ifRange != `"`+*f.x.Sha256+`"` || e.status != http.StatusPartialContent {
			t.Errorf("a resumption asked %+v; want a Range with If-Range on the zip's sha256, answered 206", e)
		}
	}

	var buf bytes.Buffer
	if d, err = c.DownloadExport(ctx, f.export, &buf, avxrm.DownloadOptions{}); err != nil || !bytes.Equal(buf.Bytes(), whole.Bytes()) {
		t.Errorf("DownloadExport through cuts: %+v, %d bytes, %v", d, buf.Len(), err)
	}

	// A .part of another zip, resumed with the ETag that holds, ends up
	// as no zip at all: it is dropped and the zip fetched whole.
	other := filepath.Join(t.TempDir(), "other.zip")
	if err := os.WriteFile(other+".part", bytes.Repeat([]byte("x"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DownloadExportFile(ctx, f.export, other, avxrm.DownloadOptions{}); err != nil {
		t.Errorf("a .part of another file: %v", err)
	}
	if got, _ := os.ReadFile(other); !bytes.Equal(got, whole.Bytes()) {
		t.Error("a .part of another file: the zip is not the export's")
	}

}

// An artifact replaced on the server between two attempts of a download
// (the first cut short): the resumption's If-Range no longer holds, the
// server sends the new file whole, and the file variant writes it; the
// io.Writer variant, which cannot take back what it wrote, says
// ErrChanged.
func TestDownloadArtifactOfAFileReplacedBetweenAttempts(t *testing.T) {
	sys := start(t, t.TempDir(), "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	direct := newClient(t, sys.Addr)
	f := newExportFixture(t, direct, 1<<20)
	var a api.Artifact
	for it, err := range direct.Artifacts(ctx, f.job) {
		if err != nil {
			t.Fatal(err)
		}
		if it.Path == "road.bin" {
			a = it
		}
	}
	proxy, addr := startCuttingProxy(t, sys.Addr, 300<<10)
	for _, toFile := range []bool{true, false} {
		replacement := make([]byte, 700<<10)
		_, _ = rand.Read(replacement)
		var replaced atomic.Bool
		hc, seen := recording(func(r *http.Request) {
			if r.Header.Get("Range") != "" && replaced.CompareAndSwap(false, true) {
				if _, err := direct.Do(ctx, http.MethodPut, "/jobs/"+f.job+"/artifacts/assets/road.bin", replacement, nil); err != nil {
					t.Error(err)
				}
			}
		})
		c := newClient(t, addr, avxrm.WithHTTPClient(hc), avxrm.WithBackoff(avxrm.Backoff{Initial: time.Millisecond, Max: 10 * time.Millisecond}))
		sum := sha256.Sum256(replacement)
		if toFile {
			out := filepath.Join(t.TempDir(), "road.bin")
			d, err := c.DownloadArtifactFile(ctx, f.job, a, out, avxrm.DownloadOptions{})
			got, _ := os.ReadFile(out)
			if err != nil || !bytes.Equal(got, replacement) || d.SHA256 != hex.EncodeToString(sum[:]) || d.Size != int64(len(replacement)) {
				t.Errorf("DownloadArtifactFile of a file replaced: %+v, %d bytes, %v; want the new file", d, len(got), err)
			}
			ex := seen()
			t.Logf("requests %+v", ex)
			if len(ex) < 3 || ex[0].status != http.StatusOK || ex[1].rng == "" || ex[1].ifRange != `"`+a.Sha256+`"` ||
				ex[1].status != http.StatusOK {
				t.Errorf("requests %+v; want the file, then a Range with If-Range on its sha256 answered 200 with the new one", ex)
			}
		} else {
			var buf bytes.Buffer
			_, err := c.DownloadArtifact(ctx, f.job, a, &buf, avxrm.DownloadOptions{})
			if !errors.Is(err, avxrm.ErrChanged) || !strings.Contains(err.Error(), "road.bin") {
				t.Errorf("DownloadArtifact of a file replaced: %v, want ErrChanged naming the file", err)
			}
			if buf.Len() == 0 || !bytes.HasPrefix(f.asset, buf.Bytes()) {
				t.Errorf("DownloadArtifact wrote %d bytes, not the start of the first file", buf.Len())
			}
		}
		f.asset = replacement
		a.Sha256, a.Size = hex.EncodeToString(sum[:]), int64(len(replacement))
	}
	if proxy.cuts.Load() == 0 {
		t.Error("no connection was cut")
	}
}

// An export that is not ready is refused before anything is written, with
// ErrExportNotReady naming it and its status; so is an unknown one, with
// the server's 404.
func TestDownloadExportNotReady(t *testing.T) {
	sys := start(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	c := newClient(t, sys.Addr)
	f := newExportFixture(t, c, 1<<10)
	dir := t.TempDir()
	out := filepath.Join(dir, "x.zip")
	caught := false
	for range 5 { // an export is pending until the exporter takes it: try until one is caught so
		x, err := c.CreateExport(ctx, f.job, api.ExportRequest{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.DownloadExportFile(ctx, *x.Id, out, avxrm.DownloadOptions{})
		if err == nil {
			continue
		}
		caught = true
		t.Log(err)
		if !errors.Is(err, avxrm.ErrExportNotReady) || !strings.Contains(err.Error(), *x.Id) ||
			!strings.Contains(err.Error(), "pending") && !strings.Contains(err.Error(), "building") {
			t.Errorf("download of an export not ready: %v; want ErrExportNotReady naming it and its status", err)
		}
		var buf bytes.Buffer
		if _, err := c.DownloadExport(ctx, *x.Id, &buf, avxrm.DownloadOptions{}); err != nil && (!errors.Is(err, avxrm.ErrExportNotReady) || buf.Len() > 0) {
			t.Errorf("DownloadExport of an export not ready: %v, %d bytes written", err, buf.Len())
		}
		break
	}
	if !caught {
		t.Fatal("no export was caught before it was ready")
	}
	if _, err := c.DownloadExportFile(ctx, "exp-does-not-exist", out, avxrm.DownloadOptions{}); !errors.Is(err, avxrm.ErrNotFound) {
		t.Errorf("unknown export: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused downloads left %v", entries)
	}
	if _, err := c.DownloadArtifactFile(ctx, f.job, api.Artifact{Kind: "asset", Path: "nope.bin"}, out, avxrm.DownloadOptions{}); !errors.Is(err, avxrm.ErrNotFound) ||
		!strings.Contains(err.Error(), "assets/nope.bin") {
		t.Errorf("unknown artifact: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused downloads left %v", entries)
	}
}
