package avxrm_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm"
)

// A 503 (the API cannot reach its store) is tried again after the
// Retry-After it asks for, with the same Idempotency-Key; a DELETE is not,
// and neither is a request once the retries are spent.
func TestServiceUnavailableIsRetriedAfterRetryAfter(t *testing.T) {
	type seen struct {
		method, key string
		at          time.Time
	}
	var mu sync.Mutex
	var reqs []seen
	refusals := 1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reqs = append(reqs, seen{r.Method, r.Header.Get("Idempotency-Key"), time.Now()})
		refuse := len(reqs) <= refusals || r.Method == http.MethodDelete
		mu.Unlock()
		w.Header().Set("Content-Type", "application/problem+json")
		if refuse {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"title":"Service Unavailable","status":503,"detail":"the store cannot be reached at the moment; retry the request shortly"}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id":"q-1","name":"a"}`))
	}))
	defer srv.Close()
	c, err := avxrm.New(srv.URL, avxrm.WithBackoff(avxrm.Backoff{Initial: time.Millisecond, Max: 5 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var out map[string]any
	if _, err := c.Do(ctx, http.MethodPost, "/queues", map[string]any{"name": "a"}, &out); err != nil {
		t.Fatalf("POST after one 503: %v", err)
	}
	if len(reqs) != 2 || reqs[0].key == "" || reqs[0].key != reqs[1].key {
		t.Fatalf("requests %+v, want two POSTs with one Idempotency-Key", reqs)
	}
	if gap := reqs[1].at.Sub(reqs[0].at); gap < 900*time.Millisecond {
		t.Errorf("tried again after %v, before the Retry-After of 1 s", gap)
	}

	reqs = nil
	_, err = c.Do(ctx, http.MethodDelete, "/queues/a", nil, nil)
	var pe *avxrm.Error
	if !errors.As(err, &pe) || pe.StatusCode != http.StatusServiceUnavailable || len(reqs) != 1 {
		t.Errorf("DELETE answered 503: err %v after %d requests, want the 503 after 1", err, len(reqs))
	}

	reqs, refusals = nil, 100
	c, _ = avxrm.New(srv.URL, avxrm.WithRetries(2), avxrm.WithBackoff(avxrm.Backoff{Initial: time.Millisecond, Max: 10 * time.Millisecond}))
	_, err = c.Do(ctx, http.MethodGet, "/queues/a", nil, nil)
	if !errors.As(err, &pe) || pe.StatusCode != http.StatusServiceUnavailable || len(reqs) != 3 {
		t.Errorf("GET always answered 503: err %v after %d requests, want the 503 after 3", err, len(reqs))
	}
	if gap := reqs[2].at.Sub(reqs[1].at); gap > 500*time.Millisecond {
		t.Errorf("waited %v for a Retry-After of 1 s with a backoff Max of 10 ms", gap)
	}

	// A body that cannot be read again is sent once: its 503 is the answer.
	reqs, refusals = nil, 1
	c, _ = avxrm.New(srv.URL, avxrm.WithBackoff(avxrm.Backoff{Initial: time.Millisecond, Max: 10 * time.Millisecond}))
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, srv.URL+avxrm.BasePath+"/queues/a", io.NopCloser(strings.NewReader(`{"name":"a"}`)))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Send(req)
	if err != nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable || len(reqs) != 1 {
		t.Fatalf("PUT with a one-time body answered 503: %v, %v after %d requests; want the 503 after 1", resp, err, len(reqs))
	}
	resp.Body.Close()
}
