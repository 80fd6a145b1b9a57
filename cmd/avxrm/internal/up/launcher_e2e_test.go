package up_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/up"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/nats-io/nats.go/jetstream"
)

// End-to-end tests of the launcher on the all-in-one: jobs run for real as
// local processes (the all-in-one's default driver), through the REST API.

// sleeperScript is the command of the test application: it prints a line,
// fails with exit code 2 when it is worker $FAIL_INDEX, else sleeps $SLEEP
// seconds (1 by default) and succeeds.
const sleeperScript = `echo "hello from $RM_ROLE $RM_INSTANCE_INDEX of $RM_JOB_ID"
if [ "$RM_ROLE" = worker ] && [ "$RM_INSTANCE_INDEX" = "${FAIL_INDEX:-none}" ]; then
  if [ -n "$FAIL_WHEN" ]; then while [ ! -e "$FAIL_WHEN" ]; do sleep 0.05; done; fi
  exit 2
fi
exec sleep "${SLEEP:-1}"`

// createSleeperApp registers the application every local test job runs.
func createSleeperApp(c *client) string {
	c.t.Helper()
	var app struct {
		ID string `json:"id"`
	}
	c.must(http.MethodPost, "/api/resources/v1/applications", map[string]any{
		"name": "sleeper", "version": "1", "image": "local",
		"command": []string{"/bin/sh", "-c", sleeperScript},
	}, http.StatusCreated, &app)
	return app.ID
}

func (c *client) submitApp(queue, appID string, workers int, env map[string]string) events.Job {
	c.t.Helper()
	var j events.Job
	c.must(http.MethodPost, jobsPath, map[string]any{
		"queue_id": queue, "worker_instances": workers, "application": map[string]any{"id": appID},
		"environment_variables": env,
	}, http.StatusCreated, &j)
	return j
}

// waitJobFor polls job id until ok says yes, for up to d.
func (c *client) waitJobFor(id, what string, d time.Duration, ok func(events.Job) bool) events.Job {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		j := c.job(id)
		if ok(j) {
			return j
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("job %s never became %s: status %s, conditions %+v, instances %+v", id, what, j.Status, j.Conditions, j.Instances)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func isFinal(j events.Job) bool { return events.JobFinal(j.Status) }

// statusEvents returns the types of job id's status events in stream
// order (rm.job.updated, which announces instance changes, left out).
func statusEvents(t *testing.T, js jetstream.JetStream, id string) []string {
	t.Helper()
	var out []string
	for _, e := range eventstest.ReadAll(t, js, events.FilterSubject(events.KindJob, "", id)) {
		if e.Type != events.TypeJobUpdated {
			out = append(out, strings.TrimPrefix(e.Type, "rm.job."))
		}
	}
	return out
}

// waitEvents waits until job id's status events end with last.
func waitEvents(t *testing.T, js jetstream.JetStream, id, last string) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := statusEvents(t, js, id)
		if len(got) > 0 && got[len(got)-1] == last || time.Now().After(deadline) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func checkInstances(t *testing.T, j events.Job, status string, exit int) {
	t.Helper()
	if len(j.Instances) != j.WorkerInstances+1 {
		t.Errorf("job %s has %d instance records, want %d: %+v", j.ID, len(j.Instances), j.WorkerInstances+1, j.Instances)
	}
	seen := map[string]bool{}
	for _, in := range j.Instances {
		key := in.Role + "/" + strconv.Itoa(in.Index)
		if seen[key] {
			t.Errorf("job %s: instance %s recorded twice", j.ID, key)
		}
		seen[key] = true
		if in.Status != status || in.ExitCode == nil || *in.ExitCode != exit || in.StartedAt == nil || in.FinishedAt == nil {
			t.Errorf("job %s: instance %+v, want %s with exit code %d, started and finished", j.ID, in, status, exit)
		}
	}
}

// The worked example of the product documents, run for real: queue Default
// allows 10 workers; a job of 10 takes them all, a job of 8 waits until the
// first has ended, then runs; both succeed, their events in order.
func TestLauncherWorkedExampleRunsForReal(t *testing.T) {
	sys := startSystemIn(t, t.TempDir())
	c := newClient(t, sys.HTTPAddr)
	app := createSleeperApp(c)
	c.createQueue("Default", 10)

	j1 := c.submitApp("Default", app, 10, map[string]string{"SLEEP": "2"})
	c.waitJobFor(j1.ID, "running", 30*time.Second, hasStatus(events.JobRunning))
	j2 := c.submitApp("Default", app, 8, map[string]string{"SLEEP": "1"})
	c.waitJobFor(j2.ID, "pending", 10*time.Second, hasStatus(events.JobPending))

	got1 := c.waitJobFor(j1.ID, "final", 60*time.Second, isFinal)
	got2 := c.waitJobFor(j2.ID, "final", 60*time.Second, isFinal)
	for _, j := range []events.Job{got1, got2} {
		if j.Status != events.JobSucceeded || j.StartedAt == nil || j.FinishedAt == nil {
			t.Fatalf("job %s: %s started %v finished %v, conditions %+v", j.ID, j.Status, j.StartedAt, j.FinishedAt, j.Conditions)
		}
		checkInstances(t, j, events.InstanceSucceeded, 0)
	}
	if got2.AdmittedAt == nil || got2.AdmittedAt.Before(*got1.FinishedAt) {
		t.Errorf("job 2 admitted at %v, before job 1 finished at %v", got2.AdmittedAt, got1.FinishedAt)
	}
	if got2.StartedAt.Before(*got1.FinishedAt) {
		t.Errorf("job 2 started at %v, before job 1 finished at %v", got2.StartedAt, got1.FinishedAt)
	}
	if ev := waitEvents(t, sys.JS, j1.ID, "succeeded"); !slices.Equal(ev, []string{"submitted", "admitted", "running", "succeeded"}) {
		// Seen on 2026-11-30 and 2026-12-06 (-race beside other
		// packages): job 1 pending with QueueNotFound before admitted, its
		// queue's event coming after its own; since then the scheduler
		// waits queueLag for a queue it has not heard of.
		t.Errorf("events of job 1: %v; conditions %+v", ev, got1.Conditions)
	}
	if ev := waitEvents(t, sys.JS, j2.ID, "succeeded"); !slices.Equal(ev, []string{"submitted", "pending", "admitted", "running", "succeeded"}) {
		t.Errorf("events of job 2: %v", ev)
	}

	// Each instance's output is kept and served by the API.
	status, raw := c.do(http.MethodGet, jobsPath+"/"+j2.ID+"/instances/worker/7/logs", nil)
	if want := "hello from worker 7 of " + j2.ID + "\n"; status != http.StatusOK || string(raw) != want {
		t.Errorf("logs of worker 7 = %d %q, want 200 %q", status, raw, want)
	}
	// From an offset on: the rest, and nothing past the end.
	for offset, want := range map[int]string{6: "from worker 7 of " + j2.ID + "\n", 1 << 20: ""} {
		status, raw := c.do(http.MethodGet, fmt.Sprintf("%s/%s/instances/worker/7/logs?offset=%d", jobsPath, j2.ID, offset), nil)
		if status != http.StatusOK || string(raw) != want {
			t.Errorf("logs of worker 7 from offset %d = %d %q, want 200 %q", offset, status, raw, want)
		}
	}
	for _, q := range []string{"offset=-1", "tail=-1", "offset=2&tail=1"} {
		if status, raw := c.do(http.MethodGet, jobsPath+"/"+j2.ID+"/instances/worker/7/logs?"+q, nil); status != http.StatusUnprocessableEntity {
			t.Errorf("logs with %s = %d %s, want 422", q, status, raw)
		}
	}
	if status, raw := c.do(http.MethodGet, jobsPath+"/"+j2.ID+"/instances/worker/8/logs", nil); status != http.StatusNotFound {
		t.Errorf("logs of a worker the job does not have = %d %s, want 404", status, raw)
	}
}

// instanceGroups returns the process groups of job id's local instances,
// from the pid lines their wrappers write into the local driver's records.
func instanceGroups(t *testing.T, dataDir, id string) []int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dataDir, "launcher", "local", id, "*", "record"))
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(raw), "\n") {
			if v, ok := strings.CutPrefix(l, "pid "); ok {
				n, err := strconv.Atoi(v)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, n)
			}
		}
	}
	return out
}

// liveInGroups returns the processes (not zombies) in the process groups.
func liveInGroups(t *testing.T, groups []int) []string {
	t.Helper()
	want := map[int]bool{}
	for _, g := range groups {
		want[g] = true
	}
	procs, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range procs {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue // ended meanwhile
		}
		s := string(raw)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+2:]) // state, ppid, pgrp, ...
		if len(f) < 3 || f[0] == "Z" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); want[g] {
			out = append(out, s[:i+1])
		}
	}
	return out
}

// startSystemIn runs the all-in-one on free ports with its data in dataDir.
func startSystemIn(t testing.TB, dataDir string) *up.System {
	t.Helper()
	cfg, err := up.Load([]string{"--data-dir", dataDir, "--http-addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:0",
		"--mongo-addr", "127.0.0.1:0", "--outbox-interval", "200ms"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	var w io.Writer = io.Discard
	if os.Getenv("RM_TEST_LOG") != "" {
		w = os.Stderr // to see what the services say
	}
	sys, err := up.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(w, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sys.Stop()
		if err := sys.Wait(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return sys
}

// A failing worker fails its job with its exit code in a condition, the
// others are stopped, and the capacity goes to a waiting job; cleaning a
// running job up leaves no process behind.
func TestLauncherFailureAndCleanup(t *testing.T) {
	dataDir := t.TempDir()
	sys := startSystemIn(t, dataDir)
	c := newClient(t, sys.HTTPAddr)
	app := createSleeperApp(c)
	c.createQueue("small", 5)

	// Worker 3 fails once the trigger file exists, which the test creates only
	// after the second job is seen waiting, so the hand-over is exercised.
	trigger := filepath.Join(t.TempDir(), "fail-now")
	bad := c.submitApp("small", app, 5, map[string]string{"FAIL_INDEX": "3", "FAIL_WHEN": trigger, "SLEEP": "60"})
	c.waitJobFor(bad.ID, "admitted", 10*time.Second, func(j events.Job) bool { return j.AdmittedAt != nil })
	next := c.submitApp("small", app, 5, map[string]string{"SLEEP": "60"})
	c.waitJobFor(next.ID, "pending", 30*time.Second, hasStatus(events.JobPending))
	if err := os.WriteFile(trigger, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	got := c.waitJobFor(bad.ID, "failed", 30*time.Second, isFinal)
	if got.Status != events.JobFailed {
		t.Fatalf("job with a failing worker: %s", got.Status)
	}
	var cond events.Condition
	for _, cd := range got.Conditions {
		if cd.Type == "Failed" {
			cond = cd
		}
	}
	if cond.Status != "True" || cond.Reason != "InstanceFailed" || cond.Message != "worker 3 exited with code 2" {
		t.Errorf("Failed condition %+v, want True InstanceFailed %q", cond, "worker 3 exited with code 2")
	}
	if !slices.Contains(got.Warnings, "worker 3 exited with code 2") {
		t.Errorf("warnings %q", got.Warnings)
	}
	// The others are stopped, and say so.
	got = c.waitJobFor(bad.ID, "all instances ended", 30*time.Second, func(j events.Job) bool {
		for _, in := range j.Instances {
			if in.Status == events.InstanceRunning || in.Status == events.InstancePending {
				return false
			}
		}
		return len(j.Instances) == 6
	})
	for _, in := range got.Instances {
		want := events.InstanceStopped
		if in.Role == "worker" && in.Index == 3 {
			want = events.InstanceFailed
		}
		if in.Status != want {
			t.Errorf("instance %s %d: %s, want %s", in.Role, in.Index, in.Status, want)
		}
	}
	if live := liveInGroups(t, instanceGroups(t, dataDir, bad.ID)); len(live) > 0 {
		t.Errorf("processes of the failed job still alive: %v", live)
	}

	// The freed capacity goes to the waiting job.
	c.waitJobFor(next.ID, "running", 30*time.Second, hasStatus(events.JobRunning))
	groups := instanceGroups(t, dataDir, next.ID)
	if len(groups) != 6 || len(liveInGroups(t, groups)) == 0 {
		t.Fatalf("running job: %d process groups, live %v", len(groups), liveInGroups(t, groups))
	}
	c.must(http.MethodPost, jobsPath+"/"+next.ID+"/cleanup", nil, http.StatusAccepted, nil)
	cleaned := c.waitJobFor(next.ID, "cleaned", 30*time.Second, func(j events.Job) bool { return j.CleanedAt != nil })
	if cleaned.Status != events.JobCancelled {
		t.Errorf("cleaned running job: %s, want cancelled", cleaned.Status)
	}
	for _, in := range cleaned.Instances {
		if in.Status != events.InstanceStopped {
			t.Errorf("instance %s %d of the cleaned job: %s", in.Role, in.Index, in.Status)
		}
	}
	if live := liveInGroups(t, groups); len(live) > 0 {
		t.Errorf("processes left after cleanup: %v", live)
	}
	if ev := waitEvents(t, sys.JS, next.ID, "cleaned"); !slices.Equal(ev, []string{"submitted", "pending", "admitted", "running", "cancel-requested", "cancelled", "cleaned"}) {
		t.Errorf("events of the cleaned job: %v", ev)
	}
	// Only the logs survive a cleanup.
	left, _ := filepath.Glob(filepath.Join(dataDir, "launcher", "local", next.ID, "*", "*"))
	for _, f := range left {
		if filepath.Base(f) != "output.log" {
			t.Errorf("file left after cleanup: %s", f)
		}
	}
	status, raw := c.do(http.MethodGet, jobsPath+"/"+next.ID+"/instances/controller/0/logs", nil)
	if status != http.StatusOK || !strings.HasPrefix(string(raw), "hello from controller 0") {
		t.Errorf("logs after cleanup = %d %q", status, raw)
	}
}
