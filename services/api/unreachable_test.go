package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
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
