package ui_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/avxrm/rm/services/api/internal/ui"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// A job array's page: its jobs by status as the API counts them, the
// failed indexes linked to their jobs, its jobs in the jobs table (the
// array filter, from the store and from the view's index alike), and each
// job's page linking back to it.
func TestArrayPage(t *testing.T) {
	e := startEnv(t)
	e.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "Default"}, http.StatusCreated)
	a := e.must(http.MethodPost, "/api/resources/v1/job-arrays", map[string]any{"count": 5, "max_parallel": 2,
		"job": map[string]any{"name": "sweep", "queue_id": "Default", "worker_instances": 1,
			"application": map[string]any{"name": "sim", "version": "1", "image": "registry.example/sim:1"}}}, http.StatusCreated)
	id := a["id"].(string)
	other := e.submit("sweep-other", "Default", 1, nil) // matches a name search for the array, not its filter

	// No scheduler runs: the jobs are ended by hand, index 3 failed, 0 succeeded.
	ended := map[int]string{0: "succeeded", 3: "failed"}
	for i, status := range ended {
		if _, err := e.db.Collection("jobs").UpdateOne(context.Background(), bson.D{{Key: "array_id", Value: id}, {Key: "array_index", Value: i}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: status}}}}); err != nil {
			t.Fatal(err)
		}
	}
	// The failed index links to its job's page: a name search for sweep-3
	// would also list sweep-30 to sweep-39 in a larger array.
	p := e.page("/ui/arrays/" + id)
	wantIn(t, "array page", p, "Job array sweep", "5 jobs, at most 2 at once", "2 of 5 ended", `data-status="submitted">3<`,
		`data-status="succeeded">1<`, `data-status="failed">1<`, `href="/ui/jobs/`+arrayJob(t, e, id, 3)+`">3</a>`,
		`href="/ui/jobs?array=`+id+`"`, `data-path="/api/resources/v1/job-arrays/`+id+`/cancel"`)

	storeOnly, indexed := e.bothSources()
	for base, source := range map[string]string{storeOnly: "store", indexed: "index"} {
		jobs := tbody(e.pageAt(base, "/ui/jobs?array="+id))
		for i := range 5 {
			if !strings.Contains(jobs, fmt.Sprintf(">sweep-%d<", i)) {
				t.Errorf("jobs of the array (%s) lack sweep-%d", source, i)
			}
		}
		if strings.Contains(jobs, other) {
			t.Errorf("jobs of the array (%s) list %s, which is not in it", source, other)
		}
	}

	wantIn(t, "job page", e.page("/ui/jobs/"+arrayJob(t, e, id, 2)), `index 2 of <a href="/ui/arrays/`+id+`">its job array</a>`)

	// Every job that is left has ended, one was deleted: the array has
	// ended, as the API's cancel sees it (409), and offers no cancel.
	if _, err := e.db.Collection("jobs").DeleteOne(context.Background(), bson.D{{Key: "array_id", Value: id}, {Key: "array_index", Value: 4}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Collection("jobs").UpdateMany(context.Background(), bson.D{{Key: "array_id", Value: id}, {Key: "status", Value: "submitted"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: "cancelled"}}}}); err != nil {
		t.Fatal(err)
	}
	p = e.page("/ui/arrays/" + id)
	wantIn(t, "ended array page", p, `<span class="badge">ended</span>`, "4 of 5 ended")
	if strings.Contains(p, "/cancel") {
		t.Error("the page of an array whose jobs have all ended offers to cancel it")
	}
	e.must(http.MethodPost, "/api/resources/v1/job-arrays/"+id+"/cancel", nil, http.StatusConflict)
	if st, _, _ := e.do(http.MethodGet, "/ui/arrays/arr-nope", nil, "Accept", "text/html"); st != http.StatusNotFound {
		t.Errorf("an unknown array's page: %d, want 404", st)
	}
}

// arrayJob is the id of the job of array id at index.
func arrayJob(t *testing.T, e *env, id string, index int) string {
	t.Helper()
	var j struct {
		ID string `bson:"_id"`
	}
	if err := e.db.Collection("jobs").FindOne(context.Background(), bson.D{{Key: "array_id", Value: id}, {Key: "array_index", Value: index}}).Decode(&j); err != nil {
		t.Fatal(err)
	}
	return j.ID
}

// The jobs table of one array (the array page's link) does not read the
// array to tell it exists when it lists some of its jobs: reading an array
// counts its jobs (GET /job-arrays/{id}), which took 50 s for an array of
// 20,000 on a busy embedded store, while the rows come from the view's
// index at once. A page that lists none still tells an unknown array
// (400) from an empty page, from the view's index and from the store alike.
func TestJobsOfAnArrayDoNotCountIt(t *testing.T) {
	e := startEnv(t)
	e.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "Default"}, http.StatusCreated)
	a := e.must(http.MethodPost, "/api/resources/v1/job-arrays", map[string]any{"count": 3,
		"job": map[string]any{"name": "sweep", "queue_id": "Default", "worker_instances": 1,
			"application": map[string]any{"name": "sim", "version": "1", "image": "registry.example/sim:1"}}}, http.StatusCreated)
	id := a["id"].(string)

	var arrayReads atomic.Int64
	api := e.svc.Handler()
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/resources/v1/job-arrays/") {
			arrayReads.Add(1)
		}
		api.ServeHTTP(w, r)
	})
	store := httptest.NewServer(ui.New(ui.Options{API: counted, DB: e.db}))
	t.Cleanup(store.Close)
	index := httptest.NewServer(ui.New(ui.Options{API: counted, DB: e.db, JS: e.js}))
	t.Cleanup(index.Close)
	for deadline := time.Now().Add(20 * time.Second); e.source(index.URL, "/ui/jobs") != "index"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the job index was not loaded within 20 s")
		}
	}
	for source, base := range map[string]string{"store": store.URL, "index": index.URL} {
		arrayReads.Store(0)
		jobs := tbody(e.pageAt(base, "/ui/jobs?array="+id))
		if !strings.Contains(jobs, ">sweep-2<") {
			t.Errorf("jobs of the array (%s) lack sweep-2:\n%s", source, jobs)
		}
		if n := arrayReads.Load(); n != 0 {
			t.Errorf("jobs of the array (%s): the array was read %d times, want none while its jobs are listed", source, n)
		}
		if st, raw, _ := e.doAt(base, http.MethodGet, "/ui/jobs?array=arr-nope", nil, "Accept", "text/html"); st != http.StatusBadRequest || !strings.Contains(raw, "no job array") {
			t.Errorf("jobs of an unknown array (%s): %d, want 400 naming it: %s", source, st, raw)
		}
	}
}
