package jobdoc

import (
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
)

// TestDeriveFinished: a final job gets the Finished condition, its reason
// the outcome, at finished_at; it is not rewritten afterwards; a job that
// is not final gets none.
func TestDeriveFinished(t *testing.T) {
	t0, t1 := time.Unix(100, 0).UTC(), time.Unix(200, 0).UTC()
	failed := func() *events.Job {
		j := &events.Job{Status: events.JobFailed, FinishedAt: &t0, AdmittedAt: &t0}
		SetCondition(j, CondFailed, "True", ReasonDeadlineExceeded, "ran longer than its limit of 2s", t0)
		return j
	}
	for name, tc := range map[string]struct {
		j               *events.Job
		reason, message string
		want            bool
		wantAt          time.Time
	}{
		"running":   {j: &events.Job{Status: events.JobRunning}},
		"succeeded": {j: &events.Job{Status: events.JobSucceeded, FinishedAt: &t0}, want: true, reason: "Succeeded", message: "every instance exited with code 0", wantAt: t0},
		"failed":    {j: failed(), want: true, reason: ReasonDeadlineExceeded, message: "ran longer than its limit of 2s", wantAt: t0},
		"cancelled before admission": {j: &events.Job{Status: events.JobCancelled, FinishedAt: &t0}, want: true,
			reason: "Cancelled", message: "cancelled before admission", wantAt: t0},
	} {
		deriveFinished(tc.j, t1)
		c := FindCondition(tc.j, CondFinished)
		if !tc.want {
			if c != nil {
				t.Errorf("%s: Finished %+v on a job that is not final", name, c)
			}
			continue
		}
		if c == nil || c.Status != "True" || c.Reason != tc.reason || c.Message != tc.message || !c.LastTransitionTime.Equal(tc.wantAt) {
			t.Errorf("%s: Finished %+v, want True %s %q at %s", name, c, tc.reason, tc.message, tc.wantAt)
		}
		// A later write (a cleanup) leaves it as it is.
		tc.j.FinishedAt = &t1
		deriveFinished(tc.j, t1)
		if c := FindCondition(tc.j, CondFinished); !c.LastTransitionTime.Equal(tc.wantAt) {
			t.Errorf("%s: Finished rewritten: %+v", name, c)
		}
	}
}
