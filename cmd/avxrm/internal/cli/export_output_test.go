package cli

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// An -o the export could never be written to is refused before the export
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
	tests := map[string]string{
		filepath.Join(dir, "missing", "x.zip"): "no such file or directory",
		dir:                                    "is a directory",
	}
	if os.Geteuid() != 0 { // root writes anywhere
		tests[filepath.Join(readOnly, "x.zip")] = "permission denied"
	}
	for out, want := range tests {
		root := Root()
		root.SetOut(&bytes.Buffer{})
		root.SetErr(&bytes.Buffer{})
		root.SetArgs([]string{"export", "job-1", "--samples", "s-001", "-o", out, "--server", srv.URL})
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), out) || !strings.Contains(err.Error(), want) {
			t.Errorf("export -o %s = %v, want an error naming it: %s", out, err, want)
		}
	}
	if len(requests) != 0 {
		t.Errorf("requests %q, want none", requests)
	}
}
