package up_test

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// pendingEntry is an item of GET /queues/{queue_id}/pending.
type pendingEntry struct {
	ID               string     `json:"id"`
	QueuePosition    int        `json:"queue_position"`
	EstimatedStartAt *time.Time `json:"estimated_start_at"`
	EstimateBasis    string     `json:"estimate_basis"`
	Status           string     `json:"status"`
	Reason           string     `json:"reason"`
	Message          string     `json:"message"`
	WorkerInstances  int        `json:"worker_instances"`
}

type pendingPage struct {
	Items      []pendingEntry `json:"items"`
	NextCursor string         `json:"next_cursor"`
}

// submitTimed submits a job of workers on queue that runs for secs on the
// simulated driver and says so in max_run_seconds.
func (c *client) submitTimed(queue string, workers, secs, priority int) events.Job {
	c.t.Helper()
	var j events.Job
	c.must(http.MethodPost, jobsPath, map[string]any{
		"queue_id": queue, "worker_instances": workers, "priority": priority, "max_run_seconds": secs,
		"environment_variables": map[string]string{"RM_SIM_RUN_SECONDS": strconv.Itoa(secs)},
		"application":           map[string]any{"name": "sim", "version": "1", "image": "registry.example/sim:1"},
	}, http.StatusCreated, &j)
	return j
}

// The seed's example: a queue limited to 10, job 1 with 10 workers running
// its max_run_seconds, job 2 with 8 waiting. Job 2 is first in line and its
// estimated start is within 10% (of its wait) of when it was admitted.
func TestStartEstimateOfTheWorkedExample(t *testing.T) {
	sys := startSystemIn(t, t.TempDir())
	c := newClient(t, sys.HTTPAddr)
	c.simulated()
	c.createQueue("Default", 10)
	// A queue in use: a job before gives the lags (admission to start, end
	// to release) that the estimate adds to run times.
	c.waitJobFor(c.submitTimed("Default", 1, 1, 0).ID, "finished", 30*time.Second, isFinal)

	j1 := c.submitTimed("Default", 10, 8, 0)
	c.waitJobFor(j1.ID, "running", 30*time.Second, func(j events.Job) bool { return j.Status == events.JobRunning })
	j2 := c.submitTimed("Default", 8, 1, 0)
	j := c.waitJobFor(j2.ID, "estimated", 10*time.Second, func(j events.Job) bool {
		return j.QueuePosition != nil && j.EstimatedStartAt.Known
	})
	if *j.QueuePosition != 1 || j.EstimateBasis != events.BasisMaxRunSeconds {
		t.Errorf("job 2: queue_position %d, estimate_basis %q; want 1, max_run_seconds", *j.QueuePosition, j.EstimateBasis)
	}
	est := j.EstimatedStartAt.At
	j = c.waitJobFor(j2.ID, "admitted", 30*time.Second, isAdmitted)
	wait := j.AdmittedAt.Sub(j.SubmittedAt)
	off := j.AdmittedAt.Sub(est)
	t.Logf("job 2 submitted %s, estimated to start %s, admitted %s: off by %s over a wait of %s",
		j.SubmittedAt.Format(time.StampMilli), est.Format(time.StampMilli), j.AdmittedAt.Format(time.StampMilli), off, wait)
	if f := c.job(j1.ID); f.StartedAt != nil && f.FinishedAt != nil {
		t.Logf("job 1 admitted %s, started %s, finished %s (ran %s for max_run_seconds 8)", f.AdmittedAt.Format(time.StampMilli),
			f.StartedAt.Format(time.StampMilli), f.FinishedAt.Format(time.StampMilli), f.FinishedAt.Sub(*f.StartedAt))
	}
	if off.Abs() > wait/10 {
		t.Errorf("estimate off by %s, more than 10%% of the %s job 2 waited", off, wait)
	}
	if j.QueuePosition != nil || j.EstimatedStartAt.Present || j.EstimateBasis != "" {
		t.Errorf("admitted job 2 still carries an estimate: %v %+v %q", j.QueuePosition, j.EstimatedStartAt, j.EstimateBasis)
	}
}

// GET /queues/{queue_id}/pending lists the pending jobs in the scheduler's
// order with their position, estimate, basis, reason and workers, pages
// through them, and answers 404 for an unknown queue.
func TestQueuePendingList(t *testing.T) {
	sys := startSystemIn(t, t.TempDir())
	c := newClient(t, sys.HTTPAddr)
	c.simulated()
	q := c.createQueue("Busy", 10)

	j1 := c.submitTimed("Busy", 10, 100, 0) // runs an hour; says 100 s
	r1 := c.waitJobFor(j1.ID, "running", 30*time.Second, func(j events.Job) bool { return j.StartedAt != nil })
	a := c.submitTimed("Busy", 4, 10, 0)
	b := c.submitTimed("Busy", 2, 10, 5)
	cj := c.submitTimed("Busy", 3, 10, 0)
	big := c.submit("Busy", 10) // no max_run_seconds, no history: ends unknown
	want := []string{b.ID, a.ID, cj.ID, big.ID}
	// At once, whether or not the scheduler has placed it yet: fourth.
	if j := c.job(big.ID); j.QueuePosition == nil || *j.QueuePosition != 4 {
		t.Errorf("just submitted: queue_position %v, want 4", j.QueuePosition)
	}

	var page pendingPage
	deadline := time.Now().Add(15 * time.Second)
	for {
		c.must(http.MethodGet, "/api/resources/v1/queues/Busy/pending", nil, http.StatusOK, &page)
		if len(page.Items) == 4 && !slices.ContainsFunc(page.Items, func(e pendingEntry) bool { return e.EstimatedStartAt == nil || e.Reason == "" }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pending list never complete: %+v", page)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var ids []string
	for i, e := range page.Items {
		ids = append(ids, e.ID)
		if e.QueuePosition != i+1 || e.Status != events.JobPending || e.Reason != "InsufficientWorkerCapacity" || e.Message == "" {
			t.Errorf("item %d: %+v; want position %d, pending, InsufficientWorkerCapacity with a message", i, e, i+1)
		}
	}
	if !slices.Equal(ids, want) {
		t.Errorf("order %v, want %v (priority first, then submission)", ids, want)
	}
	// b, a and c (2+4+3 workers) all fit when j1's 100 s are over; the
	// 10-worker job then waits for them, 10 s more.
	end := r1.StartedAt.Add(100 * time.Second)
	for i, e := range page.Items[:3] {
		if e.EstimatedStartAt == nil || e.EstimatedStartAt.Sub(end).Abs() > 5*time.Second || e.EstimateBasis != events.BasisMaxRunSeconds {
			t.Errorf("item %d: estimate %v basis %q; want about %s, max_run_seconds", i, e.EstimatedStartAt, e.EstimateBasis, end)
		}
	}
	if e := page.Items[3]; e.EstimatedStartAt == nil || e.EstimatedStartAt.Sub(end.Add(10*time.Second)).Abs() > 5*time.Second || e.WorkerInstances != 10 {
		t.Errorf("the 10-worker job: %+v; want to start about %s", e, end.Add(10*time.Second))
	}
	if got := c.job(a.ID); got.QueuePosition == nil || *got.QueuePosition != 2 || !got.EstimatedStartAt.Known {
		t.Errorf("GET /jobs/{id} of the second in line: position %v, estimate %+v", got.QueuePosition, got.EstimatedStartAt)
	}

	var list struct {
		Items []events.Job `json:"items"`
	}
	c.must(http.MethodGet, jobsPath+"?queue_id=Busy&status=pending", nil, http.StatusOK, &list)
	for _, j := range list.Items {
		if j.QueuePosition == nil || !j.EstimatedStartAt.Present || j.EstimateBasis == "" {
			t.Errorf("GET /jobs lists %s without its estimate: %v %+v %q", j.ID, j.QueuePosition, j.EstimatedStartAt, j.EstimateBasis)
		}
	}
	if len(list.Items) != 4 {
		t.Errorf("GET /jobs?status=pending: %d jobs, want 4", len(list.Items))
	}

	// Pages of 2: the second starts at position 3.
	var p1, p2 pendingPage
	c.must(http.MethodGet, "/api/resources/v1/queues/"+q.ID+"/pending?limit=2", nil, http.StatusOK, &p1)
	if len(p1.Items) != 2 || p1.NextCursor != p1.Items[1].ID {
		t.Fatalf("first page of 2: %+v", p1)
	}
	c.must(http.MethodGet, "/api/resources/v1/queues/"+q.ID+"/pending?limit=2&cursor="+p1.NextCursor, nil, http.StatusOK, &p2)
	if len(p2.Items) != 2 || p2.Items[0].QueuePosition != 3 || p2.Items[0].ID != cj.ID || p2.NextCursor != "" {
		t.Errorf("second page of 2: %+v", p2)
	}

	// Unknown run time: a job that waits for one whose end nobody knows.
	c.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "Unknown", "maximum_allowed_worker_instances": 2}, http.StatusCreated, nil)
	u1 := c.submit("Unknown", 2)
	c.waitJobFor(u1.ID, "admitted", 30*time.Second, isAdmitted)
	u2 := c.submit("Unknown", 1)
	// Wait for the scheduler's snapshot to have it: before, the API gives
	// the same answer for a job not yet placed.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		n, err := sys.DB.Collection(events.EstimatesCollection).CountDocuments(context.Background(), bson.D{{Key: "jobs.job_id", Value: u2.ID}})
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the scheduler's snapshot never had the job")
		}
	}
	j := c.job(u2.ID)
	if j.QueuePosition == nil || *j.QueuePosition != 1 {
		t.Errorf("queue_position %v, want 1", j.QueuePosition)
	}
	if j.EstimatedStartAt.Known || !j.EstimatedStartAt.Present || j.EstimateBasis != events.BasisUnknown {
		t.Errorf("a job behind one of unknown run time: estimate %+v basis %q; want null, unknown", j.EstimatedStartAt, j.EstimateBasis)
	}
	_, raw := c.do(http.MethodGet, jobsPath+"/"+u2.ID, nil)
	if !strings.Contains(string(raw), `"estimated_start_at":null`) {
		t.Errorf("estimated_start_at is not null in %s", raw)
	}

	if status, raw := c.do(http.MethodGet, "/api/resources/v1/queues/no-such-queue/pending", nil); status != http.StatusNotFound {
		t.Errorf("unknown queue: %d %s, want 404", status, raw)
	}
}
