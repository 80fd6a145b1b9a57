package scheduler

import (
	"context"
	"fmt"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/jobdoc"
)

// Retries (docs/job-record.md): the launcher puts a job whose attempt
// failed back to submitted, with attempt+1 and the old attempt's
// admitted_at copied into its attempts, once the attempt's instances are
// stopped and removed. Its lease is then the old attempt's: the scheduler
// releases it (the one removal of the ledger key), then clears admitted_at
// and records the job pending again, so that the new attempt queues for
// capacity like any job and is admitted once, with a new lease. A lease
// granted to the new attempt but not yet recorded on the job (a crash
// between the two writes) is told apart by admitted_at: it is still the
// old attempt's only until the scheduler clears it.

// reasonRetrying is the Admitted condition's reason of a retried job
// waiting for its next attempt's admission.
const reasonRetrying = "Retrying"

// staleAdmission reports whether j, waiting again, still carries the
// admission of its previous attempt: the lease it holds is that attempt's.
func staleAdmission(j *events.Job) bool {
	if j.AdmittedAt == nil || len(j.Attempts) == 0 {
		return false
	}
	last := j.Attempts[len(j.Attempts)-1].AdmittedAt
	return last != nil && last.Equal(*j.AdmittedAt)
}

// requeue records that retried job id waits for the admission of its new
// attempt, its old lease released.
func (t *term) requeue(ctx context.Context, id string) (*events.Job, error) {
	return t.update(ctx, id, func(j *events.Job, now time.Time) []string {
		if !notAdmitted(j) || !staleAdmission(j) {
			return nil
		}
		j.Status, j.AdmittedAt = events.JobPending, nil
		prev := j.Attempts[len(j.Attempts)-1]
		jobdoc.SetCondition(j, condAdmitted, "False", reasonRetrying,
			fmt.Sprintf("attempt %d waits for admission: attempt %d failed: %s", j.CurrentAttempt(), prev.Attempt, prev.Message), now)
		return []string{events.TypeJobPending}
	})
}

// waitedFor says, for the message of an admission, how long and why job j
// waited (from its Admitted condition before the admission): a finished
// job keeps it (docs/API.md, conditions). Empty if it did not wait.
func waitedFor(j *events.Job, now time.Time) string {
	c := jobdoc.FindCondition(j, condAdmitted)
	if c == nil || c.Status != "False" {
		return ""
	}
	return fmt.Sprintf(", after waiting %s (%s: %s)", now.Sub(c.LastTransitionTime).Round(time.Millisecond), c.Reason, c.Message)
}
