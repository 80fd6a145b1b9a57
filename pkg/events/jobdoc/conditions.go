package jobdoc

import (
	"time"
	"unicode/utf8"

	"github.com/avxrm/rm/pkg/events"
)

// Condition types, each written by one service (see owners.go).
const (
	CondAdmitted               = "Admitted"
	CondPostControllerAdmitted = "PostControllerAdmitted"
	CondFailed                 = "Failed"
	CondCancelled              = "Cancelled"
	// CondStarted: True once every instance of the current attempt has
	// started; False with ReasonImagePullFailed, ReasonStartFailed or
	// ReasonRuntimeUnavailable while one cannot start (the launcher's).
	CondStarted = "Started"
	// CondFinished: True once the job is final, its reason the outcome
	// (Succeeded, Cancelled, or the Failed condition's reason). Derived by
	// Update from the status, so that whoever ends a job records it.
	CondFinished = "Finished"
)

// Reasons of the Started and Failed conditions that more than one service
// reads (the launcher sets them; the scheduler and the API show them).
const (
	ReasonImagePullFailed    = "ImagePullFailed"
	ReasonStartFailed        = "StartFailed"
	ReasonRuntimeUnavailable = "RuntimeUnavailable"
	ReasonDeadlineExceeded   = "DeadlineExceeded"
)

// SetCondition sets the condition of type typ, moving its transition time
// only when its status changes (Kubernetes semantics). It reports whether
// anything changed: setting a condition as it is already is a no-op.
// A message is cut to MaxMessageBytes, so that conditions (and warnings)
// cannot make a job's events large.
func SetCondition(j *events.Job, typ, status, reason, message string, now time.Time) bool {
	message = truncate(message, MaxMessageBytes)
	for i := range j.Conditions {
		c := &j.Conditions[i]
		if c.Type != typ {
			continue
		}
		if c.Status == status && c.Reason == reason && c.Message == message {
			return false
		}
		if c.Status != status {
			c.LastTransitionTime = now
		}
		c.Status, c.Reason, c.Message = status, reason, message
		return true
	}
	j.Conditions = append(j.Conditions, events.Condition{Type: typ, Status: status, Reason: reason, Message: message, LastTransitionTime: now})
	return true
}

// MaxMessageBytes bounds a condition's message.
const MaxMessageBytes = 1024

// truncate cuts s to at most n bytes, on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n-len("…")]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// FindCondition returns j's condition of type typ, nil if none.
func FindCondition(j *events.Job, typ string) *events.Condition {
	return findCondition(j.Conditions, typ)
}

func findCondition(cs []events.Condition, typ string) *events.Condition {
	for i := range cs {
		if cs[i].Type == typ {
			return &cs[i]
		}
	}
	return nil
}

// Warnings returns what a user should see of j's conditions: why it waits
// while it is pending, and why it failed. Update derives warnings with it,
// so that no service writes them.
func Warnings(j *events.Job) []string {
	out := []string{}
	for _, c := range j.Conditions {
		switch {
		case c.Type == CondAdmitted && c.Status == "False" && j.Status == events.JobPending,
			c.Type == CondStarted && c.Status == "False" && (j.Status == events.JobAdmitted || j.Status == events.JobRunning),
			c.Type == CondFailed && c.Status == "True":
			out = append(out, c.Message)
		}
	}
	return out
}

// deriveFinished sets j's Finished condition from its status: True with
// the outcome once final, at finished_at. Update calls it on every write.
func deriveFinished(j *events.Job, now time.Time) {
	if !events.JobFinal(j.Status) {
		return
	}
	reason, message := "Succeeded", "every instance exited with code 0"
	switch j.Status {
	case events.JobFailed:
		reason, message = "Failed", "failed"
		if c := FindCondition(j, CondFailed); c != nil && c.Status == "True" {
			reason, message = c.Reason, c.Message
		}
	case events.JobCancelled:
		reason, message = "Cancelled", "cancelled"
		if j.AdmittedAt == nil {
			message = "cancelled before admission"
		}
		if c := FindCondition(j, CondCancelled); c != nil && c.Status == "True" {
			message = c.Message
		}
	}
	at := now
	if j.FinishedAt != nil {
		at = *j.FinishedAt
	}
	if c := FindCondition(j, CondFinished); c != nil && c.Status == "True" {
		return // a final job's outcome does not change
	}
	SetCondition(j, CondFinished, "True", reason, message, at)
}
