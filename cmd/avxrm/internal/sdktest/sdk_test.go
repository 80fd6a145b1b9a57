// Package sdktest tests the Go SDK (sdk/go/avxrm) against the all-in-one,
// run from the built avxrm binary on free ports. It lives here because the
// SDK module must not depend on the server.
package sdktest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/allinone"
	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
	"github.com/oapi-codegen/nullable"
	"golang.org/x/sync/errgroup"
)

var binary string

func TestMain(m *testing.M) { allinone.RunTests(m, &binary) }

// start runs the all-in-one from the built binary on dataDir, its API on
// httpAddr, and waits until it is ready.
func start(t *testing.T, dataDir, httpAddr string) *allinone.Server {
	t.Helper()
	return allinone.Start(t, binary, dataDir, httpAddr)
}

func newClient(t *testing.T, addr string, opts ...avxrm.Option) *avxrm.Client {
	t.Helper()
	c, err := avxrm.New("http://"+addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ptr[T any](v T) *T { return &v }

// sleeperApp registers an application that runs as local processes: it
// prints a line, fails with exit code 2 when it is worker $FAIL_INDEX, else
// sleeps $SLEEP seconds (1 by default).
func sleeperApp(t *testing.T, c *avxrm.Client) string {
	t.Helper()
	a, err := c.CreateApplication(context.Background(), api.ApplicationBody{Name: "sleeper", Version: "1", Image: ptr("local"),
		Command: nullable.NewNullableWithValue([]string{"/bin/sh", "-c", `echo "hello from $RM_ROLE $RM_INSTANCE_INDEX"
if [ "$RM_ROLE" = worker ] && [ "$RM_INSTANCE_INDEX" = "${FAIL_INDEX:-none}" ]; then exit 2; fi
exec sleep "${SLEEP:-1}"`})})
	if err != nil {
		t.Fatal(err)
	}
	return *a.Id
}

// Paging: 250 jobs come back once each over three pages of 100.
func TestJobsIteratorPagesOver250Jobs(t *testing.T) {
	sys := start(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	c := newClient(t, sys.Addr, avxrm.WithPageSize(100))
	app := sleeperApp(t, c)
	holdQueue(t, c, "hold", app)
	want := map[string]bool{}
	for j, err := range c.Jobs(ctx, avxrm.JobFilter{QueueID: "hold"}) {
		if err != nil {
			t.Fatal(err)
		}
		want[*j.Id] = true // the blocker
	}
	began := time.Now()
	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(4)
	for i := range 249 {
		g.Go(func() error {
			j, err := c.SubmitJob(ctx, api.JobBody{QueueId: "hold", WorkerInstances: 1, Name: ptr(fmt.Sprintf("j-%03d", i)),
				Application: api.JobApplicationRef{Id: &app}})
			if err != nil {
				return fmt.Errorf("submit %d: %w", i, err)
			}
			mu.Lock()
			want[*j.Id] = true
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("249 submissions took %s", time.Since(began))
	var pages atomic.Int32
	counting := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Path == avxrm.BasePath+"/jobs" {
			pages.Add(1)
		}
		return http.DefaultTransport.RoundTrip(r)
	})}
	c = newClient(t, sys.Addr, avxrm.WithPageSize(100), avxrm.WithHTTPClient(counting))
	seen := map[string]bool{}
	for j, err := range c.Jobs(ctx, avxrm.JobFilter{QueueID: "hold"}) {
		if err != nil {
			t.Fatal(err)
		}
		if seen[*j.Id] {
			t.Errorf("job %s yielded twice", *j.Id)
		}
		seen[*j.Id] = true
		if !want[*j.Id] {
			t.Errorf("job %s was not submitted here", *j.Id)
		}
	}
	if len(seen) != 250 || pages.Load() != 3 {
		t.Errorf("%d jobs over %d pages, want 250 over 3", len(seen), pages.Load())
	}
	// Stopping early stops fetching.
	pages.Store(0)
	n := 0
	for _, err := range c.Jobs(ctx, avxrm.JobFilter{QueueID: "hold"}) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 5 {
			break
		}
	}
	if pages.Load() != 1 {
		t.Errorf("breaking after 5 jobs fetched %d pages, want 1", pages.Load())
	}
	// A bad filter ends the iteration with the problem.
	for _, err := range c.Jobs(ctx, avxrm.JobFilter{QueueID: "no-such-queue", Status: "nonsense"}) {
		var pe *avxrm.Error
		if !errors.As(err, &pe) || !errors.Is(err, avxrm.ErrBadRequest) {
			t.Errorf("bad status filter: %v, want a 4xx problem", err)
		}
	}
}

// holdQueue creates a queue of one worker instance taken by a long job, so
// every other job submitted to it waits; at the end of the test it closes
// the queue and cancels
// the long job, so no process outlives the test.
func holdQueue(t *testing.T, c *avxrm.Client, name, app string) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.CreateQueue(ctx, api.QueueBody{Name: name, MaximumAllowedWorkerInstances: nullable.NewNullableWithValue(int64(1))}); err != nil {
		t.Fatal(err)
	}
	blocker, err := c.SubmitJob(ctx, api.JobBody{QueueId: name, WorkerInstances: 1, Name: ptr("blocker"),
		Application: api.JobApplicationRef{Id: &app}, EnvironmentVariables: &map[string]string{"SLEEP": "600"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Limit 0 keeps the waiting jobs waiting; then the long job ends.
		if _, err := c.Do(ctx, http.MethodPatch, "/queues/"+name, map[string]any{"maximum_allowed_worker_instances": 0}, nil); err != nil {
			t.Error(err)
		}
		if _, err := c.CancelJob(ctx, *blocker.Id); err != nil && !errors.Is(err, avxrm.ErrConflict) {
			t.Error(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := c.WaitJob(wctx, *blocker.Id); err != nil {
			t.Error(err)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		j, err := c.GetJob(ctx, *blocker.Id)
		if err != nil {
			t.Fatal(err)
		}
		if *j.Status == "running" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("blocker: %s", *j.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// WaitJob follows the event stream across a restart of the server: the job
// waits on a queue that admits nothing, the server stops and starts again
// on the same data, the queue is opened, and WaitJob returns the
// succeeded job after reconnecting with Last-Event-ID.
func TestWaitJobAcrossServerRestart(t *testing.T) {
	dataDir := t.TempDir()
	sys := start(t, dataDir, "127.0.0.1:0")
	addr := sys.Addr
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var streaming sync.Once
	connected := make(chan struct{})
	var disconnects atomic.Int32
	var streamOpen atomic.Bool
	var waited atomic.Value // the path of the job WaitJob waits for
	waited.Store("")
	watching := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err == nil && r.URL.Path == avxrm.BasePath+"/events" && resp.StatusCode == http.StatusOK {
			streamOpen.Store(true)
		}
		// Once the stream is open WaitJob reads the job again; then it
		// reads the stream.
		if err == nil && streamOpen.Load() && r.URL.Path == waited.Load() && resp.StatusCode == http.StatusOK {
			streaming.Do(func() { close(connected) })
		}
		return resp, err
	})}
	c := newClient(t, addr, avxrm.WithHTTPClient(watching), avxrm.WithRetries(50),
		avxrm.WithOnDisconnect(func(error, int) { disconnects.Add(1) }))
	app := sleeperApp(t, c)
	if _, err := c.CreateQueue(ctx, api.QueueBody{Name: "gate", MaximumAllowedWorkerInstances: nullable.NewNullableWithValue(int64(2))}); err != nil {
		t.Fatal(err)
	}
	// The queue is full until the test raises its limit.
	blocker, err := c.SubmitJob(ctx, api.JobBody{QueueId: "gate", WorkerInstances: 2, Application: api.JobApplicationRef{Id: &app},
		EnvironmentVariables: &map[string]string{"SLEEP": "600"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if _, err := c.CancelJob(context.Background(), *blocker.Id); err != nil {
			t.Error(err)
		}
		if _, err := c.WaitJob(ctx, *blocker.Id); err != nil {
			t.Error(err)
		}
	}()
	j, err := c.SubmitJob(ctx, api.JobBody{QueueId: "gate", WorkerInstances: 2, Application: api.JobApplicationRef{Id: &app}})
	if err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		job *api.Job
		err error
	}
	done := make(chan outcome, 1)
	waited.Store(avxrm.BasePath + "/jobs/" + *j.Id)
	go func() {
		got, err := c.WaitJob(ctx, *j.Id)
		done <- outcome{got, err}
	}()
	select {
	case <-connected:
	case <-time.After(30 * time.Second):
		t.Fatal("WaitJob never opened the event stream")
	}

	sys.Stop()
	select {
	case o := <-done:
		t.Fatalf("WaitJob returned while the server was down: %+v %v", o.job, o.err)
	case <-time.After(500 * time.Millisecond):
	}
	start(t, dataDir, addr)
	if _, err := c.Do(ctx, http.MethodPatch, "/queues/gate", map[string]any{"maximum_allowed_worker_instances": 4}, nil); err != nil {
		t.Fatal(err)
	}
	var o outcome
	select {
	case o = <-done:
	case <-ctx.Done():
		t.Fatal("WaitJob did not return after the restart")
	}
	if o.err != nil {
		t.Fatalf("WaitJob: %v", o.err)
	}
	if *o.job.Status != "succeeded" || o.job.FinishedAt == nil {
		t.Errorf("WaitJob returned %s, finished %v", *o.job.Status, o.job.FinishedAt)
	}
	if disconnects.Load() == 0 {
		t.Error("the event stream never reconnected")
	}
}

// Problems come back typed, with the server's detail and fields.
func TestProblemErrorsAreTyped(t *testing.T) {
	sys := start(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	c := newClient(t, sys.Addr)

	_, err := c.GetJob(ctx, "job-does-not-exist")
	var pe *avxrm.Error
	if !errors.Is(err, avxrm.ErrNotFound) || !errors.As(err, &pe) || pe.Problem.Status != 404 || pe.StatusCode != 404 {
		t.Errorf("missing job: %#v", err)
	}

	_, err = c.SubmitJob(ctx, api.JobBody{QueueId: "Default", WorkerInstances: 0, Application: api.JobApplicationRef{Id: ptr("app-x")}})
	if !errors.Is(err, avxrm.ErrBadRequest) || !errors.As(err, &pe) {
		t.Fatalf("zero workers: %v", err)
	}
	named := false
	for _, f := range pe.FieldErrors() {
		named = named || strings.HasSuffix(f.Field, "worker_instances")
	}
	if !named || !strings.Contains(err.Error(), "worker_instances") {
		t.Errorf("zero workers: fields %+v, message %q", pe.FieldErrors(), err)
	}

	if _, err := c.CreateQueue(ctx, api.QueueBody{Name: "twice"}); err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateQueue(ctx, api.QueueBody{Name: "twice"})
	if !errors.Is(err, avxrm.ErrConflict) || errors.Is(err, avxrm.ErrNotFound) {
		t.Errorf("duplicate queue: %v", err)
	}
}

// A submission whose answer is lost is sent again with the same
// Idempotency-Key: the server replays its answer and one job exists.
func TestSubmitRetriesWithTheSameIdempotencyKey(t *testing.T) {
	sys := start(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	var keys []string
	var mu sync.Mutex
	var armed atomic.Bool
	lossy := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if r.Method != http.MethodPost || r.URL.Path != avxrm.BasePath+"/jobs" || !armed.Load() {
			return resp, err
		}
		mu.Lock()
		defer mu.Unlock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		if len(keys) == 1 && err == nil {
			resp.Body.Close() // the server has created the job; its answer is lost
			return nil, &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}
		}
		return resp, err
	})}
	c := newClient(t, sys.Addr, avxrm.WithHTTPClient(lossy))
	app := sleeperApp(t, c)
	holdQueue(t, c, "hold", app)
	armed.Store(true)
	j, err := c.SubmitJob(ctx, api.JobBody{QueueId: "hold", WorkerInstances: 1, Application: api.JobApplicationRef{Id: &app}})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0] == "" || keys[0] != keys[1] {
		t.Errorf("idempotency keys sent: %q, want the same key twice", keys)
	}
	n := 0
	for got, err := range c.Jobs(ctx, avxrm.JobFilter{QueueID: "hold"}) {
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != "blocker" {
			n++
			if *got.Id != *j.Id {
				t.Errorf("job %s besides %s", *got.Id, *j.Id)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d jobs, want 1", n)
	}
}
