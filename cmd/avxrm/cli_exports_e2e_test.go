package main_test

import (
	"archive/zip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The exports that exist, as a user reaches them: 'avxrm exports ls' lists
// the one 'avxrm export' made, 'exports download' writes a zip that
// archive/zip reads, a second download resumes the half a .part holds
// (a Range request, through a proxy that records it) into the same zip,
// 'exports rm' deletes it and 'exports get' then says 404.
func TestCLIExports(t *testing.T) {
	s := startServer(t)
	seed(t, s)
	job := strings.TrimSpace(s.must(t, "submit", "--queue", "Default", "--app", "sim:1.0", "--workers", "1", "--env", "SLEEP=0"))
	dir := t.TempDir()
	for name, body := range map[string]string{"scenarios/s-001/scenario.xosc": "<OpenSCENARIO/>", "assets/common.txt": strings.Repeat("common ", 500)} {
		f := filepath.Join(dir, filepath.Base(name))
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		s.must(t, "artifacts", "put", job, name, f)
	}
	// -o is the output format here too, -O the zip: a file name given to
	// -o is refused, saying so, before any export is made.
	if _, errs, code := s.run(t, "export", job, "--samples", "s-001", "-o", filepath.Join(dir, "first.zip")); code != 1 ||
		!strings.Contains(errs, "want an output format: table, json or yaml; the zip to write is -O/--output-file") {
		t.Errorf("export -o <file>: exit %d, %q; want 1 and -O named", code, errs)
	}
	var made struct{ ID, Status string }
	if err := json.Unmarshal([]byte(s.must(t, "export", job, "--samples", "s-001", "-O", filepath.Join(dir, "first.zip"), "-o", "json")), &made); err != nil || made.Status != "ready" {
		t.Fatalf("export -o json: %v %+v, want the ready export", err, made)
	}
	readZip(t, filepath.Join(dir, "first.zip"))

	var listed []struct{ ID, Status string }
	if err := json.Unmarshal([]byte(s.must(t, "exports", "ls", job, "-o", "json")), &listed); err != nil || len(listed) != 1 || listed[0] != made {
		t.Fatalf("exports ls -o json: %v %+v, want the one export made, %+v", err, listed, made)
	}
	exp := listed[0].ID
	if ls := s.must(t, "exports", "ls", job); !regexp.MustCompile(`(?m)^ID +STATUS +FILES +SIZE +AGE .*\n` + exp + ` +ready +2 +\d+ `).MatchString(ls) {
		t.Errorf("exports ls:\n%s", ls)
	}
	if out := s.must(t, "exports", "get", exp); !strings.Contains(out, "status: ready") || !strings.Contains(out, "job_id: "+job) {
		t.Errorf("exports get:\n%s", out)
	}

	// Into <export id>.zip here by default.
	get := s.command(t.Context(), "exports", "download", exp)
	get.Dir = t.TempDir()
	if out, err := get.Output(); err != nil || !strings.HasPrefix(string(out), exp+".zip: 2 files verified against manifest.json") {
		t.Fatalf("exports download: %v %q", err, out)
	}
	zipPath := filepath.Join(get.Dir, exp+".zip")
	whole, err := os.ReadFile(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	readZip(t, zipPath)

	// A .part holding the first half is resumed from where it ends.
	var mu sync.Mutex
	var ranges []string
	u, _ := url.Parse(s.url)
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/download") {
			mu.Lock()
			ranges = append(ranges, r.Header.Get("Range"))
			mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	if err := os.Remove(zipPath); err != nil {
		t.Fatal(err)
	}
	half := len(whole) / 2
	if err := os.WriteFile(zipPath+".part", whole[:half], 0o644); err != nil {
		t.Fatal(err)
	}
	if out := s.must(t, "--server", srv.URL, "exports", "download", exp, "-O", get.Dir); !strings.Contains(out, "2 files verified") {
		t.Errorf("exports download of a .part: %q", out)
	}
	if want := "bytes=" + strconv.Itoa(half) + "-"; len(ranges) != 1 || ranges[0] != want {
		t.Errorf("downloads asked %q, want one %q", ranges, want)
	}
	if again, _ := os.ReadFile(zipPath); string(again) != string(whole) {
		t.Errorf("the resumed zip differs from the whole one")
	}
	if _, err := os.Stat(zipPath + ".part"); !os.IsNotExist(err) {
		t.Errorf("the .part is left behind: %v", err)
	}
	readZip(t, zipPath)

	if out := s.must(t, "exports", "rm", exp); out != exp+" deleted\n" {
		t.Errorf("exports rm: %q", out)
	}
	if _, errs, code := s.run(t, "exports", "get", exp); code != 1 || !strings.Contains(errs, "404") || !strings.Contains(errs, exp) {
		t.Errorf("exports get of a deleted export: exit %d %q", code, errs)
	}
	if _, errs, code := s.run(t, "exports", "rm", exp); code != 1 || !strings.Contains(errs, "404") || !strings.Contains(errs, exp) {
		t.Errorf("exports rm of a deleted export: exit %d %q", code, errs)
	}
	if out := s.must(t, "exports", "ls", job, "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("exports ls after rm: %q", out)
	}
}

// readZip fails the test unless archive/zip reads every file of the zip.
func readZip(t *testing.T, path string) {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Errorf("%s in %s: %v", f.Name, path, err)
		}
		rc.Close()
	}
}
