package up_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/up"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/pkg/events/ledger"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// End-to-end tests of jobs and the scheduler on the all-in-one, through the
// REST API. No launcher runs yet: where a job must finish, the test plays the
// launcher's part exactly as the launcher will, with a version-conditioned
// write of the job and its event through the outbox.

const jobsPath = "/api/resources/v1/jobs"

// startScheduling runs the all-in-one without its launcher, on free ports
// with its data in a temp dir: the test reports jobs final itself.
func startScheduling(t testing.TB) *up.System {
	t.Helper()
	return startSchedulingIn(t, t.TempDir())
}

// startSchedulingIn is startScheduling on the data in dataDir, which may
// hold an earlier run's.
func startSchedulingIn(t testing.TB, dataDir string) *up.System {
	t.Helper()
	cfg, err := up.Load([]string{"--data-dir", dataDir, "--http-addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:0",
		"--mongo-addr", "127.0.0.1:0", "--outbox-interval", "200ms", "--log-level", "warn"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DisableLauncher = true
	sys, err := up.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
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

// testLog sends the system's warnings to the test log.
type testLog struct{ t testing.TB }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimSpace(p))
	return len(p), nil
}

type client struct {
	t    testing.TB
	base string
	http *http.Client
}

func newClient(t testing.TB, addr string) *client {
	return &client{t: t, base: "http://" + addr, http: &http.Client{Timeout: 30 * time.Second}}
}

// do sends body (JSON) and returns the status and the response body.
func (c *client) do(method, path string, body any) (int, []byte) {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		r = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.base+path, r)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

func (c *client) must(method, path string, body any, want int, out any) {
	c.t.Helper()
	status, raw := c.do(method, path, body)
	if status != want {
		c.t.Fatalf("%s %s = %d, want %d: %s", method, path, status, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			c.t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
}

func (c *client) createQueue(name string, limit int) events.Queue {
	c.t.Helper()
	var q events.Queue
	c.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": name, "maximum_allowed_worker_instances": limit}, http.StatusCreated, &q)
	return q
}

func (c *client) queue(ref string) events.Queue {
	c.t.Helper()
	var q events.Queue
	c.must(http.MethodGet, "/api/resources/v1/queues/"+ref, nil, http.StatusOK, &q)
	return q
}

func (c *client) submit(queue string, workers int) events.Job {
	c.t.Helper()
	var j events.Job
	c.must(http.MethodPost, jobsPath, map[string]any{
		"name": fmt.Sprintf("w%d", workers), "queue_id": queue, "worker_instances": workers,
		"application": map[string]any{"name": "sim", "version": "1", "image": "registry.example/sim:1"},
	}, http.StatusCreated, &j)
	return j
}

func (c *client) job(id string) events.Job {
	c.t.Helper()
	var j events.Job
	c.must(http.MethodGet, jobsPath+"/"+id, nil, http.StatusOK, &j)
	return j
}

// waitJob polls job id until ok says yes, for up to 20s.
func (c *client) waitJob(id, what string, ok func(events.Job) bool) events.Job {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		j := c.job(id)
		if ok(j) {
			return j
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("job %s (%d workers) never became %s: status %s, conditions %+v", id, j.WorkerInstances, what, j.Status, j.Conditions)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hasStatus(s string) func(events.Job) bool {
	return func(j events.Job) bool { return j.Status == s }
}

// admittedCondition returns the job's Admitted condition.
func admittedCondition(j events.Job) events.Condition {
	for _, c := range j.Conditions {
		if c.Type == "Admitted" {
			return c
		}
	}
	return events.Condition{}
}

// launcher plays the launcher's part: it reports jobs final.
type launcher struct {
	t      testing.TB
	db     *mongo.Database
	ob     *outbox.Outbox
	record *jobdoc.Store // nil: a store per write, reading the job each time
}

func newLauncher(t testing.TB, db *mongo.Database, js jetstream.JetStream) *launcher {
	return &launcher{t: t, db: db, ob: outbox.New(events.NewPublisher(js), nil)}
}

// newCachingLauncher writes as the launcher does, from the job it last read
// or wrote (jobdoc.WithCache): its final write of a job it recorded running
// reads nothing first. Nothing else may write the jobs it starts meanwhile
// (it does not follow the events that would tell it).
func newCachingLauncher(t testing.TB, db *mongo.Database, js jetstream.JetStream) *launcher {
	l := newLauncher(t, db, js)
	l.record = jobdoc.New(db, l.ob, jobdoc.Launcher, "/rm/launcher", jobdoc.WithCache())
	return l
}

func (l *launcher) store() *jobdoc.Store {
	if l.record != nil {
		return l.record
	}
	return jobdoc.New(l.db, l.ob, jobdoc.Launcher, "/rm/launcher")
}

// start moves admitted job id to running, as the launcher does when its
// instances have started.
func (l *launcher) start(id string) {
	l.t.Helper()
	_, err := l.store().Update(context.Background(), id, func(j *events.Job, now time.Time) ([]string, error) {
		if j.Status != events.JobAdmitted {
			return nil, fmt.Errorf("job %s is %s; only an admitted job starts", id, j.Status)
		}
		j.Status, j.StartedAt = events.JobRunning, &now
		return []string{events.TypeJobRunning}, nil
	})
	if err != nil {
		l.t.Fatal(err)
	}
}

// finish moves job id from admitted or running to status (succeeded, failed
// or cancelled), as the launcher does when its instances end.
func (l *launcher) finish(id, status string) {
	l.t.Helper()
	if err := l.tryFinish(context.Background(), id, status); err != nil {
		l.t.Fatal(err)
	}
}

func (l *launcher) tryFinish(ctx context.Context, id, status string) error {
	// Through the job record's update loop, as the launcher writes: it also
	// moves an array's job in the array's counts.
	_, err := l.store().Update(ctx, id, func(j *events.Job, now time.Time) ([]string, error) {
		if j.Status != events.JobAdmitted && j.Status != events.JobRunning {
			return nil, fmt.Errorf("job %s is %s; only an admitted or running job finishes", id, j.Status)
		}
		j.Status, j.FinishedAt = status, &now
		return []string{events.Type(events.KindJob, status)}, nil
	})
	return err
}

// The first worked example of the product documents: queue Default allows 10
// worker instances; job 1 takes all of them, so job 2 (8 workers) is pending
// with the numbers, until job 1 succeeds; then job 2 is admitted.
func TestWorkedExampleLimitTen(t *testing.T) {
	sys := startScheduling(t)
	c := newClient(t, sys.HTTPAddr)
	l := newLauncher(t, sys.DB, sys.JS)
	c.createQueue("Default", 10)

	j1 := c.submit("Default", 10)
	if j1.Status != events.JobSubmitted {
		t.Errorf("submitted job status %q", j1.Status)
	}
	c.waitJob(j1.ID, "admitted", hasStatus(events.JobAdmitted))
	j2 := c.submit("Default", 8)
	got := c.waitJob(j2.ID, "pending", hasStatus(events.JobPending))
	cond := admittedCondition(got)
	want := "queue Default allows 10 worker instances, 10 in use, job needs 8"
	if cond.Status != "False" || cond.Reason != "InsufficientWorkerCapacity" || cond.Message != want || cond.LastTransitionTime.IsZero() {
		t.Errorf("pending condition %+v, want False InsufficientWorkerCapacity %q", cond, want)
	}
	if len(got.Warnings) != 1 || got.Warnings[0] != want {
		t.Errorf("warnings %q, want [%q]", got.Warnings, want)
	}
	u := c.queue("Default").Usage
	if *u != (events.QueueUsage{AllocatedWorkerInstances: 10, RunningJobs: 1, PendingJobs: 1, PendingWorkerInstances: 8}) {
		t.Errorf("usage while job 2 waits: %+v", *u)
	}

	l.finish(j1.ID, events.JobSucceeded)
	got = c.waitJob(j2.ID, "admitted", hasStatus(events.JobAdmitted))
	if cond := admittedCondition(got); cond.Status != "True" || got.AdmittedAt == nil || len(got.Warnings) != 0 {
		t.Errorf("admitted job 2: condition %+v admitted_at %v warnings %q", cond, got.AdmittedAt, got.Warnings)
	}
	u = c.queue("Default").Usage
	if *u != (events.QueueUsage{AllocatedWorkerInstances: 8, RunningJobs: 1}) {
		t.Errorf("usage after job 1 finished: %+v", *u)
	}

	// Exactly one pending event for job 2 (no storm while it waited), one admitted.
	types := map[string]int{}
	for _, e := range eventstest.ReadAll(t, sys.JS, events.FilterSubject(events.KindJob, "", j2.ID)) {
		types[e.Type]++
	}
	if types[events.TypeJobSubmitted] != 1 || types[events.TypeJobPending] != 1 || types[events.TypeJobAdmitted] != 1 {
		t.Errorf("events of job 2: %v", types)
	}
}

// The second worked example: 3 workers free; a job needing 4 waits while a
// later job needing 3 is admitted (backfill).
func TestWorkedExampleBackfill(t *testing.T) {
	sys := startScheduling(t)
	c := newClient(t, sys.HTTPAddr)
	c.createQueue("Default", 10)
	big := c.submit("Default", 7)
	c.waitJob(big.ID, "admitted", hasStatus(events.JobAdmitted))
	four := c.submit("Default", 4)
	got := c.waitJob(four.ID, "pending", hasStatus(events.JobPending))
	if m := admittedCondition(got).Message; m != "queue Default allows 10 worker instances, 7 in use, job needs 4" {
		t.Errorf("message %q", m)
	}
	three := c.submit("Default", 3)
	c.waitJob(three.ID, "admitted", hasStatus(events.JobAdmitted))
	if j := c.job(four.ID); j.Status != events.JobPending {
		t.Errorf("job needing 4: %s", j.Status)
	}
	if u := c.queue("Default").Usage; u.AllocatedWorkerInstances != 10 || u.RunningJobs != 2 || u.PendingJobs != 1 || u.PendingWorkerInstances != 4 {
		t.Errorf("usage %+v", *u)
	}
}

// Cancelling an admitted job frees its capacity for a pending one once the
// launcher confirms; cancelling a pending job is done by the scheduler.
func TestCancelFreesCapacity(t *testing.T) {
	sys := startScheduling(t)
	c := newClient(t, sys.HTTPAddr)
	l := newLauncher(t, sys.DB, sys.JS)
	c.createQueue("small", 5)
	first := c.submit("small", 5)
	c.waitJob(first.ID, "admitted", hasStatus(events.JobAdmitted))
	second := c.submit("small", 5)
	third := c.submit("small", 2)
	c.waitJob(second.ID, "pending", hasStatus(events.JobPending))
	c.waitJob(third.ID, "pending", hasStatus(events.JobPending))

	// A pending job: the scheduler cancels it.
	var j events.Job
	c.must(http.MethodPost, jobsPath+"/"+third.ID+"/cancel", nil, http.StatusAccepted, &j)
	if !j.CancelRequested {
		t.Errorf("cancel response: cancel_requested false")
	}
	c.waitJob(third.ID, "cancelled", hasStatus(events.JobCancelled))
	if status, raw := c.do(http.MethodPost, jobsPath+"/"+third.ID+"/cancel", nil); status != http.StatusConflict {
		t.Errorf("cancel of a cancelled job = %d %s, want 409", status, raw)
	}

	// An admitted job: cancel is requested; it stays admitted, holding its
	// lease, until the launcher says its instances are gone.
	c.must(http.MethodPost, jobsPath+"/"+first.ID+"/cancel", nil, http.StatusAccepted, &j)
	time.Sleep(300 * time.Millisecond)
	if j := c.job(second.ID); j.Status != events.JobPending {
		t.Fatalf("second job %s before the launcher confirmed the cancel", j.Status)
	}
	l.finish(first.ID, events.JobCancelled)
	c.waitJob(second.ID, "admitted", hasStatus(events.JobAdmitted))
	if u := c.queue("small").Usage; u.AllocatedWorkerInstances != 5 || u.RunningJobs != 1 || u.PendingJobs != 0 {
		t.Errorf("usage %+v", *u)
	}

	// Cleanup of the final job, then delete: the record goes.
	c.must(http.MethodPost, jobsPath+"/"+first.ID+"/cleanup", nil, http.StatusAccepted, nil)
	c.waitJob(first.ID, "cleaned", func(j events.Job) bool { return j.CleanedAt != nil })
	c.must(http.MethodDelete, jobsPath+"/"+second.ID, nil, http.StatusNoContent, nil)
	if status, _ := c.do(http.MethodGet, jobsPath+"/"+second.ID, nil); status != http.StatusNotFound {
		t.Errorf("GET deleted job = %d", status)
	}
	// Its lease is released: the whole queue is free again.
	deadline := time.Now().Add(10 * time.Second)
	for c.queue("small").Usage.AllocatedWorkerInstances != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("lease of the deleted job never released: %+v", *c.queue("small").Usage)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// jobsOf lists the jobs of a queue with the given status ("": all).
func (c *client) jobsOf(queue, status string) []events.Job {
	c.t.Helper()
	path := "/api/resources/v1/queues/" + queue + "/jobs?limit=1000"
	if status != "" {
		path += "&status=" + status
	}
	return c.allJobs(path)
}

// allJobs reads every page of a job list from path (which has a query).
func (c *client) allJobs(path string) []events.Job {
	c.t.Helper()
	var out []events.Job
	cursor := ""
	for {
		p := path
		if cursor != "" {
			p += "&cursor=" + cursor
		}
		var page struct {
			Items      []events.Job `json:"items"`
			NextCursor string       `json:"next_cursor"`
		}
		c.must(http.MethodGet, p, nil, http.StatusOK, &page)
		out = append(out, page.Items...)
		if page.NextCursor == "" {
			return out
		}
		cursor = page.NextCursor
	}
}

// readLedger reads the scheduler's lease ledger.
func readLedger(t testing.TB, db *mongo.Database) map[string][]ledger.Claim {
	t.Helper()
	leases, err := ledger.Read(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return leases
}

// consistencyProblems lists what breaks the invariants that must hold
// whenever the scheduler is quiet: the ledger holds exactly the admitted and
// running jobs, each with its workers and one controller; no queue is over
// its limit; usage agrees with the ledger.
func consistencyProblems(c *client, db *mongo.Database, queue events.Queue) []string {
	c.t.Helper()
	var problems []string
	leases := readLedger(c.t, db)
	var allocated int
	for _, cs := range leases {
		for _, cl := range cs {
			if cl.Queue == queue.ID {
				allocated += cl.Count
			}
		}
	}
	var active int
	for _, j := range c.jobsOf(queue.ID, "") {
		held := leases[j.ID]
		switch j.Status {
		case events.JobAdmitted, events.JobRunning:
			active += j.WorkerInstances
			if len(held) != 2 || held[0].Queue != queue.ID || held[0].Count != j.WorkerInstances || held[1].Count != 1 {
				problems = append(problems, fmt.Sprintf("%s job %s (%d workers) holds %+v", j.Status, j.ID, j.WorkerInstances, held))
			}
		default:
			if held != nil {
				problems = append(problems, fmt.Sprintf("%s job %s holds a lease %+v", j.Status, j.ID, held))
			}
		}
	}
	if allocated != active {
		problems = append(problems, fmt.Sprintf("ledger allocates %d on %s, admitted jobs have %d workers", allocated, queue.Name, active))
	}
	if lim := queue.MaximumAllowedWorkerInstances; lim != nil && allocated > *lim {
		problems = append(problems, fmt.Sprintf("queue %s over its limit: %d > %d", queue.Name, allocated, *lim))
	}
	if u := c.queue(queue.ID).Usage; u.AllocatedWorkerInstances != allocated {
		problems = append(problems, fmt.Sprintf("usage says %d allocated, ledger %d", u.AllocatedWorkerInstances, allocated))
	}
	return problems
}

// eventuallyConsistent waits up to 20s for the invariants to hold, which they
// must once admissions and releases in flight have settled.
func eventuallyConsistent(t testing.TB, c *client, db *mongo.Database, queue events.Queue) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		problems := consistencyProblems(c, db, queue)
		if len(problems) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, p := range problems {
				t.Error(p)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// admittedEvents counts the rm.job.admitted events of each job.
func admittedEvents(t testing.TB, js jetstream.JetStream) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, e := range eventstest.ReadAll(t, js, events.FilterSubject(events.KindJob, "", "")) {
		if e.Type == events.TypeJobAdmitted {
			n[e.ResourceID]++
		}
	}
	return n
}

func onlyOnce(t testing.TB, admitted map[string]int) {
	t.Helper()
	for id, n := range admitted {
		if n > 1 {
			t.Errorf("job %s admitted %d times", id, n)
		}
	}
}
