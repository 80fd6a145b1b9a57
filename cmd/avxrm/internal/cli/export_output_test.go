package cli

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// An -O the export could never be written to is refused before the export
// is asked for: no POST, so no zip built for nothing, and the error names it.
func TestExportChecksOutputFirst(t *testing.T) {
	var mu sync.Mutex
	var requests []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests = append(requests, r.Method+" "+r.URL.Path)
		mu.Unlock()
		http.Error(w, "not expected", http.StatusTeapot)
	}))
	defer srv.Close()
	dir := t.TempDir()
	readOnly := filepath.Join(dir, "ro")
	if err := os.Mkdir(readOnly, 0o555); err != nil {
		t.Fatal(err)
	}
	tests := map[string]string{ // (a directory -O names by its trailing / is made: below)
		filepath.Join(dir, "missing", "x.zip"): "there is no directory " + filepath.Join(dir, "missing"),
	}
	if os.Geteuid() != 0 { // root writes anywhere
		tests[filepath.Join(readOnly, "x.zip")] = "permission denied"
	}
	for out, want := range tests {
		root := Root()
		root.SetOut(&bytes.Buffer{})
		root.SetErr(&bytes.Buffer{})
		root.SetArgs([]string{"export", "job-1", "--samples", "s-001", "-O", out, "--server", srv.URL})
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), out) || !strings.Contains(err.Error(), want) {
			t.Errorf("export -O %s = %v, want an error naming it: %s", out, err, want)
		}
		if strings.HasSuffix(out, ".zip") { // exports download checks its -O likewise
			root = Root()
			root.SetOut(&bytes.Buffer{})
			root.SetErr(&bytes.Buffer{})
			root.SetArgs([]string{"exports", "download", "exp-1", "-O", out, "--server", srv.URL})
			if err := root.Execute(); err == nil || !strings.Contains(err.Error(), out) || !strings.Contains(err.Error(), want) {
				t.Errorf("exports download -O %s = %v, want an error naming it: %s", out, err, want)
			}
		}
	}
	if len(requests) != 0 {
		t.Errorf("requests %q, want none", requests)
	}
}

// exportServer is an API with one export, exp-1 of job-1, ready with a
// zip of one file and warnings, which broken, if set, answers the download
// of instead.
func exportServer(t *testing.T, broken http.HandlerFunc, warnings ...string) (url string, zipSize int) {
	t.Helper()
	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	body := []byte("<xosc/>")
	sum := sha256.Sum256(body)
	mw, _ := zw.Create("manifest.json")
	fmt.Fprintf(mw, `{"files":[{"path":"scenarios/s-001/a.xosc","size":%d,"sha256":"%x"}]}`, len(body), sum)
	fw, _ := zw.Create("scenarios/s-001/a.xosc")
	_, _ = fw.Write(body)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	zsum := sha256.Sum256(zbuf.Bytes())
	ws, _ := json.Marshal(warnings)
	export := fmt.Sprintf(`{"id":"exp-1","job_id":"job-1","status":"%%s","request":{"samples":["s-001"]},"size":%d,"file_count":1,"sha256":"%x","expires_at":"2030-01-01T00:00:00Z","warnings":%s}`, zbuf.Len(), zsum, ws)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method + " " + r.URL.Path {
		case "POST /api/resources/v1/jobs/job-1/scenario-exports":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusAccepted)
			fmt.Fprintf(w, export, "pending")
		case "GET /api/resources/v1/jobs/job-1/artifacts": // what export takes by default
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"items":[{"kind":"scenario","sample_id":"s-001","path":"a.xosc","size":%d,"sha256":"%x","created_at":"2026-01-01T00:00:00Z"}]}`, len(body), sum)
		case "GET /api/resources/v1/scenario-exports/exp-1":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, export, "ready")
		case "GET /api/resources/v1/scenario-exports/exp-1/download":
			if broken != nil {
				broken(w, r)
				return
			}
			w.Header().Set("ETag", fmt.Sprintf(`"%x"`, zsum))
			http.ServeContent(w, r, "exp-1.zip", time.Time{}, bytes.NewReader(zbuf.Bytes()))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, zbuf.Len()
}

// avxrm export says on stderr what it is at: waiting for the export, then
// what is ready and where it goes, before a download that may take long.
func TestExportReportsProgress(t *testing.T) {
	srv, size := exportServer(t, nil)
	out := filepath.Join(t.TempDir(), "x.zip")
	root := Root()
	var stdout, stderr bytes.Buffer
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetArgs([]string{"export", "job-1", "--samples", "s-001", "-O", out, "--server", srv})
	if err := root.Execute(); err != nil {
		t.Fatalf("export: %v (stderr %s)", err, stderr.String())
	}
	want := fmt.Sprintf("export exp-1: waiting\nexport exp-1: ready, 1 file, %d bytes; downloading to %s\n", size, out)
	if stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
	if !strings.HasPrefix(stdout.String(), out+": 1 file verified") {
		t.Errorf("stdout %q", stdout.String())
	}
}

// avxrm export passes on the export's warnings (paths that differ only in
// case) on stderr, one a line.
func TestExportPassesOnItsWarnings(t *testing.T) {
	warning := "scenarios/s-001/A.xosc and scenarios/s-001/a.xosc differ only in case: unpacked where case is ignored (macOS, Windows), one replaces the other"
	srv, _ := exportServer(t, nil, warning)
	root := Root()
	var stderr bytes.Buffer
	root.SetOut(&bytes.Buffer{})
	root.SetErr(&stderr)
	root.SetArgs([]string{"export", "job-1", "--samples", "s-001", "-O", filepath.Join(t.TempDir(), "x.zip"), "--server", srv})
	if err := root.Execute(); err != nil {
		t.Fatalf("export: %v (stderr %s)", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "\nexport exp-1: warning: "+warning+"\n") {
		t.Errorf("stderr %q, want the warning on a line of its own", stderr.String())
	}
}

// A download that fails for good says how to try again without a new
// export: 'avxrm exports download <export>', which resumes the .part.
func TestExportNamesTheRetryOfItsDownload(t *testing.T) {
	srv, _ := exportServer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"title":"Forbidden","status":403,"detail":"not yours"}`))
	})
	out := filepath.Join(t.TempDir(), "x.zip")
	msg, code, _ := run(t, "", "export", "job-1", "--samples", "s-001", "-O", out, "--server", srv)
	if want := "'avxrm exports download exp-1 -O " + out + "' tries again"; code != ExitFailed || !strings.Contains(msg, "not yours") || !strings.Contains(msg, want) {
		t.Errorf("export whose download fails: exit %d %q, want the reason and %q", code, msg, want)
	}
}

// 'avxrm exports download' writes the zip of an export that exists: into
// <export id>.zip by default, into a directory -O names, to stdout with
// -O -; each the server's bytes.
func TestExportsDownloadWritesWhereAsked(t *testing.T) {
	srv, size := exportServer(t, nil)
	dir := t.TempDir()
	t.Chdir(dir)
	if msg, code, out := run(t, "", "exports", "download", "exp-1", "--server", srv); code != ExitOK || !strings.HasPrefix(out, "exp-1.zip: 1 file verified") {
		t.Errorf("exports download: exit %d %q %q", code, msg, out)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if msg, code, _ := run(t, "", "exports", "download", "exp-1", "-O", sub, "--server", srv); code != ExitOK {
		t.Errorf("exports download -O dir: exit %d %q", code, msg)
	}
	_, code, stdout := run(t, "", "exports", "download", "exp-1", "-O", "-", "--server", srv)
	for _, f := range []string{filepath.Join(dir, "exp-1.zip"), filepath.Join(sub, "exp-1.zip")} {
		if got, err := os.ReadFile(f); err != nil || len(got) != size || string(got) != stdout || code != ExitOK {
			t.Errorf("%s: %d bytes (%v), stdout %d bytes (exit %d), want %d each", f, len(got), err, len(stdout), code, size)
		}
	}
}

// avxrm export takes -o as every command does, the output format: with
// json or yaml it prints the export, ready, while the zip still goes to
// -O; -O a directory writes <export id>.zip there, -O - to stdout.
func TestExportOutputFormat(t *testing.T) {
	srv, size := exportServer(t, nil)
	dir := t.TempDir()
	out := filepath.Join(dir, "x.zip")
	stdout, stderr, err := runCLI(t, srv, "export", "job-1", "-O", out, "-o", "json")
	var x struct{ ID, Status, SHA256 string }
	if err != nil || json.Unmarshal([]byte(stdout), &x) != nil || x.ID != "exp-1" || x.Status != "ready" || x.SHA256 == "" {
		t.Fatalf("export -o json: %v, stdout %q (stderr %s), want the ready export", err, stdout, stderr)
	}
	if n, err := avxrm.VerifyExportZip(out); err != nil || n != 1 {
		t.Errorf("export -o json wrote %s: %d files, %v", out, n, err)
	}
	if stdout, _, err := runCLI(t, srv, "export", "job-1", "-O", out, "-o", "yaml"); err != nil || !strings.Contains(stdout, "id: exp-1\n") {
		t.Errorf("export -o yaml: %v %q", err, stdout)
	}
	if stdout, _, err := runCLI(t, srv, "export", "job-1", "-O", dir); err != nil || !strings.HasPrefix(stdout, filepath.Join(dir, "exp-1.zip")+": 1 file verified") {
		t.Errorf("export -O <dir>: %v %q, want exp-1.zip in it", err, stdout)
	}
	if stdout, _, err := runCLI(t, srv, "export", "job-1", "-O", "-"); err != nil || len(stdout) != size || !strings.HasPrefix(stdout, "PK") {
		t.Errorf("export -O -: %v, %d bytes on stdout, want the zip's %d", err, len(stdout), size)
	}
	for _, args := range [][]string{{"export", "job-1"}, {"exports", "download", "exp-1"}, {"artifacts", "get", "job-1", "scenarios/s-001/a.xosc"}} {
		if out, _, err := runCLI(t, srv, append(args, "-O", "-", "-o", "json")...); err == nil || out != "" || !strings.Contains(err.Error(), "-O - writes the file to stdout") {
			t.Errorf("%s -O - -o json: %v, stdout %d bytes; want refused", strings.Join(args, " "), err, len(out))
		}
	}
}

// An -o that is no output format is refused before any request, naming
// the flag and the formats; where the command writes a file and the value
// looks like one, the error says that -O is the flag meant.
func TestOutputIsAFormat(t *testing.T) {
	srv, requests := unexpectedServer(t)
	const bad = `-o/--output %q: want an output format: table, json or yaml`
	for args, want := range map[string]string{
		"export job-1 -o sweep.zip":                        fmt.Sprintf(bad, "sweep.zip") + "; the zip to write is -O/--output-file",
		"-o out/ export job-1":                             fmt.Sprintf(bad, "out/") + "; the zip to write is -O/--output-file",
		"export job-1 -o -":                                fmt.Sprintf(bad, "-") + "; the zip to write is -O/--output-file",
		"export job-1 -o xml":                              fmt.Sprintf(bad, "xml"),
		"exports download exp-1 -o exp.zip":                fmt.Sprintf(bad, "exp.zip") + "; the zip to write is -O/--output-file",
		"artifacts get job-1 scenarios/s/a.xosc -o a.xosc": fmt.Sprintf(bad, "a.xosc") + "; the file to write is -O/--output-file",
		"jobs ls -o jobs.json":                             fmt.Sprintf(bad, "jobs.json"),
		"version --client -o text":                         fmt.Sprintf(bad, "text"),
		"jobs cancel job-1 -o JSON":                        fmt.Sprintf(bad, "JSON"),
	} {
		if msg, code, out := run(t, "", append(strings.Fields(args), "--server", srv.URL)...); code != ExitFailed || msg != "avxrm: "+want+"\n" || out != "" {
			t.Errorf("avxrm %s: exit %d, %q, stdout %q; want 1, %q", args, code, msg, out, want)
		}
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("%d requests, want none", n)
	}
}

// No command redefines a flag that a command above it gives to all its
// commands (-o, --server, --token): the command's own would silently
// take its place, as export's -o, the zip's path, once took the place of
// -o, the output format.
func TestNoFlagShadowsAGlobalOne(t *testing.T) {
	var walk func(c *cobra.Command, above []*pflag.FlagSet)
	walk = func(c *cobra.Command, above []*pflag.FlagSet) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			for _, fs := range above {
				if g := fs.Lookup(f.Name); g != nil && g != f {
					t.Errorf("%s: --%s redefines the global --%s", c.CommandPath(), f.Name, g.Name)
				}
				if g := fs.ShorthandLookup(f.Shorthand); f.Shorthand != "" && g != nil && g != f {
					t.Errorf("%s: -%s (--%s) redefines the global -%s (--%s)", c.CommandPath(), f.Shorthand, f.Name, g.Shorthand, g.Name)
				}
			}
		})
		above = append(above, c.PersistentFlags())
		for _, sub := range c.Commands() {
			walk(sub, above)
		}
	}
	walk(Root(), nil)
}

// The verbs come with the aliases users of other tools type: every rm is
// also delete, every ls also list; and the alias reaches the command.
func TestEveryRmIsDeleteAndEveryLsList(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for verb, alias := range map[string]string{"rm": "delete", "ls": "list"} {
			if c.Name() == verb && !slices.Contains(c.Aliases, alias) {
				t.Errorf("%s has no alias %s", c.CommandPath(), alias)
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(Root())
	if c, _, err := Root().Find([]string{"jobs", "delete"}); err != nil || c.Name() != "rm" {
		t.Errorf("avxrm jobs delete finds %v (%v), want jobs rm", c, err)
	}
}

// Without --samples, export asks for the scenario files of every sample
// the job has them for, and says so; a job with none is a warning while
// the zip holds the assets asked for, else an error before any export is
// asked for. --samples is taken as given.
func TestExportTakesEverySampleByDefault(t *testing.T) {
	artifacts := map[string]string{
		"job-both":   `{"kind":"scenario","sample_id":"s-002","path":"b.xosc"},{"kind":"asset","path":"road.bin"},{"kind":"scenario","sample_id":"s-001","path":"a.xosc"},{"kind":"scenario","sample_id":"s-002","path":"c.xosc"}`,
		"job-assets": `{"kind":"asset","path":"road.bin"},{"kind":"asset","path":"net.xodr","declaration":"road-network"}`,
		"job-none":   ``,
	}
	var mu sync.Mutex
	var posted []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, "/api/resources/v1")
		job := strings.Split(strings.TrimPrefix(p, "/jobs/"), "/")[0]
		w.Header().Set("Content-Type", "application/json")
		_, known := artifacts[job]
		switch {
		case !known:
			http.NotFound(w, r)
		case r.Method == http.MethodGet && strings.HasSuffix(p, "/artifacts"):
			fmt.Fprintf(w, `{"items":[%s]}`, artifacts[job])
		case r.Method == http.MethodPost && strings.HasSuffix(p, "/scenario-exports"):
			var body bytes.Buffer
			_, _ = body.ReadFrom(r.Body)
			mu.Lock()
			posted = append(posted, job+" "+strings.TrimSpace(body.String()))
			mu.Unlock()
			w.Header().Set("Content-Type", "application/problem+json") // enough: the request is what is checked
			w.WriteHeader(http.StatusConflict)
			_, _ = w.Write([]byte(`{"title":"Conflict","status":409,"detail":"stop here"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	out := filepath.Join(t.TempDir(), "x.zip")
	for _, c := range []struct {
		args           []string
		post, err, say string
	}{
		{[]string{"job-both"}, `job-both {"samples":["s-001","s-002"]}`, "stop here",
			"export: the scenario files of every sample job job-both has (2: s-001, s-002); --samples picks some\n"},
		{[]string{"job-both", "--samples", "s-002"}, `job-both {"samples":["s-002"]}`, "stop here", ""},
		{[]string{"job-both", "--include", "asset"}, `job-both {"include":["asset"]}`, "stop here", ""},
		{[]string{"job-assets"}, `job-assets {}`, "stop here",
			"export: warning: job job-assets has no scenario files: the zip holds its common asset data alone ('avxrm artifacts ls job-assets' lists what it has)\n"},
		{[]string{"job-assets", "--include", "scenario"}, "", "job job-assets has no scenario files to export; 'avxrm artifacts ls job-assets' lists what it has", ""},
		{[]string{"job-assets", "--declaration", "other"}, "",
			"job job-assets has no scenario files and no assets of other to export; 'avxrm artifacts ls job-assets' lists what it has", ""},
		{[]string{"job-none"}, "", "job job-none has no scenario files and no common asset data to export", ""},
		{[]string{"job-nosuch"}, "", "404", ""},
	} {
		posted = nil
		_, stderr, err := runCLI(t, srv.URL, append([]string{"export", "-O", out}, c.args...)...)
		want := []string{c.post}
		if c.post == "" {
			want = nil
		}
		if err == nil || !strings.Contains(err.Error(), c.err) || !slices.Equal(posted, want) || stderr != c.say {
			t.Errorf("export %s: %v, posted %q, stderr %q; want %q, posted %q, stderr %q", strings.Join(c.args, " "), err, posted, stderr, c.err, want, c.say)
		}
	}
}

// -O ending in a separator names a directory: made if missing, as
// "-O exports/" reads, for export, exports download and artifacts get. A file whose
// directory is missing is refused before anything is asked, saying so, and
// not in the words of the probe that found it.
func TestExportMakesTheDirectoryOfADirectoryO(t *testing.T) {
	srv, size := exportServer(t, nil)
	dir := t.TempDir()
	for _, args := range [][]string{
		{"export", "job-1", "--samples", "s-001", "-O", filepath.Join(dir, "new", "exports") + "/"},
		{"exports", "download", "exp-1", "-O", filepath.Join(dir, "other") + "/"},
	} {
		msg, code, _ := run(t, "", append(args, "--server", srv)...)
		out := args[len(args)-1]
		if got, err := os.ReadFile(filepath.Join(out, "exp-1.zip")); code != ExitOK || err != nil || len(got) != size {
			t.Errorf("%s: exit %d %q; %s: %d bytes, %v", strings.Join(args, " "), code, msg, out, len(got), err)
		}
	}
	missing := filepath.Join(dir, "missing", "x.zip")
	for _, args := range [][]string{
		{"export", "job-1", "--samples", "s-001", "-O", missing},
		{"exports", "download", "exp-1", "-O", missing},
	} {
		msg, code, _ := run(t, "", append(args, "--server", srv)...)
		if want := "there is no directory " + filepath.Dir(missing); code != ExitFailed || !strings.Contains(msg, want) || strings.Contains(msg, ".avxrm-check") {
			t.Errorf("%s: exit %d %q, want it to say %q", strings.Join(args, " "), code, msg, want)
		}
	}
}
