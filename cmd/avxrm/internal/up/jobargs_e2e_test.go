package up_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
)

// A job's own command and args reach its processes on the local driver:
// args replace the application's args, a command replaces both.
func TestJobCommandAndArgsReachTheProcess(t *testing.T) {
	sys := startSystemIn(t, t.TempDir())
	c := newClient(t, sys.HTTPAddr)
	c.createQueue("Default", 4)
	var app struct {
		ID string `json:"id"`
	}
	c.must(http.MethodPost, "/api/resources/v1/applications", map[string]any{
		"name": "echoer", "version": "1", "image": "local",
		"command": []string{"/bin/sh", "-c", `echo "$RM_ROLE args: $*"`, "sh"}, "args": []string{"--from-app"},
	}, http.StatusCreated, &app)

	for name, tc := range map[string]struct {
		body map[string]any
		want string
	}{
		"the application's":       {map[string]any{}, "worker args: --from-app\n"},
		"the job's args":          {map[string]any{"args": []string{"--seed", "42 with spaces"}}, "worker args: --seed 42 with spaces\n"},
		"the job's command, args": {map[string]any{"command": []string{"/bin/echo"}, "args": []string{"from", "the job"}}, "from the job\n"},
	} {
		t.Run(name, func(t *testing.T) {
			body := map[string]any{"queue_id": "Default", "worker_instances": 1, "application": map[string]any{"id": app.ID}}
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
