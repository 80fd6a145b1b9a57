package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
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
	var artifactGets []string // "<Range> <status>" of each GET of the asset
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err == nil && strings.HasSuffix(r.URL.Path, "/download") {
			mu.Lock()
			ranges, statuses = append(ranges, r.Header.Get("Range")), append(statuses, resp.StatusCode)
			mu.Unlock()
		}
		if err == nil && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/artifacts/assets/road.bin") {
			mu.Lock()
			artifactGets = append(artifactGets, fmt.Sprintf("%q %d", r.Header.Get("Range"), resp.StatusCode))
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

	// An artifact: its sha256 comes from the answer's ETag. Half of it in the
	// .part is resumed; a .part of another file is noticed and fetched anew.
	p, err := artifactPath(*job.Id, "assets/road.bin", "")
	if err != nil {
		t.Fatal(err)
	}
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
		got, size, err := fetchFile(ctx, c, p, "", out, nil)
		body, _ := os.ReadFile(out)
		if err != nil || size != int64(len(big)) || !bytes.Equal(body, big) || got != hex.EncodeToString(sum[:]) {
			t.Errorf("%s .part: %d bytes, sha256 %s, %v; want the asset's %d, %x", tc.name, size, got, err, len(big), sum)
		}
	}
	rest := fmt.Sprintf("%q", fmt.Sprintf("bytes=%d-", len(big)/2))
	past := fmt.Sprintf("%q", fmt.Sprintf("bytes=%d-", len(big)+4))
	want := []string{`"" 200`, rest + " 206", rest + " 206", `"" 200`, past + " 416", `"" 200`}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(artifactGets, want) {
		t.Errorf("artifact requests %q, want %q: whole; the rest; the rest that did not fit, whole; past the end, whole", artifactGets, want)
	}
}
