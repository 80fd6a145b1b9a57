package cli

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// exportsServer is an API that knows exports of job-x, exp-a (ready) and
// exp-b (building), listed one per page, and exp-c (failed); it deletes
// exp-a alone.
func exportsServer(t *testing.T) (url string, deleted func() []string) {
	t.Helper()
	var mu sync.Mutex
	var del []string
	exports := map[string]string{
		"exp-a": `{"id":"exp-a","job_id":"job-x","status":"ready","file_count":2,"size":735,"sha256":"` + strings.Repeat("ab", 32) + `","created_at":"2026-01-01T00:00:00Z"}`,
		"exp-b": `{"id":"exp-b","job_id":"job-x","status":"building","created_at":"2026-01-01T00:00:00Z"}`,
		"exp-c": `{"id":"exp-c","job_id":"job-x","status":"failed","reason":"no scenario file","created_at":"2026-01-01T00:00:00Z"}`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, "/api/resources/v1")
		id := strings.TrimPrefix(p, "/scenario-exports/")
		switch {
		case r.Method == http.MethodGet && p == "/jobs/job-x/scenario-exports":
			w.Header().Set("Content-Type", "application/json")
			if r.URL.Query().Get("cursor") == "" {
				_, _ = w.Write([]byte(`{"items":[` + exports["exp-a"] + `],"next_cursor":"c2"}`))
			} else {
				_, _ = w.Write([]byte(`{"items":[` + exports["exp-b"] + `]}`))
			}
			return
		case r.Method == http.MethodGet && exports[id] != "":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(exports[id]))
			return
		case r.Method == http.MethodDelete && id == "exp-a":
			mu.Lock()
			del = append(del, id)
			mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
			return
		case r.Method == http.MethodGet && strings.HasSuffix(p, "/download"):
			t.Errorf("downloaded %s", p)
		}
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"title":"Not Found","status":404,"detail":"scenario export \"` + id + `\" not found"}`))
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), del...)
	}
}

// 'avxrm exports ls' reads every page of a job's exports into one table.
func TestExportsLsReadsEveryPage(t *testing.T) {
	srv, _ := exportsServer(t)
	msg, code, out := run(t, "", "--server", srv, "exports", "ls", "job-x")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != ExitOK || len(lines) != 3 || !strings.HasPrefix(lines[0], "ID ") ||
		!strings.Contains(lines[1], "exp-a") || !strings.Contains(lines[1], "ready") || !strings.Contains(lines[1], "735") ||
		!strings.Contains(lines[2], "exp-b") || !strings.Contains(lines[2], "building") {
		t.Errorf("exports ls: exit %d %q\n%s", code, msg, out)
	}
	if _, code, out := run(t, "", "--server", srv, "exports", "ls", "job-x", "-o", "json"); code != ExitOK ||
		!strings.HasPrefix(out, "[") || strings.Count(out, `"id"`) != 2 {
		t.Errorf("exports ls -o json: exit %d\n%s", code, out)
	}
	if msg, code, _ := run(t, "", "--server", srv, "exports", "ls", "job-y"); code != ExitFailed || !strings.Contains(msg, "404") {
		t.Errorf("exports ls of an unknown job: exit %d %q", code, msg)
	}
}

// An export that is not ready is not downloaded: the error says its
// status and the command that waits for it, and no file (nor .part) is
// written.
func TestExportsDownloadRefusesAnExportNotReady(t *testing.T) {
	srv, _ := exportsServer(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "b.zip")
	msg, code, _ := run(t, "", "--server", srv, "exports", "download", "exp-b", "-O", out)
	if code != ExitFailed || !strings.Contains(msg, "exp-b") || !strings.Contains(msg, "building") || !strings.Contains(msg, "not ready") ||
		!strings.Contains(msg, "'avxrm exports wait exp-b' waits for it") || strings.Contains(msg, "WaitExport") {
		t.Errorf("exports download of a building export: exit %d %q", code, msg)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("it wrote %v", ents)
	}
}

// 'avxrm exports rm' deletes each export named, once, prints a line for
// each, names the one that is not there and fails after trying them all.
func TestExportsRmReportsEachExport(t *testing.T) {
	srv, deleted := exportsServer(t)
	msg, code, out, errOut := runStderr(t, "", "--server", srv, "exports", "rm", "exp-nope", "exp-a", "exp-a")
	if code != ExitFailed || msg != "avxrm: rm: 1 of 2 exports failed\n" || out != "exp-a deleted\n" ||
		!strings.Contains(errOut, `exp-nope: 404 scenario export "exp-nope" not found`) {
		t.Errorf("exports rm: exit %d %q, stdout %q, stderr %q", code, msg, out, errOut)
	}
	if d := deleted(); len(d) != 1 {
		t.Errorf("deleted %v, want exp-a once", d)
	}
	if msg, code, _ := run(t, "", "--server", srv, "exports", "rm", "exp-nope"); code != ExitFailed || !strings.Contains(msg, `"exp-nope" not found`) {
		t.Errorf("exports rm of one unknown export: exit %d %q", code, msg)
	}
	if msg, code, _ := run(t, "", "--server", srv, "exports", "rm"); code != ExitFailed || !strings.Contains(msg, "usage: avxrm exports rm") {
		t.Errorf("exports rm without an export: exit %d %q", code, msg)
	}
}

// 'avxrm exports wait' shows the export once it has ended: exit 0 when
// ready, 1 with the reason when it failed.
func TestExportsWaitExitsByStatus(t *testing.T) {
	srv, _ := exportsServer(t)
	if msg, code, out := run(t, "", "--server", srv, "exports", "wait", "exp-a", "-o", "json"); code != ExitOK || !strings.Contains(out, `"status": "ready"`) {
		t.Errorf("exports wait of a ready export: exit %d %q\n%s", code, msg, out)
	}
	msg, code, out := run(t, "", "--server", srv, "exports", "wait", "exp-c")
	if code != ExitFailed || msg != "avxrm: export exp-c failed: no scenario file\n" || !strings.Contains(out, "status: failed") {
		t.Errorf("exports wait of a failed export: exit %d %q\n%s", code, msg, out)
	}
}
