package avxrm_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
)

// fileServer serves one artifact as the API does (http.ServeContent, ETag
// "<sha256>"), and can cut each answer after cut bytes of its body or
// send other bytes than its ETag says.
type fileServer struct {
	mu      sync.Mutex
	content []byte
	cut     int  // 0: no cut
	corrupt bool // the bytes are not those of the ETag
	ranges  []string
}

func (s *fileServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	content, cut, corrupt := s.content, s.cut, s.corrupt
	s.mu.Unlock()
	sum := sha256.Sum256(content)
	w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:])+`"`)
	w.Header().Set("Content-Type", "application/octet-stream")
	if corrupt {
		content = bytes.Clone(content)
		content[0] ^= 0xff
	}
	if cut > 0 {
		w = &cuttingWriter{ResponseWriter: w, left: cut}
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(content))
}

func (s *fileServer) asked() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.ranges
	s.ranges = nil
	return r
}

// cuttingWriter drops the connection once left bytes of the body are out.
type cuttingWriter struct {
	http.ResponseWriter
	left int
}

func (w *cuttingWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		n, _ := w.ResponseWriter.Write(p[:w.left])
		w.ResponseWriter.(http.Flusher).Flush()
		w.left -= n
		panic(http.ErrAbortHandler)
	}
	w.left -= len(p)
	return w.ResponseWriter.Write(p)
}

var asset = api.Artifact{Kind: "asset", Path: "roads/a.bin"}

// A download to a file that its retries cannot finish keeps its .part and
// says so; the next call resumes it with a Range and ends with the whole
// file, checked. A download whose bytes do not match the ETag leaves
// neither a .part nor a file. A complete .part is checked and moved into
// place without a byte sent again.
func TestDownloadArtifactFileKeepsOnlyWhatIsRight(t *testing.T) {
	content := make([]byte, 200<<10)
	_, _ = rand.Read(content)
	sum := sha256.Sum256(content)
	fs := &fileServer{content: content, cut: 50 << 10}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	c, _ := avxrm.New(srv.URL, avxrm.WithRetries(0))
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "a.bin")

	_, err := c.DownloadArtifactFile(ctx, "job-1", asset, out, avxrm.DownloadOptions{})
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "assets/roads/a.bin of job job-1") || !strings.Contains(err.Error(), out+".part keeps") {
		t.Fatalf("a download cut with no retries: %v; want an error naming the artifact and the .part kept", err)
	}
	if part, _ := os.ReadFile(out + ".part"); !bytes.Equal(part, content[:50<<10]) {
		t.Fatalf("the .part holds %d bytes, want the 50 KiB that came", len(part))
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a partial download is at %s: %v", out, err)
	}
	fs.asked()
	fs.mu.Lock()
	fs.cut = 0
	fs.mu.Unlock()
	d, err := c.DownloadArtifactFile(ctx, "job-1", asset, out, avxrm.DownloadOptions{})
	got, _ := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, content) || d.SHA256 != hex.EncodeToString(sum[:]) || d.Size != int64(len(content)) {
		t.Fatalf("the resumed download: %+v, %v", d, err)
	}
	if asked := joined(fs.asked()); asked != "bytes=51200-" {
		t.Errorf("the resumption asked %q, want the rest", asked)
	}

	// A whole .part, of the sha256 the listing names: nothing more comes.
	if err := os.WriteFile(out+".part", content, 0o644); err != nil {
		t.Fatal(err)
	}
	listed := asset
	listed.Sha256 = hex.EncodeToString(sum[:])
	if d, err := c.DownloadArtifactFile(ctx, "job-1", listed, out, avxrm.DownloadOptions{}); err != nil || d.Size != int64(len(content)) {
		t.Errorf("a whole .part: %+v, %v", d, err)
	}
	if asked := joined(fs.asked()); asked != "bytes=204800-" {
		t.Errorf("a whole .part asked %q, want past its end", asked)
	}

	// A .part longer than the file is of another one: it is fetched whole,
	// retries or not.
	if err := os.WriteFile(out+".part", append(bytes.Clone(content), "more"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if d, err := c.DownloadArtifactFile(ctx, "job-1", asset, out, avxrm.DownloadOptions{}); err != nil || d.Size != int64(len(content)) {
		t.Errorf("a .part longer than the file: %+v, %v", d, err)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, content) {
		t.Error("a .part longer than the file: the file is not the server's")
	}
	if asked := joined(fs.asked()); asked != "bytes=204804- " {
		t.Errorf("a .part longer than the file asked %q, want past its end, then the whole", asked)
	}

	fs.mu.Lock()
	fs.corrupt = true
	fs.mu.Unlock()
	bad := filepath.Join(t.TempDir(), "bad.bin")
	if _, err := c.DownloadArtifactFile(ctx, "job-1", asset, bad, avxrm.DownloadOptions{}); !errors.Is(err, avxrm.ErrVerify) {
		t.Errorf("bytes that do not match their ETag: %v, want ErrVerify", err)
	} else {
		t.Log(err)
	}
	for _, p := range []string{bad, bad + ".part"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a download that failed its check left %s: %v", p, err)
		}
	}
	var buf bytes.Buffer
	if _, err := c.DownloadArtifact(ctx, "job-1", asset, &buf, avxrm.DownloadOptions{}); !errors.Is(err, avxrm.ErrVerify) {
		t.Errorf("DownloadArtifact of bytes that do not match their ETag: %v, want ErrVerify", err)
	}
}

// joined joins the Range headers asked for.
func joined(r []string) string { return strings.Join(r, " ") }

// A server that cuts every answer before its first byte: the retries give
// up (they are counted only while no byte comes), nothing is left behind,
// and a context that ends stops the download with its error.
func TestDownloadGivesUpAndStops(t *testing.T) {
	fs := &fileServer{content: bytes.Repeat([]byte("x"), 1000)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.mu.Lock()
		fs.ranges = append(fs.ranges, r.Header.Get("Range"))
		fs.mu.Unlock()
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
	defer srv.Close()
	c, _ := avxrm.New(srv.URL, avxrm.WithRetries(3), avxrm.WithBackoff(avxrm.Backoff{Initial: time.Millisecond, Max: time.Millisecond}))
	out := filepath.Join(t.TempDir(), "a.bin")
	_, err := c.DownloadArtifactFile(context.Background(), "job-1", asset, out, avxrm.DownloadOptions{})
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "at 0 of 1000 bytes") {
		t.Errorf("a download that never comes: %v, want an error saying how far it got", err)
	}
	if n := len(fs.asked()); n != 4 {
		t.Errorf("%d requests, want 1 and 3 retries", n)
	}
	if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 0 {
		t.Errorf("a download of no byte left %v", entries)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.DownloadArtifact(ctx, "job-1", asset, &bytes.Buffer{}, avxrm.DownloadOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled download: %v", err)
	} else {
		t.Log(err)
	}
}

// An export's zip is fixed once it is ready: a download whose ETag or
// size is not its record's is ErrVerify before a byte is written, and a
// failed export is ErrExportNotReady with its reason.
func TestDownloadExportHoldsToItsRecord(t *testing.T) {
	zip := []byte("PK not really a zip")
	sum := sha256.Sum256(zip)
	record := `{"id":"exp-1","status":"ready","size":19,"sha256":"` + strings.Repeat("0", 64) + `"}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case avxrm.BasePath + "/scenario-exports/exp-1":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(record))
		case avxrm.BasePath + "/scenario-exports/exp-2":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"id":"exp-2","status":"failed","reason":"no such sample"}`))
		default:
			w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:])+`"`)
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(zip))
		}
	}))
	defer srv.Close()
	c, _ := avxrm.New(srv.URL)
	var buf bytes.Buffer
	if _, err := c.DownloadExport(context.Background(), "exp-1", &buf, avxrm.DownloadOptions{}); !errors.Is(err, avxrm.ErrVerify) || buf.Len() > 0 {
		t.Errorf("a zip of another ETag than its record's: %v, %d bytes written; want ErrVerify and none", err, buf.Len())
	}
	_, err := c.DownloadExport(context.Background(), "exp-2", &buf, avxrm.DownloadOptions{})
	if !errors.Is(err, avxrm.ErrExportNotReady) || !strings.Contains(err.Error(), "failed (no such sample)") {
		t.Errorf("a failed export: %v", err)
	}
}

// An empty artifact is saved as an empty file (its .part was made only by a
// first byte, so the rename found none).
func TestDownloadArtifactFileOfAnEmptyFile(t *testing.T) {
	srv := httptest.NewServer(&fileServer{content: []byte{}})
	defer srv.Close()
	c, _ := avxrm.New(srv.URL)
	out := filepath.Join(t.TempDir(), "empty.bin")
	d, err := c.DownloadArtifactFile(context.Background(), "job-1", asset, out, avxrm.DownloadOptions{})
	got, rerr := os.ReadFile(out)
	empty := sha256.Sum256(nil)
	if err != nil || rerr != nil || len(got) != 0 || d.Size != 0 || d.SHA256 != hex.EncodeToString(empty[:]) {
		t.Fatalf("an empty artifact: %+v, %v; the file: %q, %v", d, err, got, rerr)
	}
	if _, err := os.Stat(out + ".part"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a .part is left: %v", err)
	}
}
