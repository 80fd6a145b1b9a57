package api_test

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// The death points of an idempotent POST (docs/faults.md, exactly-once):
// the API dies after storing the resource but before completing the key's
// record, or while its claim is still held. What a killed API leaves behind
// is written into the store directly: the key's record as an unfinished
// claim (its seed kept), with or without the resource.

// dieAfterInsert leaves the record of key on path as an API killed after
// the insert leaves it: not done, no response, claimed until until (zero:
// the claim was released by a failed attempt; past: it expired).
func (e *env) dieAfterInsert(path, key string, until time.Time) {
	e.t.Helper()
	set := bson.D{{Key: "done", Value: false}, {Key: "claimed_until", Value: until}}
	res, err := e.db.Collection("idempotency_keys").UpdateOne(context.Background(),
		bson.D{{Key: "_id", Value: "POST " + v1 + path + " " + key}},
		bson.D{{Key: "$set", Value: set}, {Key: "$unset", Value: bson.D{{Key: "status", Value: ""}, {Key: "header", Value: ""}, {Key: "body", Value: ""}}}})
	if err != nil || res.MatchedCount != 1 {
		e.t.Fatalf("rewrite the key's record: %v (%d matched)", err, res.MatchedCount)
	}
}

// A resource stored, its key's record never completed: the retry after the
// claim expired, after a failed attempt released it, and during the claim
// gets 201 with the same resource, and the collection holds one. Jobs and
// the kinds of the shared create (crud.create).
func TestIdempotentRetryAfterDeathFindsTheStoredResource(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", obj{"name": "Default"})
	app := e.create("/applications", appBody("viewer", "1"))
	for _, c := range []struct {
		path, coll string
		body       obj
	}{
		{"/jobs", "jobs", jobBody("Default", 1)},
		{"/queues", "queues", queueBody("Second")},
		{"/plugins", "plugins", pluginBody("sim2")},
		{"/applications", "applications", appBody("solver", "2")},
		{"/deployments", "deployments", deploymentBody("dep", app.str("id"), "Default")},
	} {
		before := e.count(c.coll)
		first := e.must(http.StatusCreated, http.MethodPost, v1+c.path, c.body, "Idempotency-Key", "k-"+c.coll).obj(t)
		for _, until := range []time.Time{time.Now().Add(-time.Second), {}, time.Now().Add(time.Minute)} {
			e.dieAfterInsert(c.path, "k-"+c.coll, until)
			r := e.must(http.StatusCreated, http.MethodPost, v1+c.path, c.body, "Idempotency-Key", "k-"+c.coll)
			if got := r.obj(t); got.str("id") != first.str("id") || r.Header.Get("Location") != v1+c.path+"/"+first.str("id") {
				t.Errorf("%s, claim until %v: retry answered %s %v, want %s", c.path, until, r.Body, r.Header, first.str("id"))
			}
			if n := e.count(c.coll); n != before+1 {
				t.Errorf("%s, claim until %v: %d stored, want %d", c.path, until, n, before+1)
			}
		}
		// The retry completed the record: the next one is a replay.
		if r := e.must(http.StatusCreated, http.MethodPost, v1+c.path, c.body, "Idempotency-Key", "k-"+c.coll); r.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("%s: the record was not completed: %v", c.path, r.Header)
		}
		// Another body with the key is still refused.
		e.dieAfterInsert(c.path, "k-"+c.coll, time.Time{})
		e.must(http.StatusUnprocessableEntity, http.MethodPost, v1+c.path, obj{"name": "other"}, "Idempotency-Key", "k-"+c.coll)
	}
}

// The API died after claiming the key, before storing anything: while the
// claim holds, a retry is told to wait (409) and creates nothing; after it
// expired the retry creates the job, with the id the claim's seed gives.
func TestIdempotentRetryAfterDeathBeforeInsert(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", obj{"name": "Default"})
	first := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Default", 1), "Idempotency-Key", "k").obj(t)
	// Take the job away: the record is now what the killed attempt left
	// before its insert.
	if _, err := e.db.Collection("jobs").DeleteOne(context.Background(), bson.D{{Key: "_id", Value: first.str("id")}}); err != nil {
		t.Fatal(err)
	}
	e.dieAfterInsert("/jobs", "k", time.Now().Add(time.Minute))
	e.must(http.StatusConflict, http.MethodPost, v1+"/jobs", jobBody("Default", 1), "Idempotency-Key", "k")
	if n := e.count("jobs"); n != 0 {
		t.Fatalf("%d jobs stored during the claim, want 0", n)
	}
	e.dieAfterInsert("/jobs", "k", time.Now().Add(-time.Second))
	if got := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Default", 1), "Idempotency-Key", "k").obj(t); got.str("id") != first.str("id") {
		t.Errorf("retry created %s, want the seed's id %s", got.str("id"), first.str("id"))
	}
	if n := e.count("jobs"); n != 1 {
		t.Errorf("%d jobs stored, want 1", n)
	}
}

// The API died partway through an array's bulk insert: the array and some
// of its jobs are stored. The retry stores the rest, each job once, with
// the ids the first attempt gave them, and answers with the array.
func TestIdempotentRetryCompletesPartialJobArray(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", obj{"name": "Default"})
	body := obj{"job": jobBody("Default", 1), "count": 6}
	arr := e.must(http.StatusCreated, http.MethodPost, v1+"/job-arrays", body, "Idempotency-Key", "a").obj(t)
	jobIDs := func() map[string]string { // name → id
		t.Helper()
		out := map[string]string{}
		for _, it := range e.must(http.StatusOK, http.MethodGet, v1+"/jobs?array_id="+arr.str("id"), nil).obj(t)["items"].([]any) {
			j := obj(it.(map[string]any))
			if _, dup := out[j.str("name")]; dup {
				t.Errorf("job %s twice", j.str("name"))
			}
			out[j.str("name")] = j.str("id")
		}
		return out
	}
	want := jobIDs()
	ids := slices.Sorted(maps.Values(want))
	// The ids sort by index: the last three are the tail of the bulk insert.
	for i, id := range ids {
		if want[arr.str("name")+"-"+strconv.Itoa(i)] != id {
			t.Fatalf("job ids do not follow the indexes: %v", want)
		}
	}
	if _, err := e.db.Collection("jobs").DeleteMany(context.Background(), bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids[3:]}}}}); err != nil {
		t.Fatal(err)
	}
	e.dieAfterInsert("/job-arrays", "a", time.Now().Add(-time.Second))
	r := e.must(http.StatusCreated, http.MethodPost, v1+"/job-arrays", body, "Idempotency-Key", "a").obj(t)
	if r.str("id") != arr.str("id") || r["count"] != float64(6) {
		t.Errorf("retry answered %v, want array %s", r, arr.str("id"))
	}
	if got := jobIDs(); len(got) != 6 || !maps.Equal(got, want) {
		t.Errorf("jobs after the retry %v, want %v", got, want)
	}
	if n := e.count("jobs"); n != 6 {
		t.Errorf("%d jobs stored, want 6", n)
	}
	if n := e.count("job_arrays"); n != 1 {
		t.Errorf("%d arrays stored, want 1", n)
	}
}

// Retries racing the first attempt (a client that times out fast): however
// they interleave, one job is stored and every 201 names it.
func TestIdempotentConcurrentRetriesCreateOneJob(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", obj{"name": "Default"})
	const n = 8
	answers := make(chan resp, n)
	for range n {
		go func() { answers <- e.do(http.MethodPost, v1+"/jobs", jobBody("Default", 1), "Idempotency-Key", "race") }()
	}
	ids := map[string]bool{}
	for range n {
		r := <-answers
		switch r.Status {
		case http.StatusCreated:
			ids[r.obj(t).str("id")] = true
		case http.StatusConflict: // in progress: the client retries
		default:
			t.Errorf("answer %s", r)
		}
	}
	if len(ids) != 1 {
		t.Errorf("201s named %v, want one job", ids)
	}
	if c := e.count("jobs"); c != 1 {
		t.Errorf("%d jobs stored, want 1", c)
	}
}
