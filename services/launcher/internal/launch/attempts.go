package launch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/services/launcher/internal/driver"
)

// This file is what the launcher does about time and trouble in a job's
// run (docs/API.md, Jobs; docs/job-record.md):
//
//   - Start trouble: an instance that cannot start for a reason retrying
//     may cure (an image that cannot be pulled, an unreachable runtime, any
//     error not known to be permanent) is retried with back-off, and the
//     job carries the Started condition False with the reason and the
//     message (so its warnings say it) within a round. A permanent error
//     (an invalid spec) fails the job at once.
//   - Start timeout: an admitted job not fully started after its queue's
//     scheduling.start_timeout_seconds (default 600) fails with the Started
//     condition's reason; its instances are stopped by the next round and
//     the scheduler releases its leases.
//   - Deadline: a running job older than its max_run_seconds (else its
//     queue's scheduling.default_max_run_seconds) fails with reason
//     DeadlineExceeded.
//   - Retries: a job whose attempt failed (an instance exited non-zero:
//     "failed"; the runtime lost one: "lost") and that has retries left for
//     that kind is not failed: its instances are stopped, then removed, and
//     it goes back to submitted with attempt+1 and the outcome recorded in
//     attempts, announced as rm.job.retrying. The scheduler releases the
//     old attempt's lease and admits it again.
//
// Every timer is derived from stored times (admitted_at, started_at): the
// work queue is asked to come back when the next one is due (wakeAfter),
// and a restarted launcher's resync finds the admitted and running jobs
// again. Only the back-off count of start retries is in memory; a restart
// starts it over.

// Reasons the launcher gives besides those of failures.
const (
	reasonStarted  = "Started"
	reasonRetrying = "Retrying"
)

// Start retry back-off: base doubling per retry, at most backoffMax.
const (
	backoffBase = 500 * time.Millisecond
	backoffMax  = 30 * time.Second
)

// startRetries counts, per job, the rounds in a row in which an instance
// could not start, and when the next start may be tried.
type startRetries struct {
	mu   sync.Mutex
	n    map[string]int
	next map[string]time.Time
}

// add counts a round with trouble at now and returns the count.
func (r *startRetries) add(id string, now time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n, r.next = map[string]int{}, map[string]time.Time{}
	}
	r.n[id]++
	r.next[id] = now.Add(backoff(r.n[id]))
	return r.n[id]
}

// next returns when job id's next start may be tried; zero if at once.
func (r *startRetries) nextTry(id string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.next[id]
}

func (r *startRetries) reset(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.n, id)
	delete(r.next, id)
}

// backoff is the wait before retry n (1-based).
func backoff(n int) time.Duration {
	d := backoffBase
	for i := 1; i < n && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}

// startTrouble is an instance that could not start, for a reason retrying
// may cure.
type startTrouble struct {
	ref    driver.Ref
	reason string
	msg    string
}

// blamed is the instance a failure to get the job's drivers d is reported
// on: a worker when the controller's driver was had (the workers' queue
// or plugin failed), else the first missing instance.
func blamed(missing []driver.Ref, d jobDrivers) driver.Ref {
	if d.ctlD != nil {
		for _, r := range missing {
			if r.Role == driver.RoleWorker {
				return r
			}
		}
	}
	return missing[0]
}

// troubleOf classifies a failed start.
func troubleOf(ref driver.Ref, err error) startTrouble {
	reason := jobdoc.ReasonStartFailed
	switch {
	case errors.Is(err, driver.ErrImagePull):
		reason = jobdoc.ReasonImagePullFailed
	case errors.Is(err, driver.ErrUnavailable):
		reason = jobdoc.ReasonRuntimeUnavailable
	}
	return startTrouble{ref: ref, reason: reason, msg: fmt.Sprintf("%s %d: %s", ref.Role, ref.Index, err)}
}

// pendingTroubles are the instances a driver reports waiting for a known
// reason (kubernetes: an image the kubelet cannot pull).
func pendingTroubles(rs *records, obs map[driver.Ref]observed) []startTrouble {
	var out []startTrouble
	for _, ref := range mainRefs(rs.j) {
		if o, ok := obs[ref]; ok && o.st.State == driver.Pending && o.st.Reason == driver.ReasonImagePullFailed {
			out = append(out, startTrouble{ref: ref, reason: jobdoc.ReasonImagePullFailed,
				msg: fmt.Sprintf("%s %d: %s", ref.Role, ref.Index, o.st.Message)})
		}
	}
	return out
}

// startDue reports whether the missing instances of job id may be started
// now: not before the back-off of the last failed try has passed.
func (s *Service) startDue(id string, now time.Time) bool {
	return !now.Before(s.retries.nextTry(id))
}

// noteStart sets the Started condition of rs's job from this round: True
// once every instance has started; else False with the first instance that
// could not start, from the starts tried in this round (tried: with the
// retry count) or from what the drivers report (pending). It reports
// whether the condition changed.
func (s *Service) noteStart(rs *records, tried bool, failed, pending []startTrouble, now time.Time) bool {
	j := rs.j
	if j.StartedAt != nil && (j.Status == events.JobRunning || events.JobFinal(j.Status)) {
		s.retries.reset(j.ID)
		workers := plural(j.WorkerInstances, "worker", "workers")
		return jobdoc.SetCondition(j, jobdoc.CondStarted, "True", reasonStarted,
			fmt.Sprintf("the controller and %d %s started", j.WorkerInstances, workers), *j.StartedAt)
	}
	if tried && len(failed) == 0 {
		s.retries.reset(j.ID)
	}
	troubles := append(slices.Clone(failed), pending...)
	if len(troubles) == 0 {
		return false
	}
	slices.SortFunc(troubles, func(a, b startTrouble) int { return mainSlot(a.ref) - mainSlot(b.ref) })
	t := troubles[0]
	msg := t.msg
	if len(troubles) > 1 {
		msg += fmt.Sprintf(" (and %d more %s)", len(troubles)-1, plural(len(troubles)-1, "instance", "instances"))
	}
	if len(failed) > 0 {
		n := s.retries.add(j.ID, now)
		msg += fmt.Sprintf("; retry %d in %s", n, backoff(n))
		s.log.Warn("instance cannot start; retrying", "job", j.ID, "reason", t.reason, "err", msg)
	}
	return jobdoc.SetCondition(j, jobdoc.CondStarted, "False", t.reason, msg, now)
}

// withoutRetry is a Started message without the retry noteStart or a
// driver announced ("; retry 3 in 2s", "; retry 2 (the kubelet's back-off)").
func withoutRetry(msg string) string {
	if i := strings.LastIndex(msg, "; retry "); i >= 0 {
		return msg[:i]
	}
	return msg
}

// mainSlot orders the controller before the workers.
func mainSlot(r driver.Ref) int {
	if r.Role == driver.RoleController {
		return -1
	}
	return r.Index
}

// limits are the start timeout and the run limit (0: none) of job j.
func (s *Service) limits(ctx context.Context, j *events.Job) (start, run time.Duration) {
	start = events.DefaultStartTimeoutSeconds * time.Second
	if j.MaxRunSeconds != nil {
		run = time.Duration(*j.MaxRunSeconds) * time.Second
	}
	q, err := s.queue(ctx, j.QueueID)
	if err != nil {
		return start, run // a queue that cannot be read: the defaults
	}
	if v := q.Scheduling.StartTimeoutSeconds; v != nil {
		start = time.Duration(*v) * time.Second
	}
	if v := q.Scheduling.DefaultMaxRunSeconds; v != nil && j.MaxRunSeconds == nil {
		run = time.Duration(*v) * time.Second
	}
	return start, run
}

// overdue fails rs's job if its start timeout or its run limit has passed,
// and returns the event types; none if neither has. obs is what the
// drivers report of its instances.
func (s *Service) overdue(ctx context.Context, rs *records, obs map[driver.Ref]observed, now time.Time) []string {
	j := rs.j
	start, run := s.limits(ctx, j)
	switch {
	case j.Status == events.JobAdmitted && j.AdmittedAt != nil && !now.Before(j.AdmittedAt.Add(start)):
		reason, why := jobdoc.ReasonStartFailed, notStarted(rs, obs)
		if c := jobdoc.FindCondition(j, jobdoc.CondStarted); c != nil && c.Status == "False" {
			// No retry comes once the job has failed: neither condition announces one.
			reason, why = c.Reason, withoutRetry(c.Message)
			jobdoc.SetCondition(j, jobdoc.CondStarted, "False", reason, why, now)
		}
		j.Status, j.FinishedAt = events.JobFailed, &now
		jobdoc.SetCondition(j, condFailed, "True", reason,
			fmt.Sprintf("did not start within %s (the queue's start_timeout_seconds): %s", start, why), now)
		s.retries.reset(j.ID)
		return []string{events.TypeJobFailed}
	case j.Status == events.JobRunning && j.StartedAt != nil && run > 0 && !now.Before(j.StartedAt.Add(run)):
		j.Status, j.FinishedAt = events.JobFailed, &now
		jobdoc.SetCondition(j, condFailed, "True", jobdoc.ReasonDeadlineExceeded,
			fmt.Sprintf("ran longer than its limit of %s; its instances are stopped", run), now)
		return []string{events.TypeJobFailed}
	}
	return nil
}

// notStarted says why rs's job has not started, when no start failed: with
// what the driver says of its first instance still pending (a pod the
// cluster cannot place: "Unschedulable: 0/3 nodes are available: 3
// Insufficient cpu"), which the job's failure did not tell before.
func notStarted(rs *records, obs map[driver.Ref]observed) string {
	const why = "not every instance started"
	for _, ref := range mainRefs(rs.j) {
		if o, ok := obs[ref]; ok && o.st.State == driver.Pending && o.st.Message != "" {
			return fmt.Sprintf("%s: %s %d is pending: %s", why, ref.Role, ref.Index, o.st.Message)
		}
	}
	return why
}

// wakeAfter is when job j, as stored, needs a round without a trigger: its
// next start retry, start timeout or deadline. 0: none.
func (s *Service) wakeAfter(ctx context.Context, j *events.Job) time.Duration {
	now := s.now()
	var due []time.Duration
	start, run := s.limits(ctx, j)
	switch {
	case j.Status == events.JobAdmitted && j.AdmittedAt != nil:
		due = append(due, j.AdmittedAt.Add(start).Sub(now))
		if next := s.retries.nextTry(j.ID); !next.IsZero() {
			due = append(due, next.Sub(now))
		}
	case j.Status == events.JobRunning && j.StartedAt != nil && run > 0:
		due = append(due, j.StartedAt.Add(run).Sub(now))
	}
	due = append(due, s.retryStopDue(j, now)...)
	if len(due) == 0 {
		return 0
	}
	return max(slices.Min(due), 10*time.Millisecond)
}

// retryKind is what kind of failure f is for retry_on: "failed" or "lost";
// "" for a start that failed, which a retry would not cure.
func retryKind(f *events.Instance) (kind, reason string) {
	switch {
	case f.Message == lostMessage:
		return events.RetryOnLost, reasonInstanceLost
	case f.StartedAt == nil:
		return "", ""
	}
	return events.RetryOnFailed, reasonInstanceFailed
}

// retries reports whether job j may retry a failure of kind.
func retriesLeft(j *events.Job, kind string) bool {
	if kind == "" || j.CurrentAttempt() > j.MaxRetries {
		return false
	}
	return len(j.RetryOn) == 0 || slices.Contains(j.RetryOn, kind)
}

// retryJob handles the failure f of rs's job when it has a retry left
// for it: first it stops the attempt's instances; once every driver
// reports them ended, it removes them and puts the job back to submitted
// with attempt+1 (rm.job.retrying); instances that do not report their
// end within the stop timeout are left as lost (retrystop.go). ok is false
// when the job is not to be retried (it fails).
func (s *Service) retryJob(ctx context.Context, rs *records, obs map[driver.Ref]observed, f *events.Instance, now time.Time) (types []string, ok bool, err error) {
	j := rs.j
	kind, reason := retryKind(f)
	if !retriesLeft(j, kind) {
		return nil, false, nil
	}
	cur := j.CurrentAttempt()
	failure := failureMessage(f)
	live := liveMain(obs)
	if note := s.stopGivenUp(j, f, live, now); note != "" {
		failure, live = failure+note, nil // retrystop.go
	}
	if len(live) > 0 {
		// Stop first; the drivers' reports of the ends trigger the next round.
		if err := s.stopAll(ctx, obs, isMain); err != nil {
			return nil, true, err
		}
		msg := fmt.Sprintf("attempt %d failed: %s; stopping its instances before attempt %d of %d", cur, failure, cur+1, j.MaxRetries+1)
		if jobdoc.SetCondition(j, jobdoc.CondStarted, "Unknown", reasonRetrying, msg, now) {
			return []string{events.TypeJobUpdated}, true, nil
		}
		return nil, true, nil
	}
	// Every instance has ended: none will report again, so removing them
	// lets the next attempt start instances of the same names afresh.
	if len(obs) > 0 {
		if err := s.cleanupDrivers(ctx, j.ID, obs, j); err != nil {
			return nil, true, err
		}
	}
	j.Attempts = append(j.Attempts, events.JobAttempt{
		Attempt: cur, Outcome: kind, Reason: reason, Message: failure,
		AdmittedAt: j.AdmittedAt, StartedAt: j.StartedAt, FinishedAt: now,
	})
	j.Attempt = cur + 1
	j.Status, j.StartedAt = events.JobSubmitted, nil
	// The records start over; a post controller went with the cleanup.
	for i := range j.Instances {
		rec := &j.Instances[i]
		if rec.Role == events.RolePostController {
			if !isFinalInstance(rec.Status) {
				rec.Status, rec.FinishedAt = events.InstanceStopped, &now
			}
			continue
		}
		*rec = events.Instance{Role: rec.Role, Index: rec.Index, Status: events.InstancePending}
	}
	stopPostController(j, now)
	jobdoc.SetCondition(j, jobdoc.CondStarted, "Unknown", reasonRetrying,
		fmt.Sprintf("attempt %d failed: %s; attempt %d of %d waits for admission", cur, failure, cur+1, j.MaxRetries+1), now)
	s.retries.reset(j.ID)
	return []string{events.TypeJobRetrying}, true, nil
}

// dropStaleRetry removes the Started condition a retry left ("attempt 1
// failed: …; attempt 2 of 2 waits for admission") from a job the launcher
// runs again, that is, one admitted since: the new attempt's instances set
// it again as they start, but instances that end before they are seen
// running (a command that fails at once) would otherwise leave the ended
// job saying it waits. While the failed attempt's instances are being
// stopped the condition says so and a failed instance record is still
// there (retryJob), so the condition stays. It reports whether it removed
// it; called before this round's observations are recorded.
func dropStaleRetry(j *events.Job) bool {
	c := jobdoc.FindCondition(j, jobdoc.CondStarted)
	if c == nil || c.Reason != reasonRetrying || failedRecord(j) != nil {
		return false
	}
	j.Conditions = slices.DeleteFunc(j.Conditions, func(c events.Condition) bool { return c.Type == jobdoc.CondStarted })
	return true
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
