package up_test

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
)

// End to end on the all-in-one: what the launcher records of a run's
// trouble and time (issue "Visibility and campaigns", points 1, 2, 5, 6):
// start errors on the job, the start timeout, the run limit, retries and
// the conditions a finished job keeps. Figures are logged (go test -v),
// not asserted.

// conditionOf returns j's condition of type typ (zero if none).
func conditionOf(j events.Job, typ string) events.Condition {
	for _, c := range j.Conditions {
		if c.Type == typ {
			return c
		}
	}
	return events.Condition{}
}

// createScriptApp registers an application running script with /bin/sh
// (local driver) from image (the docker driver's).
func createScriptApp(c *client, name, image, script string) string {
	c.t.Helper()
	var app struct {
		ID string `json:"id"`
	}
	c.must(http.MethodPost, "/api/resources/v1/applications", map[string]any{
		"name": name, "version": "1", "image": image, "command": []string{"/bin/sh", "-c", script},
	}, http.StatusCreated, &app)
	return app.ID
}

// sleeperSystem starts the all-in-one in dataDir with the sleeper
// application and a queue Default of limit workers.
func sleeperSystem(t *testing.T, dataDir string, limit int) (*client, string) {
	c := newClient(t, startSystemIn(t, dataDir).HTTPAddr)
	app := createSleeperApp(c)
	c.createQueue("Default", limit)
	return c, app
}

func submitJob(c *client, body map[string]any) events.Job {
	c.t.Helper()
	var j events.Job
	c.must(http.MethodPost, jobsPath, body, http.StatusCreated, &j)
	return j
}

// An image that is on no engine here (no registry is reachable): the
// Started condition and the warning say so within 5 s, with the retry
// count; the controller, which runs (local driver), is recorded as it
// starts; after the queue's start timeout of 20 s the job fails with that
// reason, its controller is stopped and the queue's usage is 0 again.
func TestStartErrorReachesTheJobAndTimesOut(t *testing.T) {
	sys := startSystemIn(t, t.TempDir())
	c := newClient(t, sys.HTTPAddr)
	var plg struct {
		ID string `json:"id"`
	}
	c.must(http.MethodPost, "/api/resources/v1/plugins", map[string]any{"name": "engine", "type": "docker", "config": map[string]any{}},
		http.StatusCreated, &plg)
	c.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{
		"name": "dock", "plugin_id": plg.ID, "maximum_allowed_worker_instances": 4,
		"scheduling": map[string]any{"start_timeout_seconds": 20},
	}, http.StatusCreated, nil)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	image := "rm-missing-" + hex.EncodeToString(b) + ":1"
	app := createScriptApp(c, "missing", image, "exec sleep 300")

	j := submitJob(c, map[string]any{"queue_id": "dock", "worker_instances": 2, "application": map[string]any{"id": app}})
	admitted := c.waitJobFor(j.ID, "admitted", 30*time.Second, func(j events.Job) bool { return j.AdmittedAt != nil })
	got := c.waitJobFor(j.ID, "showing the pull error", 5*time.Second, func(j events.Job) bool {
		return conditionOf(j, "Started").Reason == "ImagePullFailed"
	})
	seen := time.Now()
	t.Logf("Started=False ImagePullFailed seen %s after admission (admitted_at %s)", seen.Sub(*admitted.AdmittedAt).Round(time.Millisecond), admitted.AdmittedAt.Format(time.RFC3339Nano))
	cond := conditionOf(got, "Started")
	wantPrefix := "worker 0: pull image " + image + ": "
	if cond.Status != "False" || !strings.HasPrefix(cond.Message, wantPrefix) || !strings.Contains(cond.Message, "retry ") {
		t.Errorf("Started condition %+v, want False with a message starting %q and a retry count", cond, wantPrefix)
	}
	if got.Status != events.JobAdmitted || !slices.Contains(got.Warnings, cond.Message) {
		t.Errorf("status %s, warnings %q: want admitted with the condition's message", got.Status, got.Warnings)
	}
	// The controller runs (local driver) and is recorded while the workers cannot start.
	got = c.waitJobFor(j.ID, "controller recorded", 10*time.Second, func(j events.Job) bool {
		for _, in := range j.Instances {
			if in.Role == events.RoleController && in.StartedAt != nil {
				return true
			}
		}
		return false
	})
	if got.Status != events.JobAdmitted {
		t.Errorf("status %s while the workers cannot start, want admitted", got.Status)
	}
	if q := c.queue("dock"); q.Usage == nil || q.Usage.AllocatedWorkerInstances != 2 {
		t.Errorf("queue usage while admitted: %+v, want 2 allocated", q.Usage)
	}

	got = c.waitJobFor(j.ID, "failed", 60*time.Second, isFinal)
	took := got.FinishedAt.Sub(*got.AdmittedAt)
	t.Logf("failed %s after admission (start_timeout_seconds 20)", took.Round(time.Millisecond))
	failed := conditionOf(got, "Failed")
	if got.Status != events.JobFailed || failed.Reason != "ImagePullFailed" || !strings.Contains(failed.Message, "pull image "+image) {
		t.Fatalf("job %s, Failed condition %+v: want failed with ImagePullFailed", got.Status, failed)
	}
	if took < 20*time.Second {
		t.Errorf("failed %s after admission, before the start timeout of 20s", took)
	}
	if fin := conditionOf(got, "Finished"); fin.Status != "True" || fin.Reason != "ImagePullFailed" {
		t.Errorf("Finished condition %+v", fin)
	}
	// Its controller is stopped and its leases released.
	c.waitJobFor(j.ID, "controller stopped", 30*time.Second, func(j events.Job) bool {
		for _, in := range j.Instances {
			if in.Role == events.RoleController {
				return in.Status == events.InstanceStopped
			}
		}
		return false
	})
	deadline := time.Now().Add(30 * time.Second)
	for q := c.queue("dock"); q.Usage == nil || q.Usage.AllocatedWorkerInstances != 0; q = c.queue("dock") {
		if time.Now().After(deadline) {
			t.Fatalf("queue usage after the failure: %+v, want 0 allocated", q.Usage)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A job that runs longer than max_run_seconds fails with DeadlineExceeded
// and its instances are stopped; so does one on a queue whose
// default_max_run_seconds applies.
func TestMaxRunSecondsFailsTheJob(t *testing.T) {
	dataDir := t.TempDir()
	c, app := sleeperSystem(t, dataDir, 10)
	c.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{
		"name": "short", "maximum_allowed_worker_instances": 10, "scheduling": map[string]any{"default_max_run_seconds": 2},
	}, http.StatusCreated, nil)

	own := submitJob(c, map[string]any{"queue_id": "Default", "worker_instances": 2, "application": map[string]any{"id": app},
		"environment_variables": map[string]string{"SLEEP": "60"}, "max_run_seconds": 2})
	byQueue := c.submitApp("short", app, 1, map[string]string{"SLEEP": "60"})
	for _, id := range []string{own.ID, byQueue.ID} {
		got := c.waitJobFor(id, "failed", 30*time.Second, isFinal)
		ran := got.FinishedAt.Sub(*got.StartedAt)
		t.Logf("job %s: failed %s after it started running (limit 2s)", id, ran.Round(time.Millisecond))
		failed := conditionOf(got, "Failed")
		if got.Status != events.JobFailed || failed.Reason != "DeadlineExceeded" {
			t.Fatalf("job %s: %s, Failed condition %+v: want failed with DeadlineExceeded", id, got.Status, failed)
		}
		if ran < 2*time.Second {
			t.Errorf("job %s failed %s after starting, before its limit", id, ran)
		}
		got = c.waitJobFor(id, "instances stopped", 30*time.Second, func(j events.Job) bool {
			for _, in := range j.Instances {
				if in.Status != events.InstanceStopped {
					return false
				}
			}
			return len(j.Instances) == j.WorkerInstances+1
		})
		if live := liveInGroups(t, instanceGroups(t, dataDir, id)); len(live) > 0 {
			t.Errorf("processes of job %s still alive: %v", id, live)
		}
		if fin := conditionOf(got, "Finished"); fin.Status != "True" || fin.Reason != "DeadlineExceeded" || !fin.LastTransitionTime.Equal(*got.FinishedAt) {
			t.Errorf("job %s: Finished condition %+v, finished_at %s", id, fin, got.FinishedAt)
		}
	}
}

// A job whose worker fails on its first two attempts and succeeds on the
// third, with max_retries 2: it keeps its id, ends succeeded with attempt
// 3 and the two failed attempts recorded, its events say rm.job.retrying
// twice and it was never admitted twice at once; the queue's usage is 0
// at the end; the finished job shows its Admitted, Started and Finished
// conditions with their transition times.
func TestRetriesUntilSuccess(t *testing.T) {
	sys := startSystemIn(t, t.TempDir())
	c := newClient(t, sys.HTTPAddr)
	c.createQueue("Default", 4)
	counter := filepath.Join(t.TempDir(), "tries")
	app := createScriptApp(c, "flaky", "local", `[ "$RM_ROLE" = worker ] || exec sleep 1
n=$(cat "$COUNTER" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$COUNTER"
[ $n -ge 3 ] || exit 3`)

	j := submitJob(c, map[string]any{"queue_id": "Default", "worker_instances": 1, "application": map[string]any{"id": app},
		"environment_variables": map[string]string{"COUNTER": counter}, "max_retries": 2, "retry_on": []string{"failed"}})
	if j.Attempt != 1 {
		t.Errorf("a new job's attempt: %d, want 1", j.Attempt)
	}
	got := c.waitJobFor(j.ID, "final", 120*time.Second, isFinal)
	if got.Status != events.JobSucceeded || got.Attempt != 3 || len(got.Attempts) != 2 {
		t.Fatalf("job %s attempt %d attempts %+v conditions %+v: want succeeded on attempt 3", got.Status, got.Attempt, got.Attempts, got.Conditions)
	}
	for i, a := range got.Attempts {
		if a.Attempt != i+1 || a.Outcome != "failed" || a.Reason != "InstanceFailed" || a.Message != "worker 0 exited with code 3" || a.AdmittedAt == nil || a.FinishedAt.IsZero() {
			t.Errorf("attempts[%d] = %+v", i, a)
		}
	}
	ev := waitEvents(t, sys.JS, j.ID, "succeeded")
	t.Logf("events: %v", ev)
	if n := strings.Count(strings.Join(ev, " "), "retrying"); n != 2 {
		t.Errorf("%d retrying events, want 2: %v", n, ev)
	}
	// Admitted, then running or retrying, never admitted twice without a retry between.
	admittedNow := false
	for _, e := range ev {
		switch e {
		case "admitted":
			if admittedNow {
				t.Errorf("admitted twice without a retry between: %v", ev)
			}
			admittedNow = true
		case "retrying":
			admittedNow = false
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for q := c.queue("Default"); q.Usage == nil || q.Usage.AllocatedWorkerInstances != 0; q = c.queue("Default") {
		if time.Now().After(deadline) {
			t.Fatalf("queue usage after the job: %+v, want 0", q.Usage)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// History: one entry per type, with the transition times of the last attempt.
	adm, st, fin := conditionOf(got, "Admitted"), conditionOf(got, "Started"), conditionOf(got, "Finished")
	if adm.Status != "True" || !adm.LastTransitionTime.Equal(*got.AdmittedAt) {
		t.Errorf("Admitted %+v, admitted_at %s", adm, got.AdmittedAt)
	}
	if st.Status != "True" || !st.LastTransitionTime.Equal(*got.StartedAt) {
		t.Errorf("Started %+v, started_at %s", st, got.StartedAt)
	}
	if fin.Status != "True" || fin.Reason != "Succeeded" || !fin.LastTransitionTime.Equal(*got.FinishedAt) {
		t.Errorf("Finished %+v, finished_at %s", fin, got.FinishedAt)
	}
	types := map[string]int{}
	for _, cd := range got.Conditions {
		types[cd.Type]++
	}
	for typ, n := range types {
		if n != 1 {
			t.Errorf("%d conditions of type %s", n, typ)
		}
	}
	if !got.AdmittedAt.After(got.Attempts[1].FinishedAt) {
		t.Errorf("admitted_at %s of attempt 3 not after attempt 2 ended at %s", got.AdmittedAt, got.Attempts[1].FinishedAt)
	}

	// A job whose every instance fails at once, on its last attempt too:
	// it ends failed without the retry's "attempt 2 of 2 waits for
	// admission" left in its Started condition (it once was).
	j = submitJob(c, map[string]any{"queue_id": "Default", "worker_instances": 1, "application": map[string]any{"id": app},
		"command": []string{"/bin/false"}, "max_retries": 1, "retry_on": []string{"failed"}})
	got = c.waitJobFor(j.ID, "final", 120*time.Second, isFinal)
	if got.Status != events.JobFailed || got.Attempt != 2 || len(got.Attempts) != 1 {
		t.Fatalf("job %s attempt %d attempts %+v: want failed on attempt 2", got.Status, got.Attempt, got.Attempts)
	}
	if st := conditionOf(got, "Started"); st.Reason == "Retrying" {
		t.Errorf("the failed job's Started condition is the retry's: %+v", st)
	}
}

// A job that waited for capacity keeps, once finished, how long and why:
// Admitted's transition time is its admission, and every condition type
// appears once.
func TestFinishedJobKeepsItsHistory(t *testing.T) {
	c, app := sleeperSystem(t, t.TempDir(), 2)
	first := c.submitApp("Default", app, 2, map[string]string{"SLEEP": "2"})
	second := c.submitApp("Default", app, 2, map[string]string{"SLEEP": "1"})
	c.waitJobFor(second.ID, "pending", 30*time.Second, hasStatus(events.JobPending))
	c.waitJobFor(first.ID, "final", 60*time.Second, isFinal)
	got := c.waitJobFor(second.ID, "final", 60*time.Second, isFinal)
	if got.Status != events.JobSucceeded {
		t.Fatalf("second job %s", got.Status)
	}
	want := []string{"Admitted", "Started", "Finished"}
	var have []string
	for _, cd := range got.Conditions {
		have = append(have, cd.Type)
	}
	slices.Sort(have)
	slices.Sort(want)
	if !slices.Equal(have, want) {
		t.Errorf("conditions %v, want %v", have, want)
	}
	adm := conditionOf(got, "Admitted")
	if adm.Status != "True" || !adm.LastTransitionTime.Equal(*got.AdmittedAt) || !got.AdmittedAt.After(got.SubmittedAt) {
		t.Errorf("Admitted %+v, submitted %s admitted %s", adm, got.SubmittedAt, got.AdmittedAt)
	}
	t.Logf("second job waited %s; Admitted: %s", got.AdmittedAt.Sub(got.SubmittedAt).Round(time.Millisecond), adm.Message)
	if st := conditionOf(got, "Started"); st.Status != "True" || !st.LastTransitionTime.Equal(*got.StartedAt) {
		t.Errorf("Started %+v, started_at %s", st, got.StartedAt)
	}
	if fin := conditionOf(got, "Finished"); fin.Status != "True" || fin.Reason != "Succeeded" || !fin.LastTransitionTime.Equal(*got.FinishedAt) {
		t.Errorf("Finished %+v, finished_at %s", fin, got.FinishedAt)
	}
}
