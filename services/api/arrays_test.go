package api_test

import (
	"context"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/api/internal/apitest"
)

// The job arrays API without a scheduler: what is stored, announced and
// answered; an Idempotency-Key replays the array instead of making another.
func TestJobArrayAPI(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", obj{"name": "Default", "maximum_allowed_worker_instances": 10})
	body := obj{"job": jobBody("Default", 2).with("environment_variables", obj{"SEED": "1"}), "count": 3, "max_parallel": 2}
	r := e.must(http.StatusCreated, http.MethodPost, v1+"/job-arrays", body, "Idempotency-Key", "arr-1")
	a := r.obj(t)
	id := a.str("id")
	if r.Header.Get("Location") != v1+"/job-arrays/"+id || a.str("name") != "sweep-42" || a["count"] != float64(3) || a["max_parallel"] != float64(2) {
		t.Errorf("created: %s %v", r.Body, r.Header)
	}
	if again := e.must(http.StatusCreated, http.MethodPost, v1+"/job-arrays", body, "Idempotency-Key", "arr-1"); string(again.Body) != string(r.Body) {
		t.Errorf("replay differs:\n%s\n%s", r.Body, again.Body)
	}
	if n := e.count("job_arrays"); n != 1 {
		t.Errorf("%d arrays stored, want 1", n)
	}

	var names []string
	for _, it := range e.must(http.StatusOK, http.MethodGet, v1+"/jobs?array_id="+id, nil).obj(t)["items"].([]any) {
		j := obj(it.(map[string]any))
		names = append(names, j.str("name"))
		env := j["environment_variables"].(map[string]any)
		if j.str("array_id") != id || env["SEED"] != "1" || env["RM_ARRAY_INDEX"] != j.str("name")[len("sweep-42-"):] {
			t.Errorf("job %s: %v", j.str("id"), j)
		}
		if got := e.storedJob(j.str("id")).Runtime.EnvironmentVariables["RM_ARRAY_INDEX"]; got != env["RM_ARRAY_INDEX"] {
			t.Errorf("job %s: runtime RM_ARRAY_INDEX %q", j.str("id"), got)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"sweep-42-0", "sweep-42-1", "sweep-42-2"}) {
		t.Errorf("jobs %v", names)
	}
	evs := e.events(events.FilterSubject(events.KindJob, "", ""))
	if len(evs) != 3 || evs[0].Type != events.TypeJobSubmitted {
		t.Errorf("%d events, first %+v", len(evs), evs)
	}

	got := e.must(http.StatusOK, http.MethodGet, v1+"/job-arrays/"+id, nil).obj(t)
	if c := got["counts"].(map[string]any); c["submitted"] != float64(3) || len(got["failed_indexes"].([]any)) != 0 {
		t.Errorf("GET: %v", got)
	}
	if items := e.must(http.StatusOK, http.MethodGet, v1+"/job-arrays?limit=5", nil).obj(t)["items"].([]any); len(items) != 1 {
		t.Errorf("list: %v", items)
	}
	e.must(http.StatusNotFound, http.MethodGet, v1+"/job-arrays/arr-NOPE", nil)
	e.must(http.StatusNotFound, http.MethodGet, v1+"/job-arrays/nope", nil)

	c := e.must(http.StatusAccepted, http.MethodPost, v1+"/job-arrays/"+id+"/cancel", nil).obj(t)
	if c["cancel_requested"] != true {
		t.Errorf("cancel: %v", c)
	}
	// The jobs are asked after the answer.
	e.waitJobsAsked(id, 3)
	if n := len(e.events(events.FilterSubject(events.KindJob, "", ""))); n != 6 {
		t.Errorf("%d job events after the cancel, want 3 submitted + 3 cancel-requested", n)
	}
}

// TestCancelOfAnEndedArray: cancelling an array whose jobs have all ended
// is a 409 saying so, as for a job that has ended, and writes nothing.
func TestCancelOfAnEndedArray(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", obj{"name": "Default", "maximum_allowed_worker_instances": 10})
	id := e.must(http.StatusCreated, http.MethodPost, v1+"/job-arrays", obj{"job": jobBody("Default", 1), "count": 3}).obj(t).str("id")
	setStatus := func(status string, index int) {
		t.Helper()
		if _, err := e.db.Collection("jobs").UpdateOne(context.Background(), bson.D{{Key: "array_id", Value: id}, {Key: "array_index", Value: index}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: status}}}}); err != nil {
			t.Fatal(err)
		}
	}
	setStatus(events.JobSucceeded, 0)
	setStatus(events.JobFailed, 1)
	setStatus(events.JobRunning, 2)
	before := e.must(http.StatusOK, http.MethodGet, v1+"/job-arrays/"+id, nil).obj(t)
	setStatus(events.JobSucceeded, 2)
	eventsBefore := len(e.events(events.FilterSubject(events.KindJob, "", "")))

	r := e.do(http.MethodPost, v1+"/job-arrays/"+id+"/cancel", nil)
	if r.Status != http.StatusConflict || !strings.Contains(string(r.Body), "has ended (2 succeeded, 1 failed)") {
		t.Errorf("cancel of an ended array: %d %s, want 409 saying how its jobs ended", r.Status, r.Body)
	}
	after := e.must(http.StatusOK, http.MethodGet, v1+"/job-arrays/"+id, nil).obj(t)
	if after["cancel_requested"] == true || after["version"] != before["version"] {
		t.Errorf("the array was written: before %v, after %v", before, after)
	}
	if n := len(e.events(events.FilterSubject(events.KindJob, "", ""))); n != eventsBefore {
		t.Errorf("%d job events after the refused cancel, want %d", n, eventsBefore)
	}

	// One job not ended: the cancel is taken.
	setStatus(events.JobRunning, 2)
	if c := e.must(http.StatusAccepted, http.MethodPost, v1+"/job-arrays/"+id+"/cancel", nil).obj(t); c["cancel_requested"] != true {
		t.Errorf("cancel: %v", c)
	}
}

// waitJobsAsked waits until n jobs of array id have cancel_requested.
func (e *env) waitJobsAsked(id string, n int) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		asked := 0
		for _, it := range e.must(http.StatusOK, http.MethodGet, v1+"/jobs?array_id="+id, nil).obj(e.t)["items"].([]any) {
			if it.(map[string]any)["cancel_requested"] == true {
				asked++
			}
		}
		if asked == n {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%d jobs of array %s asked to cancel after 20 s, want %d", asked, id, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestArrayCancelLeftUnfinishedIsFinished: an API that stopped after it
// recorded an array's cancel, before it asked the jobs, leaves the array
// with cancel_requested and its jobs not asked. The sweep that Serve runs
// asks them, each once, with its event.
func TestArrayCancelLeftUnfinishedIsFinished(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", obj{"name": "Default", "maximum_allowed_worker_instances": 10})
	id := e.must(http.StatusCreated, http.MethodPost, v1+"/job-arrays", obj{"job": jobBody("Default", 1), "count": 4}).obj(t).str("id")
	// What the cancel writes before it answers, and nothing after.
	if _, err := e.db.Collection(events.JobArraysCollection).UpdateOne(context.Background(), bson.D{{Key: "_id", Value: id}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "cancel_requested", Value: true}}}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.svc.SweepArrayCancels(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	e.waitJobsAsked(id, 4)
	asked := 0
	for _, ev := range e.events(events.FilterSubject(events.KindJob, "", "")) {
		if ev.Type == events.TypeJobCancelRequested {
			asked++
		}
	}
	if asked != 4 {
		t.Errorf("%d rm.job.cancel_requested events, want 4 (one per job)", asked)
	}
}

// TestIndexesAreMadeAtStart: on the embedded store the API makes the
// indexes of its reads by index (the active jobs, an array's jobs) before
// it serves, not at the first request that reads by them, when a build on
// a big store would hold every write back.
func TestIndexesAreMadeAtStart(t *testing.T) {
	a := apitest.StartIndexed(t, apitest.TestLogger(t))
	names, err := a.Ferret.FieldIndexes(context.Background(), a.DB.Name())
	if err != nil {
		t.Fatal(err)
	}
	// avxrm_ix_<table>_status_p<hash>, avxrm_ix_<table>_array_id_status_p<hash>
	key := regexp.MustCompile(`_(array_id_)?status_p[0-9a-f]{8}$`)
	var active, arrays bool
	for _, n := range names {
		if m := key.FindStringSubmatch(n); m != nil && !strings.Contains(n, "post_controller") {
			active = active || m[1] == ""
			arrays = arrays || m[1] != ""
		}
	}
	if !active || !arrays {
		t.Errorf("field indexes after the API started: %v; want the active jobs' (status) and the array jobs' (array_id, status), both partial", names)
	}
}

// TestDependencyOnAnArraySaysWhatToName: depends_on naming a job array, as
// Slurm's afterok:<array> would, is refused saying to name its jobs, and
// nothing is written.
func TestDependencyOnAnArraySaysWhatToName(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", obj{"name": "Default", "maximum_allowed_worker_instances": 10})
	id := e.must(http.StatusCreated, http.MethodPost, v1+"/job-arrays", obj{"job": jobBody("Default", 1), "count": 2}).obj(t).str("id")
	body := jobBody("Default", 1).with("depends_on", []obj{{"job_id": id, "condition": "succeeded"}})
	p := e.must(http.StatusUnprocessableEntity, http.MethodPost, v1+"/jobs", body).obj(t)
	errs := p["errors"].([]any)
	want := `no job "` + id + `": a job depends on jobs, not on a job array; name each of its jobs, which GET /jobs?array_id=` + id + ` lists`
	if len(errs) != 1 || errs[0].(map[string]any)["field"] != "depends_on[0].job_id" || errs[0].(map[string]any)["message"] != want {
		t.Errorf("errors %v, want depends_on[0].job_id: %s", errs, want)
	}
	if n := e.count("jobs"); n != 2 {
		t.Errorf("%d jobs stored, want the array's 2", n)
	}
}

// TestArrayCancelAsksRunningJobsFirst: the jobs of a cancelled array that
// hold capacity are asked before those that wait, so that they stop at
// once, not after every waiting job of a big array was asked.
func TestArrayCancelAsksRunningJobsFirst(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", obj{"name": "Default", "maximum_allowed_worker_instances": 10})
	id := e.must(http.StatusCreated, http.MethodPost, v1+"/job-arrays", obj{"job": jobBody("Default", 1), "count": 6, "max_parallel": 2}).obj(t).str("id")
	running := map[string]bool{}
	for _, index := range []int{4, 5} {
		var j struct {
			ID string `bson:"_id"`
		}
		if err := e.db.Collection("jobs").FindOneAndUpdate(context.Background(), bson.D{{Key: "array_id", Value: id}, {Key: "array_index", Value: index}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: events.JobRunning}}}}).Decode(&j); err != nil {
			t.Fatal(err)
		}
		running[j.ID] = true
	}
	e.must(http.StatusAccepted, http.MethodPost, v1+"/job-arrays/"+id+"/cancel", nil)
	e.waitJobsAsked(id, 6)
	var asked []string
	for _, ev := range e.events(events.FilterSubject(events.KindJob, "", "")) {
		if ev.Type == events.TypeJobCancelRequested {
			asked = append(asked, ev.ResourceID)
		}
	}
	if len(asked) != 6 || !running[asked[0]] || !running[asked[1]] {
		t.Errorf("jobs asked in the order %v, want the running ones %v first, each once", asked, running)
	}
}
