package launch

import (
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/launcher/internal/driver"
)

// A retry waits for the drivers to report the failed attempt's instances
// ended before it removes them and puts the job back (retryJob). A driver
// that never reports it (a runtime that lost them without saying, a stuck
// kubelet) would hold the job there for ever, its leases with it; so the
// wait is bounded: RetryStopTimeout after the failure, the instances still
// reported live are treated as lost, the attempt's record says so, and the
// retry goes on (cleaning the job's instances up in every driver).

// defaultRetryStopTimeout is Config.RetryStopTimeout's default.
const defaultRetryStopTimeout = 2 * time.Minute

// retryStopTimeout is how long a retry waits for the instances to end.
func (s *Service) retryStopTimeout() time.Duration {
	if s.cfg.RetryStopTimeout > 0 {
		return s.cfg.RetryStopTimeout
	}
	return defaultRetryStopTimeout
}

// liveMain lists the controller and workers the drivers report not ended.
func liveMain(obs map[driver.Ref]observed) []driver.Ref {
	var out []driver.Ref
	for ref, o := range obs {
		if isMain(ref) && !o.st.State.Final() {
			out = append(out, ref)
		}
	}
	sort.Slice(out, func(a, b int) bool { return mainSlot(out[a]) < mainSlot(out[b]) })
	return out
}

// stopGivenUp returns, when the instances live of the attempt that failed
// with f have had the stop timeout to end, the note for the attempt's
// record; "" while the retry is to wait on.
func (s *Service) stopGivenUp(j *events.Job, f *events.Instance, live []driver.Ref, now time.Time) string {
	if len(live) == 0 || f.FinishedAt == nil {
		return ""
	}
	timeout := s.retryStopTimeout()
	if now.Before(f.FinishedAt.Add(timeout)) {
		return ""
	}
	note := fmt.Sprintf("; %d %s (first %s %d) did not report stopped within %s: treated as lost",
		len(live), plural(len(live), "instance", "instances"), live[0].Role, live[0].Index, timeout)
	s.log.Warn("instances of a failed attempt never reported stopped; retrying without them", "job", j.ID,
		"attempt", j.CurrentAttempt(), slog.Int("instances", len(live)), "timeout", timeout)
	return note
}

// retryStopDue is when job j, stopping a failed attempt, gives up waiting
// for its instances: its wake-up; none if it is not stopping one.
func (s *Service) retryStopDue(j *events.Job, now time.Time) []time.Duration {
	if j.Status != events.JobAdmitted && j.Status != events.JobRunning {
		return nil
	}
	f := failedRecord(j)
	if f == nil || f.FinishedAt == nil {
		return nil
	}
	kind, _ := retryKind(f)
	if !retriesLeft(j, kind) {
		return nil
	}
	// Past due, the round that found it so gave up already, or failed and
	// is retried by the work queue.
	if d := f.FinishedAt.Add(s.retryStopTimeout()).Sub(now); d > 0 {
		return []time.Duration{d}
	}
	return nil
}
