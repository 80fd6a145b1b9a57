package launch

import (
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/jobdoc"
)

// The launcher's timers are derived from stored times: a deadline or a
// start timeout that passes while no launcher runs is acted on by the
// next one as soon as it starts.
func TestTimersSurviveARestart(t *testing.T) {
	e := newEnv(t)
	limit := 2
	e.insert(PluginsCollection, map[string]any{"_id": "plg-docker", "name": "engine", "type": "docker", "config": map[string]any{}})
	e.insert(QueuesCollection, &events.Queue{Meta: events.Meta{ID: "q-dock", Version: 1}, Name: "dock", PluginID: "plg-docker",
		Scheduling: events.QueueScheduling{StartTimeoutSeconds: &limit}})
	stop := e.start()
	e.admit("job-deadline", 1, "sleep 60", nil, func(j *events.Job) { j.MaxRunSeconds = &limit })
	e.admit("job-nostart", 1, "sleep 60", nil, func(j *events.Job) {
		j.QueueID, j.QueueName, j.Runtime.Image = "q-dock", "dock", "rm-missing-"+strings.ToLower(t.Name())+":1"
	})
	running := e.wait("job-deadline", "running", func(j events.Job) bool { return j.Status == events.JobRunning })
	stuck := e.wait("job-nostart", "showing the pull error", func(j events.Job) bool {
		c := jobdoc.FindCondition(&j, jobdoc.CondStarted)
		return c != nil && c.Reason == jobdoc.ReasonImagePullFailed
	})
	stop()
	// Both come due while no launcher runs.
	due := running.StartedAt.Add(time.Duration(limit) * time.Second)
	if d := stuck.AdmittedAt.Add(time.Duration(limit) * time.Second); d.After(due) {
		due = d
	}
	time.Sleep(time.Until(due) + 500*time.Millisecond)
	if j := e.job("job-deadline"); j.Status != events.JobRunning {
		t.Fatalf("job-deadline %s with no launcher running", j.Status)
	}
	restarted := time.Now()
	e.start()
	for id, reason := range map[string]string{"job-deadline": jobdoc.ReasonDeadlineExceeded, "job-nostart": jobdoc.ReasonImagePullFailed} {
		j := e.wait(id, "failed", final)
		c := jobdoc.FindCondition(&j, condFailed)
		if j.Status != events.JobFailed || c == nil || c.Reason != reason {
			t.Errorf("%s: %s %+v, want failed with %s", id, j.Status, j.Conditions, reason)
		}
		t.Logf("%s failed %s after the launcher restarted", id, j.FinishedAt.Sub(restarted).Round(time.Millisecond))
	}
}

// TestRetryRules: which failures a job retries, by max_retries, retry_on
// and the kind of failure; a start that failed and the last allowed
// attempt are not retried.
func TestRetryRules(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	exited := &events.Instance{Role: "worker", Status: events.InstanceFailed, ExitCode: intPtr(2), StartedAt: &t0}
	lost := &events.Instance{Role: "worker", Status: events.InstanceFailed, Message: lostMessage, StartedAt: &t0}
	neverStarted := &events.Instance{Role: "worker", Status: events.InstanceFailed, Message: "start failed: invalid spec"}
	for name, tc := range map[string]struct {
		job  events.Job
		f    *events.Instance
		want bool
	}{
		"no retries by default":                {events.Job{}, exited, false},
		"failed, retries left, retry_on any":   {events.Job{MaxRetries: 1}, exited, true},
		"lost, retries left, retry_on any":     {events.Job{MaxRetries: 1}, lost, true},
		"lost, retry_on failed only":           {events.Job{MaxRetries: 1, RetryOn: []string{"failed"}}, lost, false},
		"failed, retry_on lost only":           {events.Job{MaxRetries: 1, RetryOn: []string{"lost"}}, exited, false},
		"last attempt":                         {events.Job{MaxRetries: 2, Attempt: 3}, exited, false},
		"second of three attempts":             {events.Job{MaxRetries: 2, Attempt: 2}, exited, true},
		"a start that failed is not retried":   {events.Job{MaxRetries: 5}, neverStarted, false},
		"attempt 0 (stored before) reads as 1": {events.Job{MaxRetries: 1, Attempt: 0}, exited, true},
	} {
		kind, _ := retryKind(tc.f)
		if got := retriesLeft(&tc.job, kind); got != tc.want {
			t.Errorf("%s: retriesLeft = %v, want %v", name, got, tc.want)
		}
	}
}

// A queue whose Docker engine cannot be reached: the job says
// RuntimeUnavailable (and keeps trying) instead of waiting in silence.
func TestUnreachableRuntimeIsReported(t *testing.T) {
	e := newEnv(t)
	e.insert(PluginsCollection, map[string]any{"_id": "plg-down", "name": "down", "type": "docker",
		"config": map[string]any{"host": "unix://" + t.TempDir() + "/no.sock"}})
	e.insert(QueuesCollection, &events.Queue{Meta: events.Meta{ID: "q-down", Version: 1}, Name: "down", PluginID: "plg-down"})
	e.start()
	e.admit("job-down", 1, "sleep 60", nil, func(j *events.Job) { j.QueueID, j.QueueName = "q-down", "down" })
	j := e.wait("job-down", "showing the runtime trouble", func(j events.Job) bool {
		c := jobdoc.FindCondition(&j, jobdoc.CondStarted)
		return c != nil && c.Reason == jobdoc.ReasonRuntimeUnavailable
	})
	c := jobdoc.FindCondition(&j, jobdoc.CondStarted)
	if j.Status != events.JobAdmitted || c.Status != "False" || !strings.Contains(c.Message, "retry ") || len(j.Warnings) != 1 || j.Warnings[0] != c.Message {
		t.Errorf("job %s, Started %+v, warnings %q", j.Status, c, j.Warnings)
	}
	t.Logf("Started: %s", c.Message)
}

// A permanent start error (a spec the runtime refuses: here a host path
// that is not absolute, stored behind the API's back) fails the job at
// once, with the Started condition saying why.
func TestPermanentStartErrorFailsAtOnce(t *testing.T) {
	e := newEnv(t)
	e.insert(PluginsCollection, map[string]any{"_id": "plg-docker", "name": "engine", "type": "docker", "config": map[string]any{}})
	e.insert(QueuesCollection, &events.Queue{Meta: events.Meta{ID: "q-bad", Version: 1}, Name: "bad", PluginID: "plg-docker",
		Storages: []events.Storage{{Name: "s", Type: "host_path", Source: "relative/path", MountPath: "/data"}}})
	e.start()
	e.admit("job-bad", 1, "sleep 60", nil, func(j *events.Job) { j.QueueID, j.QueueName, j.MaxRetries = "q-bad", "bad", 3 })
	j := e.wait("job-bad", "failed", final)
	failed, started := jobdoc.FindCondition(&j, condFailed), jobdoc.FindCondition(&j, jobdoc.CondStarted)
	if j.Status != events.JobFailed || failed == nil || failed.Reason != reasonStartFailed || started == nil ||
		started.Status != "False" || started.Reason != reasonStartFailed || !strings.Contains(started.Message, "not absolute") {
		t.Fatalf("job %s, conditions %+v: want failed with StartFailed", j.Status, j.Conditions)
	}
	if j.Attempt > 1 || len(j.Attempts) > 0 {
		t.Errorf("a permanent start error was retried: attempt %d %+v", j.Attempt, j.Attempts)
	}
	t.Logf("failed %s after admission: %s", j.FinishedAt.Sub(*j.AdmittedAt).Round(time.Millisecond), started.Message)
}
