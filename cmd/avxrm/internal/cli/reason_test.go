package cli

import (
	"encoding/json"
	"testing"

	"github.com/avxrm/rm/sdk/go/avxrm/api"
)

// TestReason: the REASON column says why a job waits for admission, why
// an admitted one cannot start, why one failed, and why the scheduler
// cancelled one; nothing otherwise.
func TestReason(t *testing.T) {
	for name, tc := range map[string]struct{ job, want string }{
		"pending": {`{"status":"pending","conditions":[{"type":"Admitted","status":"False","message":"queue full","last_transition_time":"2026-01-01T00:00:00Z"}]}`, "queue full"},
		"cannot start": {`{"status":"admitted","conditions":[{"type":"Admitted","status":"True","message":"admitted","last_transition_time":"2026-01-01T00:00:00Z"},
			{"type":"Started","status":"False","reason":"ImagePullFailed","message":"worker 0: pull image x:1: no such host; retry 2 in 1s","last_transition_time":"2026-01-01T00:00:00Z"}]}`,
			"worker 0: pull image x:1: no such host; retry 2 in 1s"},
		"running": {`{"status":"running","conditions":[{"type":"Started","status":"True","message":"started","last_transition_time":"2026-01-01T00:00:00Z"}]}`, ""},
		"failed":  {`{"status":"failed","conditions":[{"type":"Failed","status":"True","reason":"DeadlineExceeded","message":"ran longer than its limit of 2s","last_transition_time":"2026-01-01T00:00:00Z"}]}`, "ran longer than its limit of 2s"},
		"dependency failed": {`{"status":"cancelled","conditions":[{"type":"Admitted","status":"False","reason":"DependencyFailed","message":"dependency can no longer succeed: job-A failed","last_transition_time":"2026-01-01T00:00:00Z"},
			{"type":"Finished","status":"True","reason":"Cancelled","message":"cancelled before admission","last_transition_time":"2026-01-01T00:00:00Z"}]}`,
			"dependency can no longer succeed: job-A failed"},
		"cancelled by a user": {`{"status":"cancelled","conditions":[{"type":"Finished","status":"True","reason":"Cancelled","message":"cancelled before admission","last_transition_time":"2026-01-01T00:00:00Z"}]}`, ""},
	} {
		var j api.Job
		if err := json.Unmarshal([]byte(tc.job), &j); err != nil {
			t.Fatal(err)
		}
		if got := reason(&j); got != tc.want {
			t.Errorf("%s: reason() = %q, want %q", name, got, tc.want)
		}
	}
}
