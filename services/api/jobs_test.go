package api_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/ledger"
	"github.com/avxrm/rm/services/api/internal/apitest"
	"github.com/google/go-cmp/cmp"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// The jobs API without a scheduler: what is stored, announced and refused.

func jobBody(queue string, workers int) obj {
	return obj{"name": "sweep-42", "queue_id": queue, "worker_instances": workers,
		"application": obj{"name": "inline", "version": "1", "image": "registry.example/inline:1"}}
}

// storedJob reads a job document as the scheduler and the launcher do,
// runtime spec included.
func (e *env) storedJob(id string) events.Job {
	e.t.Helper()
	var j events.Job
	if err := e.db.Collection("jobs").FindOne(context.Background(), bson.D{{Key: "_id", Value: id}}).Decode(&j); err != nil {
		e.t.Fatal(err)
	}
	return j
}

func TestSubmitJob(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", obj{"name": "Default", "maximum_allowed_worker_instances": 10,
		"environment_variables": obj{"A": "queue", "B": "queue", "C": "queue", "D": "queue"}})
	app := e.create("/applications", obj{"name": "sim", "version": "2", "image": "registry.example/sim:2",
		"command": []string{"run"}, "environment_variables": obj{"B": "app", "C": "app", "D": "app"}})

	r := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Default", 8).with("labels", obj{"team": "adas"}))
	j := r.obj(t)
	if j.str("status") != "submitted" || j.str("queue_name") != "Default" || r.Header.Get("Location") != v1+"/jobs/"+j.str("id") || r.Header.Get("ETag") != `"1"` {
		t.Errorf("submitted: %s %v", r.Body, r.Header)
	}
	for _, k := range []string{"conditions", "warnings", "instances"} {
		if l, ok := j[k].([]any); !ok || len(l) != 0 {
			t.Errorf("%s = %v, want []", k, j[k])
		}
	}
	if got := e.storedJob(j.str("id")).Runtime.Image; got != "registry.example/inline:1" {
		t.Errorf("inline image: %q", got)
	}
	evs := e.events(events.FilterSubject(events.KindJob, "", j.str("id")))
	if len(evs) != 1 || evs[0].Type != events.TypeJobSubmitted {
		t.Errorf("events %+v", evs)
	}

	// By registered name and version, with an app-runtime-config on the queue:
	// its image wins; env is queue, then application, then config, then job.
	e.create("/app-runtime-config/Default/application/"+app.str("id"), obj{"image": "registry.example/sim:gpu",
		"working_directory": "/work", "environment_variables": obj{"C": "arc", "D": "arc"}})
	body := obj{"queue_id": "Default", "worker_instances": 2, "application": obj{"name": "sim", "version": "2"},
		"environment_variables": obj{"D": "job"}}
	id := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", body).obj(t).str("id")
	want := events.RuntimeSpec{Image: "registry.example/sim:gpu", Command: []string{"run"}, WorkingDirectory: "/work",
		EnvironmentVariables: map[string]string{"A": "queue", "B": "app", "C": "arc", "D": "job"}}
	if diff := cmp.Diff(want, e.storedJob(id).Runtime); diff != "" {
		t.Errorf("runtime (-want +got):\n%s", diff)
	}
	// By id.
	id = e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", obj{"queue_id": "Default", "worker_instances": 1,
		"application": obj{"id": app.str("id")}}).obj(t).str("id")
	if got := e.storedJob(id); got.Application.Name != "sim" || got.Runtime.Image != "registry.example/sim:gpu" {
		t.Errorf("by id: %+v %+v", got.Application, got.Runtime)
	}
	// Its id field takes name:version, and the name of an application of
	// one version, as every field that takes an application's id does.
	for _, ref := range []string{"sim:2", "sim"} {
		id = e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", obj{"queue_id": "Default", "worker_instances": 1,
			"application": obj{"id": ref}}).obj(t).str("id")
		if got := e.storedJob(id); got.Application.ID != app.str("id") || got.Runtime.Image != "registry.example/sim:gpu" {
			t.Errorf("by %q: %+v %+v", ref, got.Application, got.Runtime)
		}
	}
	e.create("/applications", obj{"name": "sim", "version": "3", "image": "registry.example/sim:3"})
	r = e.do(http.MethodPost, v1+"/jobs", obj{"queue_id": "Default", "worker_instances": 1, "application": obj{"id": "sim"}})
	if r.Status != http.StatusUnprocessableEntity || !strings.Contains(string(r.Body), `"field":"application.id"`) {
		t.Errorf("by a name of two versions: %s, want 422 naming application.id", r)
	}
}

// A queue whose limit is 0 admits nothing: a job submitted to it is
// refused saying so, not that it asks for more than 0 workers.
func TestSubmitToAClosedQueue(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", obj{"name": "Closed", "maximum_allowed_worker_instances": 0})
	e.create("/queues", obj{"name": "Ten", "maximum_allowed_worker_instances": 10})
	for queue, want := range map[string]string{
		"Closed": "queue Closed admits no job while its limit (maximum_allowed_worker_instances) is 0; submit once it is raised",
		"Ten":    "queue Ten allows at most 10 worker instances, the job asks for 11",
	} {
		r := e.do(http.MethodPost, v1+"/jobs", jobBody(queue, 11))
		if r.Status != http.StatusUnprocessableEntity {
			t.Fatalf("%s: %s, want 422", queue, r)
		}
		assertProblem(t, r, "worker_instances")
		if !strings.Contains(string(r.Body), `"message":"`+want+`"`) {
			t.Errorf("%s: %s, want the message %q", queue, r.Body, want)
		}
	}
	if n := e.count("jobs"); n != 0 {
		t.Errorf("%d jobs written", n)
	}
}

func TestSubmitJobRefusals(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", obj{"name": "Default", "maximum_allowed_worker_instances": 10})
	e.create("/applications", obj{"name": "noimage", "version": "1"})
	for name, tc := range map[string]struct {
		body  obj
		field string
	}{
		"over the queue's limit": {jobBody("Default", 11), "worker_instances"},
		"zero workers":           {jobBody("Default", 0), "worker_instances"},
		"unknown queue":          {jobBody("nope", 1), "queue_id"},
		"unknown application id": {jobBody("Default", 1).with("application", obj{"id": "app-X"}), "application.id"},
		"unknown name+version":   {jobBody("Default", 1).with("application", obj{"name": "x", "version": "9"}), "application.name"},
		"no image anywhere":      {jobBody("Default", 1).with("application", obj{"name": "noimage", "version": "1"}), "application.image"},
		"nothing to run":         {jobBody("Default", 1).with("application", obj{}), "application"},
		"bad env name":           {jobBody("Default", 1).with("environment_variables", obj{"1X": "y"}), "environment_variables.1X"},
		"unknown field":          {jobBody("Default", 1).with("gpus", 1), "gpus"},
		"max_run_seconds zero":   {jobBody("Default", 1).with("max_run_seconds", 0), "max_run_seconds"},
		"max_run_seconds float":  {jobBody("Default", 1).with("max_run_seconds", 1.5), "max_run_seconds"},
		"max_run_seconds string": {jobBody("Default", 1).with("max_run_seconds", "60"), "max_run_seconds"},
		"max_run_seconds huge":   {jobBody("Default", 1).with("max_run_seconds", 1e12), "max_run_seconds"},
		"max_retries negative":   {jobBody("Default", 1).with("max_retries", -1), "max_retries"},
		"max_retries too many":   {jobBody("Default", 1).with("max_retries", 101), "max_retries"},
		"max_retries float":      {jobBody("Default", 1).with("max_retries", 1.5), "max_retries"},
		"retry_on unknown kind":  {jobBody("Default", 1).with("retry_on", []string{"sometimes"}), "retry_on[0]"},
		"retry_on not a list":    {jobBody("Default", 1).with("retry_on", "failed"), "retry_on"},
		"retry_on repeated":      {jobBody("Default", 1).with("retry_on", []string{"failed", "failed"}), "retry_on[1]"},
		"retry_on operator":      {jobBody("Default", 1).with("retry_on", obj{"$ne": nil}), "retry_on"},
	} {
		t.Run(name, func(t *testing.T) {
			r := e.do(http.MethodPost, v1+"/jobs", tc.body)
			if r.Status != http.StatusUnprocessableEntity {
				t.Fatalf("= %s, want 422", r)
			}
			found := false
			for _, f := range r.obj(t)["errors"].([]any) {
				if f.(map[string]any)["field"] == tc.field {
					found = true
				}
			}
			if !found {
				t.Errorf("422 does not name %s: %s", tc.field, r.Body)
			}
		})
	}
	if n := e.count("jobs"); n != 0 {
		t.Errorf("%d jobs stored by refused submissions", n)
	}
}

// A submission with several wrong references is told every one of them at
// once (an unknown queue, application and dependency), not one per try; the
// same for a job array's template.
func TestSubmitJobNamesEveryWrongReference(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", obj{"name": "Default", "maximum_allowed_worker_instances": 4})
	for _, tc := range []struct {
		path string
		body obj
		want []string
	}{
		{"/jobs", jobBody("nope", 1).with("application", obj{"name": "x", "version": "9"}).
			with("depends_on", []obj{{"job_id": "job-none", "condition": "succeeded"}}),
			[]string{"queue_id", "application.name", "depends_on[0].job_id"}},
		{"/jobs", jobBody("Default", 5).with("application", obj{"id": "app-X"}),
			[]string{"worker_instances", "application.id"}},
		{"/job-arrays", obj{"count": 2, "job": jobBody("nope", 1).with("application", obj{"id": "app-X"})},
			[]string{"job.queue_id", "job.application.id"}},
		{"/job-arrays", obj{"count": 2, "job": jobBody("Default", 1).with("application", obj{"id": "app-X"})},
			[]string{"job.application.id"}},
	} {
		r := e.do(http.MethodPost, v1+tc.path, tc.body)
		if r.Status != http.StatusUnprocessableEntity {
			t.Fatalf("POST %s = %s, want 422", tc.path, r)
		}
		var got []string
		for _, f := range r.obj(t)["errors"].([]any) {
			got = append(got, f.(map[string]any)["field"].(string))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("POST %s names %v, want %v: %s", tc.path, got, tc.want, r.Body)
		}
	}
	if n := e.count("jobs"); n != 0 {
		t.Errorf("%d jobs stored by refused submissions", n)
	}
}

func TestSubmitJobIdempotency(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", obj{"name": "Default"})
	first := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Default", 1), "Idempotency-Key", "k1")
	again := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Default", 1), "Idempotency-Key", "k1")
	if string(first.Body) != string(again.Body) {
		t.Errorf("replay differs:\n%s\n%s", first.Body, again.Body)
	}
	e.must(http.StatusUnprocessableEntity, http.MethodPost, v1+"/jobs", jobBody("Default", 2), "Idempotency-Key", "k1")
	if n := e.count("jobs"); n != 1 {
		t.Errorf("%d jobs stored, want 1", n)
	}
}

func TestListJobs(t *testing.T) {
	e := startEnv(t)
	a := e.create("/queues", obj{"name": "a"})
	e.create("/queues", obj{"name": "b"})
	var ids []string
	for i := range 5 {
		q := "a"
		if i%2 == 1 {
			q = "b"
		}
		ids = append(ids, e.must(http.StatusCreated, http.MethodPost, v1+"/jobs",
			jobBody(q, 1).with("labels", obj{"i": string(rune('0' + i))})).obj(t).str("id"))
	}
	list := func(path string) (got []string, next string) {
		t.Helper()
		o := e.must(http.StatusOK, http.MethodGet, v1+path, nil).obj(t)
		for _, it := range o["items"].([]any) {
			got = append(got, it.(map[string]any)["id"].(string))
		}
		next, _ = o["next_cursor"].(string)
		return got, next
	}
	for path, want := range map[string][]string{
		"/jobs":                              ids,
		"/jobs?queue_id=a":                   {ids[0], ids[2], ids[4]},
		"/jobs?queue_id=" + a.str("id"):      {ids[0], ids[2], ids[4]},
		"/queues/b/jobs":                     {ids[1], ids[3]},
		"/jobs?label=i=3":                    {ids[3]},
		"/jobs?status=submitted&queue_id=b":  {ids[1], ids[3]},
		"/jobs?status=admitted":              nil,
		"/queues/a/jobs?label=i=2&label=i=2": {ids[2]},
	} {
		if got, _ := list(path); !cmp.Equal(want, got) {
			t.Errorf("GET %s: %v, want %v", path, got, want)
		}
	}
	page, next := list("/jobs?limit=2")
	rest, last := list("/jobs?limit=10&cursor=" + next)
	if !cmp.Equal(append(page, rest...), ids) || last != "" {
		t.Errorf("pages %v %v (next %q)", page, rest, last)
	}
	e.must(http.StatusNotFound, http.MethodGet, v1+"/queues/nope/jobs", nil)
	e.must(http.StatusUnprocessableEntity, http.MethodGet, v1+"/jobs?label=novalue", nil)
	e.must(http.StatusUnprocessableEntity, http.MethodGet, v1+"/jobs?status=lost", nil)
	e.must(http.StatusNotFound, http.MethodGet, v1+"/jobs/job-nope", nil)
}

// TestDeletedQueueFiltersItsJobsAndEvents checks that the jobs and events
// of a queue deleted after its jobs ended are still found by its id: the
// list filter once resolved the id as a queue, found none and answered an
// empty list, and the event stream answered 422.
func TestDeletedQueueFiltersItsJobsAndEvents(t *testing.T) {
	e := startEnv(t)
	qid := e.create("/queues", queueBody("gone")).str("id")
	id := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("gone", 1)).obj(t).str("id")
	if _, err := e.db.Collection("jobs").UpdateOne(context.Background(), bson.D{{Key: "_id", Value: id}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: events.JobSucceeded}}}}); err != nil {
		t.Fatal(err)
	}
	e.must(http.StatusNoContent, http.MethodDelete, v1+"/queues/gone", nil)

	for path, want := range map[string]int{"/jobs?queue_id=" + qid: 1, "/jobs?queue_id=gone": 0} {
		items := e.must(http.StatusOK, http.MethodGet, v1+path, nil).obj(t)["items"].([]any)
		if len(items) != want || want == 1 && items[0].(map[string]any)["id"] != id {
			t.Errorf("GET %s: %v, want %d item(s)", path, items, want)
		}
	}

	// The stream, replayed from the start, still has the job's events.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sc := e.stream(ctx, "/events?queue_id="+qid, "0")
	for sc.Scan() && sc.Text() != "event: "+events.TypeJobSubmitted {
	}
	if ctx.Err() != nil || sc.Err() != nil {
		t.Errorf("the deleted queue's stream had no %s event: %v", events.TypeJobSubmitted, sc.Err())
	}
	// A name no queue has is refused there: the stream's subjects hold ids.
	assertProblem(t, e.must(http.StatusUnprocessableEntity, http.MethodGet, v1+"/events?queue_id=gone", nil), "queue_id")
}

// TestNotFoundNamesWhat checks that a 404's detail names what was not found
// in the words of every other 404 (`queue "x" not found`), not the store's
// own wording: a job's once read `job job-nope: jobdoc: job not found not found`.
func TestNotFoundNamesWhat(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", obj{"name": "Default"})
	id := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Default", 2)).obj(t).str("id")
	for _, c := range []struct{ method, path, detail string }{
		{http.MethodGet, "/jobs/job-nope", `job "job-nope" not found`},
		{http.MethodDelete, "/jobs/job-nope", `job "job-nope" not found`},
		{http.MethodPost, "/jobs/job-nope/cancel", `job "job-nope" not found`},
		{http.MethodGet, "/jobs/job-nope/instances/worker/0/logs", `job "job-nope" not found`},
		{http.MethodGet, "/jobs/" + id + "/instances/worker/2/logs", `worker 2 of job "` + id + `" not found: the job has 2 workers, indexes 0 to 1`},
		{http.MethodGet, "/jobs/" + id + "/instances/controller/1/logs", `controller 1 of job "` + id + `" not found: a job has one controller, index 0`},
		{http.MethodGet, "/jobs/" + id + "/artifacts/scenarios/s1/a.xosc", `scenario artifact "a.xosc" of job "` + id + `" not found`},
		{http.MethodGet, "/queues/nope", `queue "nope" not found`},
	} {
		p := e.must(http.StatusNotFound, c.method, v1+c.path, nil).obj(t)
		if p["detail"] != c.detail {
			t.Errorf("%s %s: detail %q, want %q", c.method, c.path, p["detail"], c.detail)
		}
	}
	// A submission naming an application that is not registered is a 422 on
	// the field; its message names the version apart, as the 409 of a
	// duplicate does ("an application named sim with version 1.0").
	body := jobBody("Default", 1)
	body["application"] = obj{"name": "nope", "version": "1"}
	p := e.must(http.StatusUnprocessableEntity, http.MethodPost, v1+"/jobs", body).obj(t)
	if want := `validation failed: application.name: no application "nope" version "1"`; p["detail"] != want {
		t.Errorf("unknown application: detail %q, want %q", p["detail"], want)
	}
	// With auth off no issuer is named (RFC 9728 metadata), and the 404 says why.
	r := e.must(http.StatusNotFound, http.MethodGet, "/.well-known/oauth-protected-resource", nil)
	if d := r.obj(t).str("detail"); d != "auth is off: this server takes requests without a token" || r.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("protected resource metadata with auth off: %s", r)
	}
}

func TestJobRequests(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", obj{"name": "Default"})
	id := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Default", 1)).obj(t).str("id")
	path := v1 + "/jobs/" + id

	j := e.must(http.StatusAccepted, http.MethodPost, path+"/cancel", nil).obj(t)
	if j["cancel_requested"] != true || j.str("status") != "submitted" {
		t.Errorf("cancel: %v", j)
	}
	e.must(http.StatusAccepted, http.MethodPost, path+"/cancel", nil) // again: nothing new
	// No post controller yet: nothing to stop, and the answer says so.
	if p := e.must(http.StatusConflict, http.MethodDelete, path+"/post-controller", nil).obj(t); !strings.Contains(p.str("detail"), "no post controller to stop") {
		t.Errorf("stopping a post controller never started: %v", p)
	}
	j = e.must(http.StatusAccepted, http.MethodPost, path+"/post-controller", nil).obj(t)
	if pc := j["post_controller"].(map[string]any); pc["status"] != "pending" {
		t.Errorf("post controller: %v", pc)
	}
	j = e.must(http.StatusAccepted, http.MethodDelete, path+"/post-controller", nil).obj(t)
	// A request: the launcher stops it and records it stopped.
	if pc := j["post_controller"].(map[string]any); pc["stop_requested"] != true || pc["status"] != "pending" {
		t.Errorf("post controller stop requested: %v", pc)
	}
	e.must(http.StatusAccepted, http.MethodDelete, path+"/post-controller", nil) // again: nothing new
	j = e.must(http.StatusAccepted, http.MethodPost, path+"/cleanup", nil).obj(t)
	if j["cleanup_requested"] != true {
		t.Errorf("cleanup: %v", j)
	}
	e.must(http.StatusConflict, http.MethodPost, path+"/post-controller", nil)
	var types []string
	for _, ev := range e.events(events.FilterSubject(events.KindJob, "", id)) {
		types = append(types, ev.Type)
	}
	want := []string{events.TypeJobSubmitted, events.TypeJobCancelRequested, events.TypeJobUpdated, events.TypeJobUpdated, events.TypeJobUpdated}
	if diff := cmp.Diff(want, types); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}

	// A final job cannot be cancelled.
	if _, err := e.db.Collection("jobs").UpdateOne(context.Background(), bson.D{{Key: "_id", Value: id}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: events.JobCancelled}}}}); err != nil {
		t.Fatal(err)
	}
	want409 := `job "` + id + `" has ended (cancelled): only a job that has not ended can be cancelled`
	if d := e.must(http.StatusConflict, http.MethodPost, path+"/cancel", nil).obj(t).str("detail"); d != want409 {
		t.Errorf("cancel of a final job: %q, want %q", d, want409)
	}

	e.must(http.StatusNoContent, http.MethodDelete, path, nil)
	e.must(http.StatusNotFound, http.MethodGet, path, nil)
	e.must(http.StatusNotFound, http.MethodDelete, path, nil)
	evs := e.events(events.FilterSubject(events.KindJob, "", id))
	if last := evs[len(evs)-1]; last.Type != events.TypeJobDeleted {
		t.Errorf("last event %s", last.Type)
	}
}

// TestQueueUsage, on MongoDB's reads and by index as the all-in-one reads
// the embedded store (the counts and workers from the index's rows).
func TestQueueUsage(t *testing.T) {
	t.Run("store", func(t *testing.T) { testQueueUsage(t, startEnv(t)) })
	t.Run("index", func(t *testing.T) { testQueueUsage(t, envOf(t, apitest.StartIndexed(t, apitest.TestLogger(t)))) })
}

func testQueueUsage(t *testing.T, e *env) {
	q := e.create("/queues", obj{"name": "Default", "maximum_allowed_worker_instances": 10})
	other := e.create("/queues", obj{"name": "other"})
	ctx := context.Background()
	jobs := e.db.Collection("jobs")
	for i, st := range []struct {
		status  string
		workers int
		cancel  bool
	}{{"admitted", 4, false}, {"running", 3, false}, {"pending", 5, false}, {"submitted", 2, false}, {"pending", 9, true}, {"succeeded", 1, false}} {
		if _, err := jobs.InsertOne(ctx, bson.D{{Key: "_id", Value: "job-" + string(rune('a'+i))}, {Key: "queue_id", Value: q.str("id")},
			{Key: "status", Value: st.status}, {Key: "worker_instances", Value: st.workers}, {Key: "cancel_requested", Value: st.cancel}}); err != nil {
			t.Fatal(err)
		}
	}
	ctl := e.must(http.StatusOK, http.MethodGet, v1+"/queues/simulation-controller-queue", nil).obj(t)
	// The ledger as the scheduler writes it (package ledger).
	held := ledger.Encode(map[string][]ledger.Claim{
		"job-a": {{Queue: q.str("id"), Count: 4}, {Queue: ctl.str("id"), Count: 1}},
		"job-b": {{Queue: q.str("id"), Count: 3}, {Queue: ctl.str("id"), Count: 1}},
	})
	if _, err := e.db.Collection(ledger.Collection).InsertOne(ctx, ledger.Doc{ID: ledger.ID, Epoch: 1, Version: 3, Held: held}); err != nil {
		t.Fatal(err)
	}
	got := e.must(http.StatusOK, http.MethodGet, v1+"/queues/Default", nil).obj(t)["usage"]
	want := map[string]any{"allocated_worker_instances": 7.0, "running_jobs": 2.0, "pending_jobs": 2.0, "pending_worker_instances": 7.0}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("usage (-want +got):\n%s", diff)
	}
	got = e.must(http.StatusOK, http.MethodGet, v1+"/queues/simulation-controller-queue", nil).obj(t)["usage"]
	if u := got.(map[string]any); u["allocated_worker_instances"] != 2.0 {
		t.Errorf("controller queue usage %v", u)
	}
	got = e.must(http.StatusOK, http.MethodGet, v1+"/queues/"+other.str("id"), nil).obj(t)["usage"]
	if u := got.(map[string]any); u["allocated_worker_instances"] != 0.0 || u["pending_jobs"] != 0.0 {
		t.Errorf("other queue usage %v", u)
	}
}

// A job's time limit and retries are stored as submitted and shown with
// attempt 1; absent, max_retries is 0 and attempt still 1.
func TestSubmitJobLimitAndRetries(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", obj{"name": "Default", "maximum_allowed_worker_instances": 10})
	j := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Default", 1).
		with("max_run_seconds", 60).with("max_retries", 2).with("retry_on", []string{"lost"})).obj(t)
	got := e.must(http.StatusOK, http.MethodGet, v1+"/jobs/"+j.str("id"), nil).obj(t)
	for _, m := range []obj{j, got} {
		if m["max_run_seconds"] != 60.0 || m["max_retries"] != 2.0 || m["attempt"] != 1.0 || len(m["retry_on"].([]any)) != 1 || m["retry_on"].([]any)[0] != "lost" {
			t.Errorf("job %v", m)
		}
	}
	s := e.storedJob(j.str("id"))
	if s.MaxRunSeconds == nil || *s.MaxRunSeconds != 60 || s.MaxRetries != 2 || s.Attempt != 1 {
		t.Errorf("stored %+v", s)
	}
	plain := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Default", 1)).obj(t)
	if _, set := plain["max_retries"]; set || plain["attempt"] != 1.0 {
		t.Errorf("job without retries: %v", plain)
	}
}
