package up_test

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/nats-io/nats.go/jetstream"
)

// End-to-end tests of job dependencies and job arrays on the all-in-one,
// through the REST API, with the real scheduler and launcher.

const arraysPath = "/api/resources/v1/job-arrays"

// jobArray is what GET /job-arrays/{id} answers.
type jobArray struct {
	ID              string         `json:"id"`
	Name            string         `json:"name"`
	Count           int            `json:"count"`
	MaxParallel     int            `json:"max_parallel"`
	Counts          map[string]int `json:"counts"`
	FailedIndexes   []int          `json:"failed_indexes"`
	CancelRequested bool           `json:"cancel_requested"`
}

func (c *client) jobArray(id string) jobArray {
	c.t.Helper()
	var a jobArray
	c.must(http.MethodGet, arraysPath+"/"+id, nil, http.StatusOK, &a)
	return a
}

// waitArray polls array id until ok says yes, for up to d.
func (c *client) waitArray(id, what string, d time.Duration, ok func(jobArray) bool) jobArray {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		a := c.jobArray(id)
		if ok(a) {
			return a
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("array %s never became %s: %+v", id, what, a)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// arrayJobs lists the jobs of array id through GET /jobs?array_id=.
func (c *client) arrayJobs(id string) []events.Job {
	c.t.Helper()
	return c.allJobs(jobsPath + "?limit=1000&array_id=" + id)
}

func (c *client) submitAfter(queue, appID string, env map[string]string, deps ...events.JobDependency) events.Job {
	c.t.Helper()
	var j events.Job
	c.must(http.MethodPost, jobsPath, map[string]any{
		"queue_id": queue, "worker_instances": 1, "application": map[string]any{"id": appID},
		"environment_variables": env, "depends_on": deps,
	}, http.StatusCreated, &j)
	return j
}

func after(cond string, j events.Job) events.JobDependency {
	return events.JobDependency{JobID: j.ID, Condition: cond}
}

// position returns the stream position of job id's first event of type typ, -1 if none.
func position(evs []events.Event, id, typ string) int {
	return slices.IndexFunc(evs, func(e events.Event) bool { return e.ResourceID == id && e.Type == typ })
}

// A → B → C runs in order, each admitted only after the one before
// succeeded (from the events stream); a failing A cancels B and C with
// DependencyFailed, without admitting them; "finished" accepts a failure.
func TestDependencyChainEndToEnd(t *testing.T) {
	sys := startSystemIn(t, t.TempDir())
	c := newClient(t, sys.HTTPAddr)
	app := createSleeperApp(c)
	c.createQueue("Default", 10)

	status, raw := c.do(http.MethodPost, jobsPath, map[string]any{"queue_id": "Default", "worker_instances": 1,
		"application": map[string]any{"id": app}, "depends_on": []events.JobDependency{{JobID: "job-NOPE", Condition: "succeeded"}}})
	if status != http.StatusUnprocessableEntity || !strings.Contains(string(raw), `"depends_on[0].job_id"`) {
		t.Errorf("unknown dependency = %d %s, want 422 naming depends_on[0].job_id", status, raw)
	}

	a := c.submitAfter("Default", app, map[string]string{"SLEEP": "1"})
	b := c.submitAfter("Default", app, map[string]string{"SLEEP": "0.3"}, after("succeeded", a))
	cc := c.submitAfter("Default", app, map[string]string{"SLEEP": "0.3"}, after("succeeded", b))
	w := c.waitJobFor(b.ID, "waiting for its dependency", 30*time.Second, func(j events.Job) bool {
		return j.Status == events.JobPending && admittedCondition(j).Reason == "WaitingForDependency"
	})
	if msg := admittedCondition(w).Message; msg != "waiting for "+a.ID+" to succeed" {
		t.Errorf("B's condition: %q, want it to name A and what B waits for", msg)
	}
	if got := c.job(b.ID).DependsOn; len(got) != 1 || got[0].JobID != a.ID || got[0].Condition != "succeeded" {
		t.Errorf("B's depends_on = %+v", got)
	}
	c.waitJobFor(cc.ID, "succeeded", 90*time.Second, hasStatus(events.JobSucceeded))
	evs := eventstest.ReadAll(t, sys.JS, events.FilterSubject(events.KindJob, "", ""))
	for _, step := range [][2]events.Job{{a, b}, {b, cc}} {
		done, next := position(evs, step[0].ID, events.TypeJobSucceeded), position(evs, step[1].ID, events.TypeJobAdmitted)
		if done < 0 || next < 0 || next < done {
			t.Errorf("%s admitted at stream position %d, before %s succeeded at %d", step[1].ID, next, step[0].ID, done)
		}
	}

	// A failing A: B and C are cancelled by the scheduler, never admitted.
	a2 := c.submitAfter("Default", app, map[string]string{"FAIL_INDEX": "0", "SLEEP": "0.3"})
	b2 := c.submitAfter("Default", app, nil, after("succeeded", a2))
	c2 := c.submitAfter("Default", app, nil, after("succeeded", b2))
	d2 := c.submitAfter("Default", app, map[string]string{"SLEEP": "0.1"}, after("finished", a2))
	c.waitJobFor(a2.ID, "failed", 60*time.Second, hasStatus(events.JobFailed))
	for _, j := range []events.Job{b2, c2} {
		got := c.waitJobFor(j.ID, "cancelled", 30*time.Second, hasStatus(events.JobCancelled))
		if cond := admittedCondition(got); cond.Reason != "DependencyFailed" || cond.Status != "False" {
			t.Errorf("%s: Admitted condition %+v, want DependencyFailed", j.ID, cond)
		}
		if j.ID == b2.ID && admittedCondition(got).Message != "dependency can no longer succeed: "+a2.ID+" failed" {
			t.Errorf("%s: %q does not say how its dependency ended", j.ID, admittedCondition(got).Message)
		}
		// Cancelled says why, and so does Finished (API.md).
		why := admittedCondition(got).Message
		for _, want := range []events.Condition{{Type: "Cancelled", Status: "True", Reason: "DependencyFailed", Message: why},
			{Type: "Finished", Status: "True", Reason: "Cancelled", Message: why}} {
			if c := jobdoc.FindCondition(&got, want.Type); c == nil || c.Status != want.Status || c.Reason != want.Reason || c.Message != want.Message {
				t.Errorf("%s: condition %s = %+v, want %s %s %q", j.ID, want.Type, c, want.Status, want.Reason, want.Message)
			}
		}
		if got.AdmittedAt != nil || got.FinishedAt == nil {
			t.Errorf("%s: admitted_at %v, finished_at %v", j.ID, got.AdmittedAt, got.FinishedAt)
		}
	}
	c.waitJobFor(d2.ID, "succeeded", 60*time.Second, hasStatus(events.JobSucceeded))
	evs = eventstest.ReadAll(t, sys.JS, events.FilterSubject(events.KindJob, "", ""))
	for _, j := range []events.Job{b2, c2} {
		if p := position(evs, j.ID, events.TypeJobAdmitted); p >= 0 {
			t.Errorf("%s was admitted (stream position %d)", j.ID, p)
		}
	}
	if position(evs, c2.ID, events.TypeJobCancelled) < position(evs, b2.ID, events.TypeJobCancelled) {
		t.Errorf("C cancelled before B")
	}
}

// maxAdmitted replays the job events of array id in stream order and
// returns the most of its jobs admitted (admitted or running, not yet
// final) at any point.
func maxAdmitted(t *testing.T, js jetstream.JetStream, id string) int {
	t.Helper()
	live := map[string]bool{}
	most := 0
	for _, e := range eventstest.ReadAll(t, js, events.FilterSubject(events.KindJob, "", "")) {
		var j events.Job
		if err := e.DecodeData(&j); err != nil {
			t.Fatal(err)
		}
		if j.ArrayID != id {
			continue
		}
		switch {
		case e.Type == events.TypeJobAdmitted:
			live[j.ID] = true
		case events.JobFinal(j.Status):
			delete(live, j.ID)
		}
		most = max(most, len(live))
	}
	return most
}

// An array of 200 with max_parallel 10 on the simulated driver: never more
// than 10 of its jobs admitted at once (from the events), every job named
// <name>-<index> with RM_ARRAY_INDEX, and it ends with counts succeeded: 200.
func TestJobArrayMaxParallelEndToEnd(t *testing.T) {
	sys := startSystemIn(t, t.TempDir())
	c := newClient(t, sys.HTTPAddr)
	c.simulatedFor(0.2)
	c.createQueue("Wide", 1000)

	var a jobArray
	c.must(http.MethodPost, arraysPath, map[string]any{
		"job": map[string]any{"name": "sweep", "queue_id": "Wide", "worker_instances": 1,
			"application":           map[string]any{"name": "sim", "version": "1", "image": "registry.example/sim:1"},
			"environment_variables": map[string]string{"SEED": "42"}},
		"count": 200, "max_parallel": 10,
	}, http.StatusCreated, &a)
	if !strings.HasPrefix(a.ID, "arr-") || a.Count != 200 || a.MaxParallel != 10 || a.Counts[events.JobSubmitted] != 200 || a.FailedIndexes == nil {
		t.Errorf("created: %+v", a)
	}
	jobs := c.arrayJobs(a.ID)
	if len(jobs) != 200 {
		t.Fatalf("GET /jobs?array_id= lists %d jobs, want 200", len(jobs))
	}
	for _, j := range jobs {
		if j.ArrayIndex == nil || j.ArrayID != a.ID {
			t.Fatalf("job %s: array_id %q, array_index %v", j.ID, j.ArrayID, j.ArrayIndex)
		}
		i := strconv.Itoa(*j.ArrayIndex)
		if j.Name != "sweep-"+i || j.EnvironmentVariables["RM_ARRAY_INDEX"] != i || j.EnvironmentVariables["SEED"] != "42" {
			t.Errorf("job %s: name %q, environment %v", j.ID, j.Name, j.EnvironmentVariables)
		}
	}

	// Generous: under -race on a loaded machine a job's round of writes
	// (admitted, running, succeeded) takes seconds.
	start := time.Now()
	done := c.waitArray(a.ID, "succeeded: 200", 20*time.Minute, func(a jobArray) bool { return a.Counts[events.JobSucceeded] == 200 })
	t.Logf("200 jobs succeeded %v after the array was created", time.Since(start).Round(time.Second))
	if len(done.Counts) != 1 || len(done.FailedIndexes) != 0 {
		t.Errorf("finished array: %+v", done)
	}
	most := maxAdmitted(t, sys.JS, a.ID)
	t.Logf("at most %d of the array's jobs admitted at once", most)
	if most > 10 || most == 0 {
		t.Errorf("%d jobs of the array admitted at once, want 1..10", most)
	}

	var list struct {
		Items []jobArray `json:"items"`
	}
	c.must(http.MethodGet, arraysPath+"?limit=10", nil, http.StatusOK, &list)
	if len(list.Items) != 1 || list.Items[0].ID != a.ID || list.Items[0].Counts[events.JobSucceeded] != 200 {
		t.Errorf("GET /job-arrays: %+v", list.Items)
	}
}

// Cancelling an array: its jobs never admitted are cancelled by the
// scheduler, the admitted ones get cancel_requested (the test plays the
// launcher: one ends failed, the others cancelled); nothing more of it is
// admitted; counts and failed_indexes follow.
func TestJobArrayCancelEndToEnd(t *testing.T) {
	sys := startScheduling(t)
	c := newClient(t, sys.HTTPAddr)
	l := newLauncher(t, sys.DB, sys.JS)
	c.createQueue("Default", 100)

	var a jobArray
	c.must(http.MethodPost, arraysPath, map[string]any{
		"job": map[string]any{"queue_id": "Default", "worker_instances": 2,
			"application": map[string]any{"name": "sim", "version": "1", "image": "registry.example/sim:1"}},
		"count": 20, "max_parallel": 5,
	}, http.StatusCreated, &a)
	if a.Name != a.ID {
		t.Errorf("array without a job name is named %q, want its id", a.Name)
	}
	c.waitArray(a.ID, "5 admitted, 15 pending", 30*time.Second, func(a jobArray) bool {
		return a.Counts[events.JobAdmitted] == 5 && a.Counts[events.JobPending] == 15
	})
	for _, j := range c.arrayJobs(a.ID) {
		if j.Status == events.JobPending && admittedCondition(j).Reason != "ArrayMaxParallel" {
			t.Errorf("pending job %s: condition %+v, want ArrayMaxParallel", j.ID, admittedCondition(j))
		}
	}

	var cancelled jobArray
	c.must(http.MethodPost, arraysPath+"/"+a.ID+"/cancel", nil, http.StatusAccepted, &cancelled)
	if !cancelled.CancelRequested {
		t.Errorf("cancel answer: %+v", cancelled)
	}
	c.waitArray(a.ID, "15 cancelled", 30*time.Second, func(a jobArray) bool { return a.Counts[events.JobCancelled] == 15 })
	var admitted []events.Job
	for _, j := range c.arrayJobs(a.ID) {
		if j.Status == events.JobAdmitted {
			if !j.CancelRequested {
				t.Errorf("admitted job %s: cancel not requested", j.ID)
			}
			admitted = append(admitted, j)
		}
	}
	if len(admitted) != 5 {
		t.Fatalf("%d admitted jobs after the cancel, want 5", len(admitted))
	}
	l.finish(admitted[0].ID, events.JobFailed)
	for _, j := range admitted[1:] {
		l.finish(j.ID, events.JobCancelled)
	}
	end := c.waitArray(a.ID, "all final", 30*time.Second, func(a jobArray) bool {
		return a.Counts[events.JobCancelled] == 19 && a.Counts[events.JobFailed] == 1
	})
	if want := []int{*admitted[0].ArrayIndex}; fmt.Sprint(end.FailedIndexes) != fmt.Sprint(want) {
		t.Errorf("failed_indexes %v, want %v", end.FailedIndexes, want)
	}
	// Every job of the array is final: none can be admitted any more.
	n := 0
	for id, k := range admittedEvents(t, sys.JS) {
		if slices.ContainsFunc(admitted, func(j events.Job) bool { return j.ID == id }) {
			n += k
		} else if strings.HasPrefix(id, "job-") && k > 0 {
			if j := c.job(id); j.ArrayID == a.ID {
				t.Errorf("job %s of the cancelled array admitted", id)
			}
		}
	}
	if n != 5 {
		t.Errorf("%d admitted events of the array, want 5", n)
	}
	c.must(http.MethodPost, arraysPath+"/arr-NOPE/cancel", nil, http.StatusNotFound, nil)
}
