package cli

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events/eventstest"
)

// A bulk command over many jobs prints each job's line as it is done, not
// all of them at the end: 'jobs rm' over 20,000 jobs shows its progress.
// Ctrl-C then stops it without a request more, and the jobs not tried are
// counted once on stderr, not each reported as a failure.
func TestBulkPrintsAsItGoesAndStopsOnInterrupt(t *testing.T) {
	const n = 200
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut eventstest.SyncBuffer
	var mu sync.Mutex
	deleted, late, printedAtCancel := 0, 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodDelete {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		deleted++
		k := deleted
		if ctx.Err() != nil {
			late++
		}
		mu.Unlock()
		if k == n/2 {
			// Half done: the lines of the jobs deleted so far are out
			// before the user presses Ctrl-C.
			deadline := time.Now().Add(10 * time.Second)
			for strings.Count(out.String(), " deleted\n") < n/4 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			mu.Lock()
			printedAtCancel = strings.Count(out.String(), " deleted\n")
			mu.Unlock()
			cancel()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("RM_TOKEN", "")
	t.Setenv("RM_JOB_TOKEN", "")
	args := []string{"--server", srv.URL, "jobs", "rm"}
	for i := range n {
		args = append(args, fmt.Sprintf("job-%03d", i))
	}
	root := Root()
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)

	// A request in flight at Ctrl-C may still be answered meanwhile.
	mu.Lock()
	printed, lateNow := printedAtCancel, late
	mu.Unlock()
	if printed < n/4 {
		t.Errorf("%d lines printed by the time half the jobs were deleted; want each job's line as it is done", printed)
	}
	if lateNow > bulkParallel {
		t.Errorf("%d requests came after Ctrl-C; want none but those in flight", lateNow)
	}
	if lines := strings.Count(errOut.String(), "\n"); lines != 1 || !strings.Contains(errOut.String(), "cut off in flight; run the command again for the rest") {
		t.Errorf("stderr after Ctrl-C (%d lines):\n%s\nwant one line counting the jobs not tried", lines, errOut.String())
	}
	if code := ExitCode(err, &bytes.Buffer{}); code != ExitInterrupted {
		t.Errorf("exit code %d (%v), want %d", code, err, ExitInterrupted)
	}
}
