package api_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/services/api/internal/apitest"
)

// TestStoreUnreachableIs503 cuts the API off from its store and checks that
// a request gets a 503 problem with Retry-After, not a 500, and that the
// API serves again once the store can be reached.
func TestStoreUnreachableIs503(t *testing.T) {
	outage := &mongotest.Outage{}
	a := apitest.StartWithOutage(t, apitest.TestLogger(t), outage)
	e := &env{t: t, base: a.URL}
	e.create("/queues", obj{"name": "before"})

	outage.Down()
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{http.MethodPost, "/queues", obj{"name": "during"}},
		{http.MethodGet, "/queues/before", nil},
		{http.MethodGet, "/jobs", nil},
		{http.MethodGet, "/events?job_id=job-01ARZ3NDEKTSV4RRFFQ69G5FAV", nil}, // not a 422: whether the job is there is not known
	} {
		// A deadline, as a stream that was opened would not end.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r := resp(apitest.DoContext(ctx, t, c.method, e.base+v1+c.path, c.body))
		cancel()
		if r.Status != http.StatusServiceUnavailable {
			t.Errorf("%s %s with the store cut off = %s, want 503", c.method, c.path, r)
			continue
		}
		if got := r.Header.Get("Retry-After"); got != "2" {
			t.Errorf("%s %s: Retry-After = %q, want \"2\"", c.method, c.path, got)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s %s: Content-Type = %q, want application/problem+json", c.method, c.path, ct)
		}
		if p := r.obj(t); p["status"] != float64(503) || !strings.Contains(p["detail"].(string), "store cannot be reached") {
			t.Errorf("%s %s: problem = %v", c.method, c.path, p)
		}
	}

	outage.Up()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := e.do(http.MethodPost, v1+"/queues", obj{"name": "after"})
		if r.Status == http.StatusCreated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("POST /queues once the store is back = %s", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.must(http.StatusNotFound, http.MethodGet, v1+"/queues/during", nil)
}

// TestServerErrorIsLoggedWithTheRequest checks that a 5xx is logged at level
// error with what an operator needs to find the request: the method, the
// route template, the path, the status and the X-Request-Id the answer
// carries; and that at level info nothing else of a request is.
func TestServerErrorIsLoggedWithTheRequest(t *testing.T) {
	var log eventstest.SyncBuffer
	outage := &mongotest.Outage{}
	a := apitest.StartWithOutage(t, slog.New(slog.NewJSONHandler(&log, nil)), outage)
	e := &env{t: t, base: a.URL}
	e.create("/queues", obj{"name": "before"})

	outage.Down()
	r := resp(apitest.Do(t, http.MethodGet, e.base+v1+"/queues/before", nil, "X-Request-Id", "walkthrough-1"))
	if r.Status != http.StatusServiceUnavailable || r.Header.Get("X-Request-Id") != "walkthrough-1" {
		t.Fatalf("GET /queues/before with the store cut off = %s, X-Request-Id %q; want 503, walkthrough-1", r, r.Header.Get("X-Request-Id"))
	}
	outage.Up()

	var failed []map[string]any
	for _, l := range log.JSONLines(t) {
		switch l["msg"] {
		case "request failed":
			failed = append(failed, l)
		case "request":
			t.Errorf("at level info a request is logged: %v", l)
		}
	}
	if len(failed) != 1 {
		t.Fatalf("one 5xx logged %d lines \"request failed\":\n%s", len(failed), log.String())
	}
	want := map[string]any{"level": "ERROR", "method": "GET", "route": v1 + "/queues/:queue_id", "path": v1 + "/queues/before",
		"status": float64(http.StatusServiceUnavailable), "request_id": "walkthrough-1"}
	for k, v := range want {
		if failed[0][k] != v {
			t.Errorf("logged %s = %v, want %v (line %v)", k, failed[0][k], v, failed[0])
		}
	}
	if err, _ := failed[0]["err"].(string); err == "" || strings.Contains(err, "retry the request shortly") {
		t.Errorf("logged err = %q, want the store's error, not the problem's detail", err)
	}
}
