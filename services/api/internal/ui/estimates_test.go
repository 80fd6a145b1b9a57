package ui_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/api/internal/ui"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// pendingShown is one row of a queue page's pending table.
type pendingShown struct{ id, position, estimate string }

var pendingRowRe = regexp.MustCompile(`(?s)<tr data-key="([^"]+)".*?<td class="num position">([^<]*)</td>.*?<td class="estimate">(.*?)</td>`)

// pendingRows returns the pending table's rows of a queue page, in order,
// with the estimate cell's text.
func pendingRows(page string) []pendingShown {
	_, table, _ := strings.Cut(page, `id="pending"`)
	table, _, _ = strings.Cut(table, "</table>")
	var out []pendingShown
	for _, m := range pendingRowRe.FindAllStringSubmatch(table, -1) {
		text := strings.Join(strings.Fields(regexp.MustCompile(`<[^>]*>`).ReplaceAllString(m[3], "")), " ")
		out = append(out, pendingShown{m[1], m[2], text})
	}
	return out
}

// submitPending submits a job of 4 workers to queue Default with priority
// and returns its id.
func (e *env) submitPending(name string, priority int) string {
	e.t.Helper()
	j := e.must(http.MethodPost, "/api/resources/v1/jobs", map[string]any{
		"name": name, "queue_id": "Default", "worker_instances": 4, "priority": priority,
		"application": map[string]any{"name": "sim", "version": "1", "image": "registry.example/sim:1"},
	}, http.StatusCreated)
	return j["id"].(string)
}

// writeEstimates writes the snapshot of queue qid as the scheduler does
// (services/scheduler/pending.go, writeEstimates).
func (e *env) writeEstimates(qid string, jobs ...events.JobEstimate) {
	e.t.Helper()
	doc := events.QueueEstimates{QueueID: qid, Epoch: 1, ComputedAt: time.Now().UTC(), Jobs: jobs}
	_, err := e.db.Collection(events.EstimatesCollection).ReplaceOne(context.Background(), bson.D{{Key: "_id", Value: qid}}, doc, options.Replace().SetUpsert(true))
	if err != nil {
		e.t.Fatal(err)
	}
}

// The queue page shows each pending job's queue_position, estimated start
// and basis from the scheduler's snapshot, as the API does, in the
// scheduler's order; a job not in the snapshot yet is placed and counted as
// the API counts it, with an unknown estimate. A refresh of the page (as the
// script fetches it on a job event) reads the snapshot again. The job page
// shows the same for a pending job.
func TestQueuePageShowsPositionsAndEstimatesOfTheScheduler(t *testing.T) {
	e := startEnv(t)
	q := e.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "Default", "maximum_allowed_worker_instances": 10}, http.StatusCreated)
	qid := q["id"].(string)
	submit := e.submitPending
	a, b, urgent := submit("a", 0), submit("b", 0), submit("urgent", 10)
	t1 := time.Now().UTC().Add(90 * time.Second).Truncate(time.Second)
	t2 := t1.Add(10 * time.Minute)
	// The scheduler's order: priority, then submission. A job submitted
	// after the snapshot was written is not in it.
	e.writeEstimates(qid,
		events.JobEstimate{JobID: urgent, Position: 1, StartAt: &t1, Basis: events.BasisMaxRunSeconds},
		events.JobEstimate{JobID: a, Position: 2, StartAt: &t2, Basis: events.BasisMedianRunTime},
		events.JobEstimate{JobID: b, Position: 3, Basis: events.BasisUnknown},
	)
	late := submit("late", 0)
	ts := func(t time.Time) string { return t.Format("2006-01-02 15:04:05Z") }
	want := []pendingShown{
		{urgent, "1", ts(t1) + " (max_run_seconds)"},
		{a, "2", ts(t2) + " (median_run_time)"},
		{b, "3", "unknown"},
		{late, "4", "unknown"},
	}

	// The API gives the same positions (GET /jobs/{id}).
	for i, w := range want {
		_, raw, _ := e.do(http.MethodGet, "/api/resources/v1/jobs/"+w.id, nil)
		var api events.Job
		if err := json.Unmarshal([]byte(raw), &api); err != nil {
			t.Fatal(err)
		}
		if api.QueuePosition == nil || *api.QueuePosition != i+1 {
			t.Fatalf("the API gives job %s queue_position %v, want %d", w.id, api.QueuePosition, i+1)
		}
	}

	// Through the job index and through the routes (before the index is
	// loaded): the same rows.
	storeOnly := httptest.NewServer(ui.New(ui.Options{API: e.svc.Handler(), DB: e.db}))
	t.Cleanup(storeOnly.Close)
	e.page("/ui/jobs") // starts the index
	for deadline := time.Now().Add(20 * time.Second); e.source(e.base, "/ui/queues/Default") != "index"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the job index was not loaded within 20 s")
		}
	}
	for base, source := range map[string]string{storeOnly.URL: "store", e.base: "index"} {
		if got := e.source(base, "/ui/queues/Default"); got != source {
			t.Errorf("queue page read from the %s, want the %s", got, source)
		}
		rows := pendingRows(e.pageAt(base, "/ui/queues/Default"))
		if len(rows) != len(want) {
			t.Fatalf("queue page (%s) lists %d pending jobs %v, want %v", source, len(rows), rows, want)
		}
		for i := range want {
			if rows[i] != want[i] {
				t.Errorf("queue page (%s) row %d = %+v, want %+v", source, i+1, rows[i], want[i])
			}
		}
	}

	// The scheduler rewrites the snapshot: the page's refresh (the fragment
	// the script fetches on a job event) shows the new one.
	t3 := t2.Add(5 * time.Minute)
	e.writeEstimates(qid,
		events.JobEstimate{JobID: urgent, Position: 1, StartAt: &t1, Basis: events.BasisMaxRunSeconds},
		events.JobEstimate{JobID: a, Position: 2, StartAt: &t2, Basis: events.BasisMedianRunTime},
		events.JobEstimate{JobID: b, Position: 3, StartAt: &t3, Basis: events.BasisDefaultMaxRunSeconds},
		events.JobEstimate{JobID: late, Position: 4, StartAt: &t3, Basis: events.BasisDefaultMaxRunSeconds},
	)
	st, frag, _ := e.do(http.MethodGet, "/ui/queues/Default", nil, "X-RM-Fragment", "1")
	if st != http.StatusOK {
		t.Fatalf("fragment = %d: %s", st, frag)
	}
	rows := pendingRows(frag)
	if len(rows) != 4 || rows[2].estimate != ts(t3)+" (default_max_run_seconds)" || rows[3] != (pendingShown{late, "4", ts(t3) + " (default_max_run_seconds)"}) {
		t.Errorf("after the snapshot changed the refreshed page shows %+v", rows)
	}

	// The job page of a pending job: its position and estimate.
	job := e.page("/ui/jobs/" + urgent)
	wantIn(t, "job page of a pending job", job, `Position <strong class="position">1</strong> in queue Default`, ts(t1), "(max_run_seconds)")
}

// A job submitted ahead of the jobs of a snapshot (a higher priority) after
// the scheduler wrote it: the snapshot's positions are behind, and the queue
// page counts them anew in the scheduler's order, as the pending list does,
// keeping the snapshot's estimates. Before, the page took them from the
// snapshot, so the new job and the first of the snapshot were both at 1.
func TestQueuePageCountsPositionsAsTheQueueIsNow(t *testing.T) {
	e := startEnv(t)
	q := e.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "Default", "maximum_allowed_worker_instances": 10}, http.StatusCreated)
	qid := q["id"].(string)
	submit := e.submitPending
	a, b := submit("a", 0), submit("b", 0)
	t1 := time.Now().UTC().Add(90 * time.Second).Truncate(time.Second)
	e.writeEstimates(qid,
		events.JobEstimate{JobID: a, Position: 1, StartAt: &t1, Basis: events.BasisMaxRunSeconds},
		events.JobEstimate{JobID: b, Position: 2, Basis: events.BasisUnknown},
	)
	first := submit("first", 10)
	ts := func(t time.Time) string { return t.Format("2006-01-02 15:04:05Z") }
	want := []pendingShown{
		{first, "1", "unknown"},
		{a, "2", ts(t1) + " (max_run_seconds)"},
		{b, "3", "unknown"},
	}
	_, raw, _ := e.do(http.MethodGet, "/api/resources/v1/queues/Default/pending", nil)
	var pending struct {
		Items []struct {
			ID            string `json:"id"`
			QueuePosition int    `json:"queue_position"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(raw), &pending); err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		if i >= len(pending.Items) || pending.Items[i].ID != w.id || pending.Items[i].QueuePosition != i+1 {
			t.Errorf("the pending list %+v, want job %s at %d", pending.Items, w.id, i+1)
		}
	}
	if rows := pendingRows(e.page("/ui/queues/Default")); !slices.Equal(rows, want) {
		t.Errorf("queue page rows %+v, want %+v", rows, want)
	}
}
