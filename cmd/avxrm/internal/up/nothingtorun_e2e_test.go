package up_test

import (
	"net/http"
	"strings"
	"testing"
)

// The all-in-one's launcher runs queues without a plugin on the local
// driver while no plugin is the default, and tells its API so: a job there
// that nothing gives a command (an application registered with an image
// alone, as a new user tries first) is a 422 at submission, not a job that
// fails at its start. Without the launcher (other launchers may run such
// queues on another driver) the API cannot know, and takes it.
func TestNothingToRunOnTheAllInOnesDefaultDriver(t *testing.T) {
	for _, tc := range []struct {
		name string
		sys  func(*testing.T) string
		want int
	}{
		{"with its launcher", func(t *testing.T) string { return startSystem(t).HTTPAddr }, http.StatusUnprocessableEntity},
		{"without", func(t *testing.T) string { return startScheduling(t).HTTPAddr }, http.StatusCreated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, tc.sys(t))
			for _, r := range []struct {
				path string
				body any
			}{
				{"/queues", map[string]any{"name": "Default", "maximum_allowed_worker_instances": 10}},
				{"/applications", map[string]any{"name": "sim", "version": "1.0", "image": "local/sim:1"}},
			} {
				if status, raw := c.do(http.MethodPost, "/api/resources/v1"+r.path, r.body); status != http.StatusCreated {
					t.Fatalf("POST %s = %d %s", r.path, status, raw)
				}
			}
			status, raw := c.do(http.MethodPost, "/api/resources/v1/jobs", map[string]any{
				"queue_id": "Default", "application": map[string]any{"name": "sim", "version": "1.0"}, "worker_instances": 2})
			if status != tc.want {
				t.Fatalf("POST /jobs with nothing to run = %d %s, want %d", status, raw, tc.want)
			}
			if tc.want == http.StatusUnprocessableEntity &&
				(!strings.Contains(string(raw), `"field":"command"`) || !strings.Contains(string(raw), "the launchers' default driver, local")) {
				t.Errorf("POST /jobs with nothing to run: %s does not name command and say why", raw)
			}
		})
	}
}
