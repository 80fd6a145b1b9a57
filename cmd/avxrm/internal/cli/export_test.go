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
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/avxrm/rm/cmd/avxrm/internal/allinone"
	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
	"github.com/oapi-codegen/nullable"
)

var binary string

func TestMain(m *testing.M) { allinone.RunTests(m, &binary) }

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A download cut short is resumed from its .part file with a Range request,
// and the result verifies; a .part of another zip is replaced, not trusted.
func TestExportDownloadResumes(t *testing.T) {
	srv := allinone.Start(t, binary, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	var mu sync.Mutex
	var ranges []string
	var statuses []int
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err == nil && strings.HasSuffix(r.URL.Path, "/download") {
			mu.Lock()
			ranges, statuses = append(ranges, r.Header.Get("Range")), append(statuses, resp.StatusCode)
			mu.Unlock()
		}
		return resp, err
	})}
	c, err := avxrm.New(srv.URL, avxrm.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateQueue(ctx, api.QueueBody{Name: "q"}); err != nil {
		t.Fatal(err)
	}
	img := "local"
	app, err := c.CreateApplication(ctx, api.ApplicationBody{Name: "true", Version: "1", Image: &img, Command: nullable.NewNullableWithValue([]string{"/bin/true"})})
	if err != nil {
		t.Fatal(err)
	}
	job, err := c.SubmitJob(ctx, api.JobBody{QueueId: "q", WorkerInstances: 1, Application: api.JobApplicationRef{Id: app.Id}})
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("road network data "), 20000) // a zip large enough to cut in two
	for path, body := range map[string][]byte{"scenarios/s-001/scenario.xosc": []byte("<OpenSCENARIO/>"), "assets/road.bin": big} {
		if _, err := c.Do(ctx, http.MethodPut, "/jobs/"+*job.Id+"/artifacts/"+path, body, nil); err != nil {
			t.Fatal(err)
		}
	}
	x, err := c.CreateExport(ctx, *job.Id, api.ExportRequest{Samples: nullable.NewNullableWithValue([]string{"s-001"})})
	if err != nil {
		t.Fatal(err)
	}
	if x, err = c.WaitExport(ctx, *x.Id); err != nil || *x.Status != "ready" {
		t.Fatalf("export: %+v %v", x, err)
	}
	dir := t.TempDir()
	whole := filepath.Join(dir, "whole.zip")
	if n, err := downloadExport(ctx, c, *x.Id, *x.Sha256, whole); err != nil || n != 2 {
		t.Fatalf("download: %d files, %v", n, err)
	}
	full, _ := os.ReadFile(whole)

	// Half of it in the .part file: only the rest is fetched.
	out := filepath.Join(dir, "resumed.zip")
	half := len(full) / 2
	if err := os.WriteFile(out+".part", full[:half], 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := downloadExport(ctx, c, *x.Id, *x.Sha256, out); err != nil || n != 2 {
		t.Fatalf("resumed download: %d files, %v", n, err)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, full) {
		t.Error("the resumed zip differs from the whole one")
	}

	// A .part of something else does not match the ETag: fetched whole again.
	other := filepath.Join(dir, "other.zip")
	if err := os.WriteFile(other+".part", []byte("not this zip"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := downloadExport(ctx, c, *x.Id, "0000", other); err == nil {
		t.Error("a zip whose sha256 does not match was accepted")
	}
	if _, err := os.Stat(other + ".part"); !os.IsNotExist(err) {
		t.Errorf("a .part that failed verification is kept, to be resumed wrongly: %v", err)
	}
	mu.Lock()
	if len(ranges) != 3 || ranges[0] != "" || statuses[0] != 200 || ranges[1] == "" || statuses[1] != http.StatusPartialContent || statuses[2] != 200 {
		t.Errorf("download requests: ranges %q statuses %v, want a whole one, a 206 for the rest, a whole one", ranges, statuses)
	}
	mu.Unlock()
	if _, err := os.Stat(out + ".part"); !os.IsNotExist(err) {
		t.Errorf("the .part file is left: %v", err)
	}
}

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

// avxrm artifacts get writes through <file>.part: a .part of another file
// is noticed and the file fetched whole, half of the file in it is
// resumed, and what is left is the server's file, checked, and no .part;
// an empty artifact is an empty file.
func TestArtifactGetResumesItsPart(t *testing.T) {
	srv := allinone.Start(t, binary, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	c, err := avxrm.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateQueue(ctx, api.QueueBody{Name: "q"}); err != nil {
		t.Fatal(err)
	}
	img := "local"
	app, err := c.CreateApplication(ctx, api.ApplicationBody{Name: "true", Version: "1", Image: &img, Command: nullable.NewNullableWithValue([]string{"/bin/true"})})
	if err != nil {
		t.Fatal(err)
	}
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

	empty := filepath.Join(dir, "empty.bin")
	stdout, stderr, err := runCLI(t, srv.URL, "artifacts", "get", *job.Id, "assets/empty.bin", "-O", empty)
	if body, rerr := os.ReadFile(empty); err != nil || rerr != nil || len(body) != 0 || !strings.HasPrefix(stdout, empty+": 0 bytes, sha256 e3b0c442") {
		t.Errorf("get of an empty artifact: %v, printed %q%s; file %q, %v", err, stdout, stderr, body, rerr)
	}
}
