package up_test

import (
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/up"
	"github.com/avxrm/rm/pkg/events"
)

// A job's own command and args reach its processes on the local driver:
// args replace the application's args, a command replaces both.
func TestJobCommandAndArgsReachTheProcess(t *testing.T) {
	_, c, app := localApp(t, map[string]any{
		"command": []string{"/bin/sh", "-c", `echo "$RM_ROLE args: $*"`, "sh"}, "args": []string{"--from-app"},
	})

	for name, tc := range map[string]struct {
		body map[string]any
		want string
	}{
		"the application's":       {map[string]any{}, "worker args: --from-app\n"},
		"the job's args":          {map[string]any{"args": []string{"--seed", "42 with spaces"}}, "worker args: --seed 42 with spaces\n"},
		"the job's command, args": {map[string]any{"command": []string{"/bin/echo"}, "args": []string{"from", "the job"}}, "from the job\n"},
	} {
		t.Run(name, func(t *testing.T) {
			body := map[string]any{"queue_id": "Default", "worker_instances": 1, "application": map[string]any{"id": app}}
			for k, v := range tc.body {
				body[k] = v
			}
			var j events.Job
			c.must(http.MethodPost, jobsPath, body, http.StatusCreated, &j)
			got := c.waitJobFor(j.ID, "final", 60*time.Second, isFinal)
			if got.Status != events.JobSucceeded {
				t.Fatalf("job %s: %s, conditions %+v", j.ID, got.Status, got.Conditions)
			}
			status, raw := c.do(http.MethodGet, jobsPath+"/"+j.ID+"/instances/worker/0/logs", nil)
			if status != http.StatusOK || string(raw) != tc.want {
				t.Errorf("output of worker 0 = %d %q, want %q", status, raw, tc.want)
			}
		})
	}
}

// A long log's last lines, through the API and the launcher's log protocol:
// ?tail=N answers them with Rm-Log-Offset where they start, and reading on
// from offset + length finds nothing more once the instance has ended.
func TestInstanceLogTail(t *testing.T) {
	// 5,000 lines of 100 bytes: about 500 KB, two of the launcher's chunks.
	sys, c, app := localApp(t, map[string]any{
		"command": []string{"/bin/sh", "-c", `i=0; while [ $i -lt 5000 ]; do printf 'line %04d %089d\n' $i 0; i=$((i+1)); done`},
	})
	var j events.Job
	c.must(http.MethodPost, jobsPath, map[string]any{"queue_id": "Default", "worker_instances": 1, "application": map[string]any{"id": app}},
		http.StatusCreated, &j)
	if got := c.waitJobFor(j.ID, "final", 60*time.Second, isFinal); got.Status != events.JobSucceeded {
		t.Fatalf("job %s: %s, conditions %+v", j.ID, got.Status, got.Conditions)
	}
	get := func(query string) (string, string) {
		t.Helper()
		resp, err := http.Get("http://" + sys.HTTPAddr + jobsPath + "/" + j.ID + "/instances/worker/0/logs?" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("logs?%s = %d %s", query, resp.StatusCode, raw)
		}
		return string(raw), resp.Header.Get("Rm-Log-Offset")
	}
	whole, off := get("")
	if len(whole) != 5000*100 || off != "0" {
		t.Fatalf("the whole log: %d bytes from offset %s, want 500000 from 0", len(whole), off)
	}
	last3, off := get("tail=3")
	if want := whole[len(whole)-300:]; last3 != want || off != strconv.Itoa(len(whole)-300) {
		t.Errorf("tail=3: %q from offset %s, want %q from %d", last3, off, want, len(whole)-300)
	}
	if all, off := get("tail=6000"); all != whole || off != "0" {
		t.Errorf("tail=6000 of 5,000 lines: %d bytes from offset %s, want the whole log from 0", len(all), off)
	}
	if rest, off := get("offset=" + strconv.Itoa(len(whole))); rest != "" || off != strconv.Itoa(len(whole)) {
		t.Errorf("reading on from the end: %q from offset %s", rest, off)
	}
}

// localApp starts a system with queue Default (4 workers) and an application
// on its local driver with fields (its command, args), and returns its id.
func localApp(t *testing.T, fields map[string]any) (*up.System, *client, string) {
	t.Helper()
	sys := startSystemIn(t, t.TempDir())
	c := newClient(t, sys.HTTPAddr)
	c.createQueue("Default", 4)
	body := map[string]any{"name": "app", "version": "1", "image": "local"}
	for k, v := range fields {
		body[k] = v
	}
	var app struct {
		ID string `json:"id"`
	}
	c.must(http.MethodPost, "/api/resources/v1/applications", body, http.StatusCreated, &app)
	return sys, c, app.ID
}
