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
func TestDeadlineSurvivesARestart(t *testing.T) {
	e := newEnv(t)
	limit := 2
	stop := e.start()
	e.admit("job-deadline", 1, "sleep 60", nil, func(j *events.Job) { j.MaxRunSeconds = &limit })
	running := e.wait("job-deadline", "running", func(j events.Job) bool { return j.Status == events.JobRunning })
	stop()
	failsAfterRestart(e, "job-deadline", running.StartedAt.Add(time.Duration(limit)*time.Second), jobdoc.ReasonDeadlineExceeded)
}

// The start trouble is an engine that cannot be reached, not the
// machine's Docker Engine: a launcher with a plugin on the real engine
// would adopt, and remove, the containers of whatever else uses it.
func TestStartTimeoutSurvivesARestart(t *testing.T) {
	e := newEnv(t)
	// Creating the driver of an engine that does not answer takes 10 s
	// (and stopping the launcher waits for such a round): the start
	// timeout leaves room for the trouble to be seen and the launcher
	// stopped first.
	limit := 30
	downEngine(e, "q-down", func(q *events.Queue) { q.Scheduling.StartTimeoutSeconds = &limit })
	stop := e.start()
	e.admit("job-nostart", 1, "sleep 60", nil, func(j *events.Job) { j.QueueID, j.QueueName = "q-down", "down" })
	stuck := e.wait("job-nostart", "showing the runtime trouble", func(j events.Job) bool {
		c := jobdoc.FindCondition(&j, jobdoc.CondStarted)
		return c != nil && c.Reason == jobdoc.ReasonRuntimeUnavailable
	})
	stop()
	j := failsAfterRestart(e, "job-nostart", stuck.AdmittedAt.Add(time.Duration(limit)*time.Second), jobdoc.ReasonRuntimeUnavailable)
	// While it waited, Started announced the next retry; failed, no retry
	// comes, and neither condition nor the warnings say one does.
	if c := jobdoc.FindCondition(&stuck, jobdoc.CondStarted); !strings.Contains(c.Message, "; retry ") {
		t.Errorf("Started while retrying: %q, want the retry announced", c.Message)
	}
	started, failed := jobdoc.FindCondition(&j, jobdoc.CondStarted), jobdoc.FindCondition(&j, condFailed)
	if started.Status != "False" || strings.Contains(started.Message, "retry") || strings.Contains(failed.Message, "retry") ||
		!strings.HasSuffix(failed.Message, started.Message) || strings.Contains(strings.Join(j.Warnings, "\n"), "retry") {
		t.Errorf("failed: Started %+v, Failed %+v, warnings %q; want no retry announced", started, failed, j.Warnings)
	}
}

// failsAfterRestart waits, with no launcher running, until due has
// passed, checks that job id has not failed, starts a launcher and
// expects the job to fail with reason; it returns the failed job.
func failsAfterRestart(e *env, id string, due time.Time, reason string) events.Job {
	e.t.Helper()
	time.Sleep(time.Until(due) + 500*time.Millisecond)
	if j := e.job(id); events.JobFinal(j.Status) {
		e.t.Fatalf("%s %s with no launcher running", id, j.Status)
	}
	restarted := time.Now()
	e.start()
	j := e.wait(id, "failed", final)
	if c := jobdoc.FindCondition(&j, condFailed); j.Status != events.JobFailed || c == nil || c.Reason != reason {
		e.t.Errorf("%s: %s %+v, want failed with %s", id, j.Status, j.Conditions, reason)
	}
	e.t.Logf("%s failed %s after the launcher restarted", id, j.FinishedAt.Sub(restarted).Round(time.Millisecond))
	return j
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
	downEngine(e, "q-down")
	e.start()
	e.admit("job-down", 1, "sleep 60", nil, func(j *events.Job) { j.QueueID, j.QueueName = "q-down", "down" })
	j := e.wait("job-down", "showing the runtime trouble", func(j events.Job) bool {
		c := jobdoc.FindCondition(&j, jobdoc.CondStarted)
		return c != nil && c.Reason == jobdoc.ReasonRuntimeUnavailable
	})
	c := jobdoc.FindCondition(&j, jobdoc.CondStarted)
	if j.Status != events.JobAdmitted || c.Status != "False" || !strings.HasPrefix(c.Message, "worker 0: ") || !strings.Contains(c.Message, "retry ") || len(j.Warnings) != 1 || j.Warnings[0] != c.Message {
		t.Errorf("job %s, Started %+v, warnings %q", j.Status, c, j.Warnings)
	}
	t.Logf("Started: %s", c.Message)
}

// A permanent start error (a spec the runtime refuses: here no command
// for the local driver, stored behind the API's back) fails the job at
// once, with the Started condition saying why.
func TestPermanentStartErrorFailsAtOnce(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.admit("job-bad", 1, "", nil, func(j *events.Job) { j.Runtime.Command, j.MaxRetries = nil, 3 })
	j := e.wait("job-bad", "failed", final)
	failed, started := jobdoc.FindCondition(&j, condFailed), jobdoc.FindCondition(&j, jobdoc.CondStarted)
	if j.Status != events.JobFailed || failed == nil || failed.Reason != reasonStartFailed || started == nil ||
		started.Status != "False" || started.Reason != reasonStartFailed || !strings.Contains(started.Message, "no command") {
		t.Fatalf("job %s, conditions %+v: want failed with StartFailed", j.Status, j.Conditions)
	}
	if j.Attempt > 1 || len(j.Attempts) > 0 {
		t.Errorf("a permanent start error was retried: attempt %d %+v", j.Attempt, j.Attempts)
	}
	t.Logf("failed %s after admission: %s", j.FinishedAt.Sub(*j.AdmittedAt).Round(time.Millisecond), started.Message)
}

// downEngine adds queue id ("down") on a Docker plugin whose engine cannot
// be reached.
func downEngine(e *env, id string, mods ...func(*events.Queue)) {
	e.insert(PluginsCollection, map[string]any{"_id": "plg-down", "name": "down", "type": "docker",
		"config": map[string]any{"host": "unix://" + e.t.TempDir() + "/no.sock"}})
	q := &events.Queue{Meta: events.Meta{ID: id, Version: 1}, Name: "down", PluginID: "plg-down"}
	for _, m := range mods {
		m(q)
	}
	e.insert(QueuesCollection, q)
}
