package httpapi

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
)

// A page of the jobs of a status that has not ended reads the jobs the page
// takes, not every job of that status: each page read all of them, so
// paging through 20,000 pending jobs cost seconds a page and `avxrm jobs
// ls` gave up. The pages still hold every job once, in _id order.
func TestActiveJobsPageReadsOnlyItsJobs(t *testing.T) {
	e := newIndexedEnv(t)
	const n, limit = 120, 10
	e.submitJobs(n, 1)
	// Running, as the launcher writes it: no start estimates are read for them.
	if _, err := e.db.Collection("jobs").UpdateMany(context.Background(), bson.D{{Key: "queue_name", Value: "Q"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: "running"}}}}); err != nil {
		t.Fatal(err)
	}
	seen, cursor := map[string]bool{}, ""
	last := ""
	for page := 0; ; page++ {
		var out struct {
			Items      []struct{ ID string }
			NextCursor string `json:"next_cursor"`
		}
		before := e.srv.active.DocsRead()
		e.json(http.StatusOK, http.MethodGet, fmt.Sprintf("/jobs?status=running&limit=%d&cursor=%s", limit, cursor), nil, &out)
		if read := e.srv.active.DocsRead() - before; read > 2*(limit+1) {
			t.Fatalf("page %d of %d running jobs read %d jobs, want at most %d", page, n, read, 2*(limit+1))
		}
		for _, it := range out.Items {
			if seen[it.ID] || it.ID <= last {
				t.Fatalf("page %d: %s again or out of order", page, it.ID)
			}
			seen[it.ID], last = true, it.ID
		}
		if cursor = out.NextCursor; cursor == "" {
			break
		}
	}
	if len(seen) != n {
		t.Errorf("the pages held %d jobs, want %d", len(seen), n)
	}
}

// A page of a status that has ended, and that few jobs have, reads about
// its own jobs, not every job after its cursor: the jobs are read by the
// index of the ended jobs' status and _id. In _id order among all jobs, a
// page of the failed jobs read the history until it was full (31 s for a
// page of 200 behind 20,000 other jobs). The pages still hold every such
// job once, in _id order.
func TestEndedJobsPageReadsOnlyItsJobs(t *testing.T) {
	e := newIndexedEnv(t)
	const n, every, limit = 200, 20, 3
	e.submitJobs(n, 1)
	jobs := e.db.Collection("jobs")
	cur, err := jobs.Find(context.Background(), bson.D{{Key: "queue_name", Value: "Q"}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for cur.Next(context.Background()) {
		ids = append(ids, cur.Current.Lookup("_id").StringValue())
	}
	slices.Sort(ids)
	// As the launcher writes them: most succeeded, every 20th failed.
	var failed []string
	for i, id := range ids {
		status := "succeeded"
		if i%every == every-1 {
			status = "failed"
			failed = append(failed, id)
		}
		if _, err := jobs.UpdateOne(context.Background(), bson.D{{Key: "_id", Value: id}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: status}}}}); err != nil {
			t.Fatal(err)
		}
	}
	got := e.jobPages("status=failed", limit, 2*(limit+1))
	if !slices.Equal(got, failed) {
		t.Errorf("the pages held %v, want %v", got, failed)
	}
}

// A page of the jobs with a label, an owner or a queue that few jobs have
// reads about its own jobs, not every job after its cursor: the ended ones
// are read by an index of the field, the status and _id, the active ones by
// theirs. In _id order among all jobs, a page of a campaign's label read
// the history until it was full. The pages still hold every such job once,
// in _id order, with a status of their own too; and a list by a label key
// past the store's limit of such indexes is read in _id order, and right.
func TestLabelledJobsPageReadsOnlyItsJobs(t *testing.T) {
	e := newIndexedEnv(t)
	const n, every, limit = 200, 20, 3
	for _, q := range []string{"Q", "R"} {
		e.json(http.StatusCreated, http.MethodPost, "/queues", map[string]any{"name": q}, nil)
	}
	e.json(http.StatusCreated, http.MethodPost, "/applications", map[string]any{"name": "sim", "version": "1", "image": "registry.example/sim:1"}, nil)
	var few, fewFailed []string // labelled, owned by alice, on queue R
	for i := range n {
		labels, queue := map[string]string{"campaign": "c1"}, "Q"
		if i%every == every-1 {
			labels["example.com/team"], queue = "adas", "R"
		} else if i%every == 0 {
			labels["example.com/team"] = "perception"
		}
		var out struct{ ID string }
		e.json(http.StatusCreated, http.MethodPost, "/jobs", map[string]any{"queue_id": queue, "application": map[string]any{"id": "sim:1"},
			"worker_instances": 1, "labels": labels}, &out)
		owner := bson.D{{Key: "subject", Value: fmt.Sprint("sub-", i)}, {Key: "username", Value: fmt.Sprint("user", i)}}
		status := "succeeded" // the others: waiting jobs would have their start estimates read
		if queue == "R" {
			few = append(few, out.ID)
			owner = bson.D{{Key: "subject", Value: "sub-alice"}, {Key: "username", Value: "alice"}}
			status = "running" // as the launcher writes them: some have not ended
			if i%(2*every) == every-1 {
				status = "failed"
				fewFailed = append(fewFailed, out.ID)
			}
		}
		if _, err := e.db.Collection("jobs").UpdateOne(context.Background(), bson.D{{Key: "_id", Value: out.ID}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: status}, {Key: "owner", Value: owner}}}}); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(few)
	slices.Sort(fewFailed)
	for _, by := range []string{"label=example.com/team=adas", "owner=alice", "owner=sub-alice", "queue_id=R"} {
		if got := e.jobPages(by, limit, 2*(limit+1)); !slices.Equal(got, few) {
			t.Errorf("the pages of %s held %v, want %v", by, got, few)
		}
		if got := e.jobPages(by+"&status=failed", limit, 4*(limit+1)); !slices.Equal(got, fewFailed) {
			t.Errorf("the pages of %s's failed jobs held %v, want %v", by, got, fewFailed)
		}
	}
	labelled := few
	// Fill the store's indexes on demand, then list by one more key.
	for i := range ferretembed.MaxOnDemandIndexes {
		e.json(http.StatusOK, http.MethodGet, fmt.Sprintf("/jobs?label=k%d=v", i), nil, nil)
	}
	if got := e.jobPages("label=example.com/team=adas", limit, 0); !slices.Equal(got, labelled) {
		t.Errorf("past the limit, the pages of a key with its index held %v, want %v", got, labelled)
	}
	if all := e.jobPages("label=campaign=c1", limit, 0); len(all) != n {
		t.Errorf("past the limit, the pages of a key without an index held %d jobs, want %d", len(all), n)
	}
}

// jobPages pages through GET /jobs?query, limit jobs a page, and returns
// the jobs' ids in the order the pages held them; a page that reads more
// than maxRead jobs (0: any) fails the test.
func (e *artifactEnv) jobPages(query string, limit int, maxRead int64) []string {
	e.t.Helper()
	var got []string
	cursor := ""
	for page := 0; ; page++ {
		var out struct {
			Items      []struct{ ID string }
			NextCursor string `json:"next_cursor"`
		}
		before := e.srv.active.DocsRead()
		e.json(http.StatusOK, http.MethodGet, fmt.Sprintf("/jobs?%s&limit=%d&cursor=%s", query, limit, cursor), nil, &out)
		if read := e.srv.active.DocsRead() - before; maxRead > 0 && read > maxRead {
			e.t.Fatalf("%s: page %d read %d jobs, want at most %d", query, page, read, maxRead)
		}
		for _, it := range out.Items {
			got = append(got, it.ID)
		}
		if cursor = out.NextCursor; cursor == "" {
			return got
		}
	}
}

// submitJobs submits n jobs of workers workers to a new queue Q.
func (e *artifactEnv) submitJobs(n, workers int) {
	e.t.Helper()
	e.json(http.StatusCreated, http.MethodPost, "/queues", map[string]any{"name": "Q"}, nil)
	e.json(http.StatusCreated, http.MethodPost, "/applications", map[string]any{"name": "sim", "version": "1", "image": "registry.example/sim:1"}, nil)
	for range n {
		e.json(http.StatusCreated, http.MethodPost, "/jobs", map[string]any{"queue_id": "Q", "application": map[string]any{"id": "sim:1"}, "worker_instances": workers}, nil)
	}
}

// A queue's usage on the embedded store reads no job: its counts, the
// workers its waiting jobs ask for and which of them are being cancelled
// come from the index's rows. It read every waiting job: GET /queues/{id}
// took over a second with 10,000 of them.
func TestQueueUsageReadsNoJob(t *testing.T) {
	e := newIndexedEnv(t)
	e.submitJobs(100, 3)
	var id struct{ ID string }
	e.json(http.StatusCreated, http.MethodPost, "/jobs", map[string]any{"queue_id": "Q", "application": map[string]any{"id": "sim:1"}, "worker_instances": 5}, &id)
	e.json(http.StatusAccepted, http.MethodPost, "/jobs/"+id.ID+"/cancel", nil, nil)
	before := e.srv.active.DocsRead()
	var q struct {
		Usage struct {
			PendingJobs            int `json:"pending_jobs"`
			PendingWorkerInstances int `json:"pending_worker_instances"`
		}
	}
	e.json(http.StatusOK, http.MethodGet, "/queues/Q", nil, &q)
	if read := e.srv.active.DocsRead() - before; read != 0 {
		t.Errorf("GET /queues/Q read %d jobs, want none", read)
	}
	if q.Usage.PendingJobs != 100 || q.Usage.PendingWorkerInstances != 300 {
		t.Errorf("usage %+v, want 100 pending jobs of 300 workers (the one being cancelled not counted)", q.Usage)
	}
}

// The pending list's order (priority, then submission) comes from the
// index of the active jobs, and a page reads only its own jobs: it read
// every waiting job of the queue to order them (0.9-1.9 s for 10,000).
// Without the index (MongoDB) the same order comes from the store. A job
// the scheduler has not placed gets its position from the same order.
func TestPendingListReadsOnlyItsPage(t *testing.T) {
	for name, e := range map[string]*artifactEnv{"by index": newIndexedEnv(t), "without": newEnvOn(t, nil, false)} {
		t.Run(name, func(t *testing.T) {
			e.json(http.StatusCreated, http.MethodPost, "/queues", map[string]any{"name": "Q"}, nil)
			e.json(http.StatusCreated, http.MethodPost, "/applications", map[string]any{"name": "sim", "version": "1", "image": "registry.example/sim:1"}, nil)
			type job struct {
				ID          string
				Priority    int
				SubmittedAt time.Time `json:"submitted_at"`
			}
			var want []job
			for i := range 40 {
				var j job
				e.json(http.StatusCreated, http.MethodPost, "/jobs", map[string]any{"queue_id": "Q", "application": map[string]any{"id": "sim:1"},
					"worker_instances": 1, "priority": (i*7)%5 - 1}, &j)
				want = append(want, j)
			}
			slices.SortStableFunc(want, func(a, b job) int { // submitted in order: stable by submission
				return cmp.Compare(b.Priority, a.Priority)
			})
			var got []string
			cursor, pos := "", 0
			for {
				var out struct {
					Items []struct {
						ID            string
						QueuePosition int `json:"queue_position"`
					}
					NextCursor string `json:"next_cursor"`
				}
				before := e.srv.active.DocsRead()
				e.json(http.StatusOK, http.MethodGet, "/queues/Q/pending?limit=7&cursor="+cursor, nil, &out)
				if read := e.srv.active.DocsRead() - before; e.srv.opts.Lookup != nil && read > 8 {
					t.Fatalf("a page of 7 of 40 read %d jobs, want at most 8", read)
				}
				for _, it := range out.Items {
					if pos++; it.QueuePosition != pos {
						t.Fatalf("%s at queue_position %d, want %d", it.ID, it.QueuePosition, pos)
					}
					got = append(got, it.ID)
				}
				if cursor = out.NextCursor; cursor == "" {
					break
				}
			}
			var ids []string
			for _, j := range want {
				ids = append(ids, j.ID)
			}
			if !slices.Equal(got, ids) {
				t.Errorf("the pages held\n%v\nwant\n%v", got, ids)
			}
			// Not placed by a scheduler (none runs here), each job's
			// position is counted from the same order.
			for i, id := range ids {
				var j struct {
					QueuePosition *int `json:"queue_position"`
				}
				e.json(http.StatusOK, http.MethodGet, "/jobs/"+id, nil, &j)
				if j.QueuePosition == nil || *j.QueuePosition != i+1 {
					t.Errorf("GET /jobs/%s: queue_position %v, want %d", id, j.QueuePosition, i+1)
				}
			}
		})
	}
}
