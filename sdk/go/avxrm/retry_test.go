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

// A POST sent again after its answer was lost may find its first attempt
// still holding the Idempotency-Key: the API's 409 saying so is tried again,
// with the same key. A 409 to a first attempt (a duplicate name) is the
// answer.
func TestRetriedPostWaitsForItsFirstAttempt(t *testing.T) {
	var mu sync.Mutex
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		n := len(keys)
		mu.Unlock()
		switch {
		case strings.HasSuffix(r.URL.Path, "/queues") && n == 1: // the answer is lost
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				conn.Close()
			}
		case strings.HasSuffix(r.URL.Path, "/queues") && n == 2: // the first attempt still runs
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusConflict)
			_, _ = w.Write([]byte(`{"title":"Conflict","status":409,"detail":"a request with this Idempotency-Key is still in progress; retry later","errors":[{"field":"Idempotency-Key","message":"request in progress"}]}`))
		case strings.HasSuffix(r.URL.Path, "/queues"):
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"id":"q-1","name":"a"}`))
		default: // a duplicate
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusConflict)
			_, _ = w.Write([]byte(`{"title":"Conflict","status":409,"detail":"a queue named a already exists","errors":[{"field":"name","message":"a queue named a already exists"}]}`))
		}
	}))
	defer srv.Close()
	c, err := avxrm.New(srv.URL, avxrm.WithBackoff(avxrm.Backoff{Initial: time.Millisecond, Max: 10 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if _, err := c.Do(context.Background(), http.MethodPost, "/queues", map[string]any{"name": "a"}, &out); err != nil || out["id"] != "q-1" {
		t.Fatalf("POST whose retry met its first attempt: %v, %v", out, err)
	}
	if len(keys) != 3 || keys[0] == "" || keys[1] != keys[0] || keys[2] != keys[0] {
		t.Errorf("requests with keys %q, want three with one key", keys)
	}
	keys = nil
	_, err = c.Do(context.Background(), http.MethodPost, "/other", map[string]any{"name": "a"}, nil)
	var pe *avxrm.Error
	if !errors.As(err, &pe) || pe.StatusCode != http.StatusConflict || !strings.Contains(err.Error(), "already exists") || len(keys) != 1 {
		t.Errorf("a duplicate: %v after %d requests, want its 409 after 1", err, len(keys))
	}
}

// Unreachable: a refused or cut connection, no answer in time, and a 502,
// 503 or 504 are the server away for now; the caller's cancel, a 404 and a
// 500 are not.
func TestUnreachable(t *testing.T) {
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers
	}))
	defer silent.Close()
	hc := &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 50 * time.Millisecond}}
	_, timeout := hc.Get(silent.URL)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	_, refused := http.Get(down.URL)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, silent.URL, nil)
	_, cancelled := http.DefaultClient.Do(req)
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"no answer in time", timeout, true},
		{"refused", refused, true},
		{"503", &avxrm.Error{StatusCode: http.StatusServiceUnavailable}, true},
		{"504", &avxrm.Error{StatusCode: http.StatusGatewayTimeout}, true},
		{"cancelled by the caller", cancelled, false},
		{"404", &avxrm.Error{StatusCode: http.StatusNotFound}, false},
		{"500", &avxrm.Error{StatusCode: http.StatusInternalServerError}, false},
		{"nil", nil, false},
	} {
		if got := avxrm.Unreachable(c.err); got != c.want {
			t.Errorf("Unreachable(%s: %v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

// WithOnRetry is told of each retry before its wait: the 503's problem
// (or the failure to reach the server), which retry, and how long the
// client waits before it.
func TestOnRetryTellsWhyAndHowLong(t *testing.T) {
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		i := n
		mu.Unlock()
		switch i {
		case 1: // the answer is lost
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				conn.Close()
			}
		case 2, 3:
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"title":"Service Unavailable","status":503,"detail":"the store cannot be reached at the moment; retry the request shortly"}`))
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"id":"q-1","name":"a"}`))
		}
	}))
	defer srv.Close()
	type retry struct {
		err  error
		n    int
		wait time.Duration
	}
	var told []retry
	c, err := avxrm.New(srv.URL, avxrm.WithBackoff(avxrm.Backoff{Initial: time.Millisecond, Max: 20 * time.Millisecond}),
		avxrm.WithOnRetry(func(err error, n int, wait time.Duration) { told = append(told, retry{err, n, wait}) }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(context.Background(), http.MethodGet, "/queues/a", nil, nil); err != nil {
		t.Fatalf("GET after a lost answer and two 503s: %v", err)
	}
	if len(told) != 3 {
		t.Fatalf("told of %d retries (%+v), want 3", len(told), told)
	}
	var pe *avxrm.Error
	if errors.As(told[0].err, &pe) || told[0].n != 1 || told[0].wait > 20*time.Millisecond {
		t.Errorf("first retry: %+v, want the lost connection's error, retry 1, the backoff's wait", told[0])
	}
	for i, r := range told[1:] {
		if !errors.As(r.err, &pe) || pe.StatusCode != http.StatusServiceUnavailable ||
			!strings.Contains(r.err.Error(), "store cannot be reached") || r.n != i+2 || r.wait != 20*time.Millisecond {
			t.Errorf("retry %d: %+v, want the 503's problem, retry %d, the Retry-After up to the backoff's Max (20ms)", i+2, r, i+2)
		}
	}
}
