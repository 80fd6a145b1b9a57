package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"golang.org/x/time/rate"
)

// Every job transition is one write of the job document read just before,
// conditioned on the version read, with the events announcing it (outbox).
// The change function looks at the job as stored, not as the picture has it,
// and returns no event types when there is nothing to do; so a transition
// decided on a stale picture, a duplicate, or one another service made first
// changes nothing.

// writeTimeout bounds one job transition, reads and retries included.
const writeTimeout = 10 * time.Second

// update applies change to job id through the job record's update loop
// (jobdoc.Update) and returns the job as stored, for the picture; nil if
// the job no longer exists. It runs beside the loop (writes.go), so it
// touches nothing of the picture.
func (t *term) update(ctx context.Context, id string, change func(j *events.Job, now time.Time) []string) (*events.Job, error) {
	// A write that hangs must not stop the scheduler: it fails and a later
	// pass makes it again, and a write that did land is seen by its read.
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	j, err := t.s.record.Update(ctx, id, func(j *events.Job, now time.Time) ([]string, error) {
		return change(j, now), nil
	})
	if errors.Is(err, jobdoc.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	cp := *j
	cp.Runtime = events.RuntimeSpec{}
	return &cp, nil
}

// recordAdmission marks job id admitted; its lease is in the ledger already.
func (t *term) recordAdmission(ctx context.Context, id string) (*events.Job, error) {
	var admittedAfter time.Duration
	j, err := t.update(ctx, id, func(j *events.Job, now time.Time) []string {
		if !notAdmitted(j) || wantsOut(j) {
			return nil // the next pass releases or keeps the lease as the job now says
		}
		j.Status = events.JobAdmitted
		j.AdmittedAt = &now
		jobdoc.SetCondition(j, condAdmitted, "True", reasonAdmitted, fmt.Sprintf(
			"admitted: %d worker %s on queue %s and 1 controller on %s",
			j.WorkerInstances, plural(j.WorkerInstances, "instance", "instances"), j.QueueName, events.ControllerQueue)+waitedFor(j, now), now)
		admittedAfter = now.Sub(j.SubmittedAt)
		return []string{events.TypeJobAdmitted}
	})
	if err == nil && admittedAfter > 0 {
		t.s.metrics.latency.Observe(admittedAfter.Seconds())
	}
	return j, err
}

// Message refreshes. The message of a waiting job carries numbers ("10 in
// use") that move whenever anything on its queue is admitted or released;
// rewriting every waiting job (and sending an event for each) on every such
// change would be a storm of O(pending) writes per admission. So a job is
// written when it starts waiting or its reason changes, and when only the
// numbers moved, at most once per messageRefresh, and no more than
// refreshRate such writes a second over all jobs (refreshBurst at once).
// The rate is what keeps a large backlog cheap: with thousands of jobs
// waiting, a per-job period alone would still cost a write per job every
// messageRefresh, enough to slow the store and so the admissions that would
// shrink the backlog.
//
// A changed reason is written at once, but no more than reasonRate a second
// over all jobs (reasonBurst at once): under the starvation guard the
// reason of every job that would fit flips between "the queue is full" and
// "held back for the starving job" as capacity comes and goes, hundreds of
// jobs at a time; the rest follow in later passes.
const (
	messageRefresh = 30 * time.Second
	refreshRate    = 2
	refreshBurst   = 32
	reasonRate     = 20
	reasonBurst    = 64
)

// skipWait reports whether a waiting job whose condition c (of a job last
// written at updated) says reason and message needs no write now.
func (t *term) skipWait(c *events.Condition, updated time.Time, reason, message string) bool {
	if c == nil || c.Status != "False" {
		return false // it starts waiting
	}
	if c.Reason != reason {
		return !t.waitWrites.reasons.AllowN(t.s.deps.Now(), 1)
	}
	if c.Message == message {
		return true
	}
	if guardChanged(c.Message, message) {
		return false // the starvation guard began or ended for it: say so at once
	}
	now := t.s.deps.Now()
	if now.Sub(updated) < messageRefresh {
		return true
	}
	return !t.waitWrites.refreshes.AllowN(now, 1)
}

// waitWrites bounds the rewrites of waiting jobs over all jobs of a
// leadership (see messageRefresh and reasonRate).
type waitWrites struct {
	refreshes *rate.Limiter // only the message's numbers changed
	reasons   *rate.Limiter // the reason changed
}

func newWaitWrites() waitWrites {
	return waitWrites{refreshes: rate.NewLimiter(refreshRate, refreshBurst), reasons: rate.NewLimiter(reasonRate, reasonBurst)}
}

// waitUnchanged reports whether job id (or its post controller) waits as
// the picture says already, so that nothing need be written. Called by the
// loop before the writes start.
func (t *term) waitUnchanged(id string, postController bool, reason, message string) bool {
	j := t.jobs[id]
	switch {
	case j == nil:
		return false
	case postController:
		return t.skipWait(jobdoc.FindCondition(j, condPostControllerAdmitted), j.UpdatedAt, reason, message)
	default:
		return j.Status == events.JobPending && t.skipWait(jobdoc.FindCondition(j, condAdmitted), j.UpdatedAt, reason, message)
	}
}

// recordWait says why job id is pending. The loop calls it only when
// waitUnchanged says no: when the job starts waiting or its reason changed
// (or, rarely, the numbers; see messageRefresh).
func (t *term) recordWait(ctx context.Context, id, reason, message string) (*events.Job, error) {
	return t.update(ctx, id, func(j *events.Job, now time.Time) []string {
		if !notAdmitted(j) || wantsOut(j) {
			return nil
		}
		changed := jobdoc.SetCondition(j, condAdmitted, "False", reason, message, now)
		if !changed && j.Status == events.JobPending {
			return nil
		}
		j.Status = events.JobPending
		return []string{events.TypeJobPending}
	})
}

// cancel carries out the cancellation (and the cleanup, if asked) of job id,
// which was not admitted: nothing of it runs. leased says whether the
// ledger held a lease of the job or its post controller when the pass
// decided.
func (t *term) cancel(ctx context.Context, id string, leased bool) (*events.Job, error) {
	return t.update(ctx, id, func(j *events.Job, now time.Time) []string {
		if !notAdmitted(j) || !wantsOut(j) {
			return nil
		}
		j.Status = events.JobCancelled
		j.FinishedAt = &now
		jobdoc.SetCondition(j, condAdmitted, "False", reasonCancelled, "cancelled before admission", now)
		jobdoc.SetCondition(j, jobdoc.CondCancelled, "True", reasonCancelled, "cancelled before admission", now)
		types := []string{events.TypeJobCancelled}
		if j.CleanupRequested && j.CleanedAt == nil && !leased {
			j.CleanedAt = &now
			types = append(types, events.TypeJobCleaned)
		}
		return types
	})
}

// clean records that job id, final, holds nothing any more.
func (t *term) clean(ctx context.Context, id string) (*events.Job, error) {
	return t.update(ctx, id, func(j *events.Job, now time.Time) []string {
		if !j.CleanupRequested || j.CleanedAt != nil || !events.JobFinal(j.Status) {
			return nil
		}
		// The launcher marks the post controller stopped when it sees the
		// job cleaned (it owns post_controller.stopped_at).
		j.CleanedAt = &now
		return []string{events.TypeJobCleaned}
	})
}

// recordPostControllerAdmission marks the post controller of job id admitted.
func (t *term) recordPostControllerAdmission(ctx context.Context, id string) (*events.Job, error) {
	return t.update(ctx, id, func(j *events.Job, now time.Time) []string {
		pc := j.PostController
		if pc == nil || pc.Status != pcPending || pc.StopRequested || j.CleanedAt != nil {
			return nil
		}
		cp := *pc
		cp.Status = pcAdmitted
		j.PostController = &cp
		jobdoc.SetCondition(j, condPostControllerAdmitted, "True", reasonAdmitted, "admitted: 1 instance on "+events.PostControllerQueue, now)
		return []string{events.TypeJobUpdated}
	})
}

// recordPostControllerWait says why the post controller of job id waits,
// written as recordWait does.
func (t *term) recordPostControllerWait(ctx context.Context, id, reason, message string) (*events.Job, error) {
	return t.update(ctx, id, func(j *events.Job, now time.Time) []string {
		if pc := j.PostController; pc == nil || pc.Status != pcPending {
			return nil
		}
		if !jobdoc.SetCondition(j, condPostControllerAdmitted, "False", reason, message, now) {
			return nil
		}
		return []string{events.TypeJobUpdated}
	})
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
