package jobdoc_test

import (
	"errors"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/jobdoc"
)

func baseJob() *events.Job { // its post controller pending
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return &events.Job{
		Meta: events.Meta{ID: "job-1", Version: 3}, Name: "j", QueueID: "q-1", WorkerInstances: 2,
		Status: events.JobAdmitted, SubmittedAt: t0,
		Conditions:     []events.Condition{{Type: jobdoc.CondAdmitted, Status: "True", LastTransitionTime: t0}},
		PostController: &events.PostController{Status: events.PostControllerPending, RequestedAt: t0},
	}
}

// TestOwnership runs one change per case through Check as each writer and
// expects exactly the owner to pass: the table of docs/job-record.md.
func TestOwnership(t *testing.T) {
	now := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	cases := map[string]struct {
		from  string // the job's status before; admitted if empty
		owner jobdoc.Writer
		f     func(j *events.Job)
	}{
		"cancel request":       {owner: jobdoc.API, f: func(j *events.Job) { j.CancelRequested = true }},
		"cleanup request":      {owner: jobdoc.API, f: func(j *events.Job) { j.CleanupRequested = true }},
		"post controller stop": {owner: jobdoc.API, f: func(j *events.Job) { j.PostController.StopRequested = true }},
		"priority":             {owner: jobdoc.API, f: func(j *events.Job) { j.Priority = 7 }},
		"depends_on": {owner: jobdoc.API, f: func(j *events.Job) {
			j.DependsOn = []events.JobDependency{{JobID: "job-0", Condition: events.DependencySucceeded}}
		}},
		"array": {owner: jobdoc.API, f: func(j *events.Job) { j.ArrayID, j.ArrayIndex = "arr-1", new(int) }},
		"dependency failed": {from: events.JobPending, owner: jobdoc.Scheduler, f: func(j *events.Job) {
			j.Status, j.FinishedAt = events.JobCancelled, &now
			jobdoc.SetCondition(j, jobdoc.CondAdmitted, "False", "DependencyFailed", "job-0 failed", now)
			jobdoc.SetCondition(j, jobdoc.CondCancelled, "True", "DependencyFailed", "job-0 failed", now)
		}},
		"cancelled condition of a running job": {from: events.JobRunning, owner: jobdoc.Launcher, f: func(j *events.Job) {
			j.Status, j.FinishedAt = events.JobCancelled, &now
			jobdoc.SetCondition(j, jobdoc.CondCancelled, "True", "Cancelled", "cancelled: its instances were stopped", now)
		}},
		"admission": {from: events.JobPending, owner: jobdoc.Scheduler, f: func(j *events.Job) {
			j.Status, j.AdmittedAt = events.JobAdmitted, &now
		}},
		"cancel before admission": {from: events.JobPending, owner: jobdoc.Scheduler, f: func(j *events.Job) {
			j.Status, j.FinishedAt = events.JobCancelled, &now
		}},
		"cleaned": {owner: jobdoc.Scheduler, f: func(j *events.Job) { j.CleanedAt = &now }},
		"admitted condition": {owner: jobdoc.Scheduler, f: func(j *events.Job) {
			jobdoc.SetCondition(j, jobdoc.CondAdmitted, "False", "Waiting", "w", now)
		}},
		"post controller admitted": {owner: jobdoc.Scheduler, f: func(j *events.Job) {
			j.PostController.Status = events.PostControllerAdmitted
		}},
		"running":   {owner: jobdoc.Launcher, f: func(j *events.Job) { j.Status, j.StartedAt = events.JobRunning, &now }},
		"failed":    {owner: jobdoc.Launcher, f: func(j *events.Job) { j.Status, j.FinishedAt = events.JobFailed, &now }},
		"cancelled": {owner: jobdoc.Launcher, f: func(j *events.Job) { j.Status, j.FinishedAt = events.JobCancelled, &now }},
		"instances": {owner: jobdoc.Launcher, f: func(j *events.Job) {
			j.Instances = append(j.Instances, events.Instance{Role: events.RoleWorker, Status: events.InstanceRunning})
		}},
		"post controller stopped": {owner: jobdoc.Launcher, f: func(j *events.Job) {
			j.PostController.Status, j.PostController.StoppedAt = events.PostControllerStopped, &now
		}},
		"failed condition": {owner: jobdoc.Launcher, f: func(j *events.Job) {
			jobdoc.SetCondition(j, jobdoc.CondFailed, "True", "InstanceFailed", "worker 1 exited with code 2", now)
		}},
		"max_run_seconds": {owner: jobdoc.API, f: func(j *events.Job) { n := 5; j.MaxRunSeconds = &n }},
		"max_retries":     {owner: jobdoc.API, f: func(j *events.Job) { j.MaxRetries = 2 }},
		"retry_on":        {owner: jobdoc.API, f: func(j *events.Job) { j.RetryOn = []string{events.RetryOnLost} }},
		"started condition": {owner: jobdoc.Launcher, f: func(j *events.Job) {
			jobdoc.SetCondition(j, jobdoc.CondStarted, "False", jobdoc.ReasonImagePullFailed, "worker 0: pull image x", now)
		}},
		"retry": {from: events.JobRunning, owner: jobdoc.Launcher, f: func(j *events.Job) {
			j.Status, j.Attempt, j.StartedAt = events.JobSubmitted, 2, nil
			j.Attempts = append(j.Attempts, events.JobAttempt{Attempt: 1, Outcome: events.RetryOnFailed, FinishedAt: now})
		}},
		"retry of an admitted job": {owner: jobdoc.Launcher, f: func(j *events.Job) { j.Status = events.JobSubmitted }},
		"old attempt's admission released": {from: events.JobSubmitted, owner: jobdoc.Scheduler, f: func(j *events.Job) {
			j.Status, j.AdmittedAt = events.JobPending, nil
			jobdoc.SetCondition(j, jobdoc.CondAdmitted, "False", "Retrying", "attempt 2 waits", now)
		}},
		"finished condition": {owner: "", f: func(j *events.Job) {
			jobdoc.SetCondition(j, jobdoc.CondFinished, "True", "Succeeded", "", now)
		}},
		"version":           {owner: "", f: func(j *events.Job) { j.Version++ }},
		"warnings":          {owner: "", f: func(j *events.Job) { j.Warnings = []string{"x"} }},
		"finished_at alone": {owner: "", f: func(j *events.Job) { j.FinishedAt = &now }},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			for _, w := range []jobdoc.Writer{jobdoc.API, jobdoc.Scheduler, jobdoc.Launcher} {
				before := baseJob()
				if tc.from != "" {
					before.Status = tc.from
				}
				after := baseJob()
				after.Status = before.Status
				tc.f(after)
				err := jobdoc.Check(w, before, after)
				if w == tc.owner && err != nil {
					t.Errorf("owner %s refused: %v", w, err)
				}
				if w != tc.owner && !errors.Is(err, jobdoc.ErrNotOwner) {
					t.Errorf("%s allowed to make a change owned by %q", w, tc.owner)
				}
			}
		})
	}
}

func TestSetConditionNoOp(t *testing.T) {
	t0, t1 := time.Unix(1, 0).UTC(), time.Unix(2, 0).UTC()
	j := &events.Job{}
	if !jobdoc.SetCondition(j, "Admitted", "False", "Wait", "m", t0) {
		t.Fatal("new condition: no change reported")
	}
	if jobdoc.SetCondition(j, "Admitted", "False", "Wait", "m", t1) {
		t.Error("same condition again: change reported")
	}
	if !jobdoc.SetCondition(j, "Admitted", "False", "Wait", "m2", t1) || !j.Conditions[0].LastTransitionTime.Equal(t0) {
		t.Errorf("message change: %+v", j.Conditions[0])
	}
	if !jobdoc.SetCondition(j, "Admitted", "True", "Admitted", "ok", t1) || !j.Conditions[0].LastTransitionTime.Equal(t1) {
		t.Errorf("status change: %+v", j.Conditions[0])
	}
}
