package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/avxrm/rm/cmd/avxrm/internal/allinone"
	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
)

var binary string

func TestMain(m *testing.M) { allinone.RunTests(m, &binary) }

// recordingProxy is a server that forwards every request to target and
// remembers, of each GET whose path ends in suffix, "<Range> <status>".
func recordingProxy(t *testing.T, target, suffix string) (string, func() []string) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	var mu sync.Mutex
	var seen []string
	proxy.ModifyResponse = func(resp *http.Response) error {
		if r := resp.Request; r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, suffix) {
			mu.Lock()
			seen = append(seen, fmt.Sprintf("%q %d", r.Header.Get("Range"), resp.StatusCode))
			mu.Unlock()
		}
		return nil
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return srv.URL, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

// avxrm export and artifacts get write through <file>.part: a .part of
// another file is noticed and the file fetched whole, half of the file in
// it is resumed, and what is left is the server's file, checked, and no
// .part; an empty artifact is an empty file.
func TestExportAndGetResumeTheirPart(t *testing.T) {
	ctx := context.Background()
	srv, c, app := startWithApp(t, "true", "/bin/true")
	job, err := c.SubmitJob(ctx, api.JobBody{QueueId: "q", WorkerInstances: 1, Application: api.JobApplicationRef{Id: app.Id}})
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("road network data "), 20000)
	for path, body := range map[string][]byte{"scenarios/s-001/scenario.xosc": []byte("<OpenSCENARIO/>"), "assets/road.bin": big, "assets/empty.bin": nil} {
		if _, err := c.Do(ctx, http.MethodPut, "/jobs/"+*job.Id+"/artifacts/"+path, body, nil); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()

	// Each export is a new zip: a .part left by another is resumed (If-Range
	// holds: it names this export's zip), does not verify, and the zip is
	// fetched whole.
	exports, exportGets := recordingProxy(t, srv.URL, "/download")
	out := filepath.Join(dir, "sweep.zip")
	if err := os.WriteFile(out+".part", []byte("not this zip"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := runCLI(t, exports, "export", *job.Id, "--samples", "s-001", "-O", out)
	if err != nil || !regexp.MustCompile(`^`+regexp.QuoteMeta(out)+`: 3 files verified against manifest.json, \d+ bytes, sha256 [0-9a-f]{64}\n$`).MatchString(stdout) {
		t.Fatalf("export over a .part of another zip: %v\n%s%s", err, stdout, stderr)
	}
	zsum := strings.TrimSpace(stdout[strings.LastIndex(stdout, " ")+1:])
	if n, err := avxrm.VerifyExportZip(out); err != nil || n != 3 {
		t.Errorf("the zip written: %d files, %v", n, err)
	}
	if full, _ := os.ReadFile(out); fmt.Sprintf("%x", sha256.Sum256(full)) != zsum {
		t.Errorf("the zip written does not have the sha256 printed, %s", zsum)
	}
	if got, want := exportGets(), []string{`"bytes=12-" 206`, `"" 200`}; !slices.Equal(got, want) {
		t.Errorf("export requests %q, want %q: the .part's rest, which does not verify, then the zip whole", got, want)
	}

	// An artifact: half of it in the .part is resumed; a .part of another
	// file, or longer than the file, is noticed and the file fetched anew.
	artifacts, artifactGets := recordingProxy(t, srv.URL, "/artifacts/assets/road.bin")
	sum := sha256.Sum256(big)
	for _, tc := range []struct {
		name string
		part []byte
	}{{"no", nil}, {"half the file in the", big[:len(big)/2]}, {"another file in the", bytes.Repeat([]byte("x"), len(big)/2)},
		{"a longer file in the", append(bytes.Clone(big), "more"...)}} {
		out := filepath.Join(dir, "road.bin")
		if tc.part != nil {
			if err := os.WriteFile(out+".part", tc.part, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		stdout, stderr, err := runCLI(t, artifacts, "artifacts", "get", *job.Id, "assets/road.bin", "-O", dir)
		body, _ := os.ReadFile(out)
		if want := fmt.Sprintf("%s: %d bytes, sha256 %x\n", out, len(big), sum); err != nil || stdout != want || !bytes.Equal(body, big) {
			t.Errorf("%s .part: %v, printed %q%s, wrote %d bytes; want %q and the asset", tc.name, err, stdout, stderr, len(body), want)
		}
		if _, err := os.Stat(out + ".part"); !os.IsNotExist(err) {
			t.Errorf("%s .part: the .part is left: %v", tc.name, err)
		}
	}
	rest := fmt.Sprintf("%q", fmt.Sprintf("bytes=%d-", len(big)/2))
	past := fmt.Sprintf("%q", fmt.Sprintf("bytes=%d-", len(big)+4))
	want := []string{`"" 200`, rest + " 206", rest + " 206", `"" 200`, past + " 416", `"" 200`}
	if got := artifactGets(); !slices.Equal(got, want) {
		t.Errorf("artifact requests %q, want %q: whole; the rest; the rest that did not fit, whole; past the end, whole", got, want)
	}

	// Without --samples: every sample the job has scenario files for.
	all := filepath.Join(dir, "all.zip")
	if stdout, stderr, err := runCLI(t, srv.URL, "export", *job.Id, "-O", all); err != nil ||
		!strings.HasPrefix(stdout, all+": 3 files verified") || !strings.Contains(stderr, "every sample job "+*job.Id+" has (1: s-001)") {
		t.Errorf("export without --samples: %v\n%s%s", err, stdout, stderr)
	}

	empty := filepath.Join(dir, "empty.bin")
	stdout, stderr, err = runCLI(t, srv.URL, "artifacts", "get", *job.Id, "assets/empty.bin", "-O", empty)
	if body, rerr := os.ReadFile(empty); err != nil || rerr != nil || len(body) != 0 || !strings.HasPrefix(stdout, empty+": 0 bytes, sha256 e3b0c442") {
		t.Errorf("get of an empty artifact: %v, printed %q%s; file %q, %v", err, stdout, stderr, body, rerr)
	}
}
