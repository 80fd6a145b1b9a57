package avxrm_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm"
)

// The SSE wire protocol as the API speaks it, one connection at a time: the
// first drops after event 7, the second must resume with Last-Event-ID 7,
// and a Last-Event-ID beyond the end is a 416 that ends the watch.
func TestWatchResumesWithLastEventID(t *testing.T) {
	var mu sync.Mutex
	var resumed []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		resumed = append(resumed, r.Header.Get("Last-Event-ID"))
		n := len(resumed)
		mu.Unlock()
		if r.Header.Get("Last-Event-ID") == "99" {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			_, _ = w.Write([]byte(`{"title":"Range Not Satisfiable","status":416,"detail":"Last-Event-ID 99 is beyond the stream's end"}`))
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		ev := func(id int, typ string) {
			_, _ = fmt.Fprintf(w, ": keep-alive\n\nid: %d\nevent: %s\ndata: {\"type\":%q,\"subject\":\"job-1\",\n", id, typ, typ)
			_, _ = fmt.Fprintf(w, "data:  \"data\":{\"id\":\"job-1\",\"version\":%d}}\n\n", id)
		}
		switch n {
		case 1:
			ev(6, "rm.job.admitted")
			ev(7, "rm.job.running")
			// then the connection drops
		default:
			ev(8, "rm.job.succeeded")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}
	}))
	defer srv.Close()
	var disconnects int
	c, _ := avxrm.New(srv.URL, avxrm.WithBackoff(avxrm.Backoff{Initial: time.Millisecond, Max: 10 * time.Millisecond}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	five := uint64(5)
	var got []string
	for e, err := range c.Watch(ctx, avxrm.WatchOptions{After: &five, OnDisconnect: func(error, int) { disconnects++ }}) {
		if err != nil {
			t.Fatal(err)
		}
		j, err := e.Job()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d %s %d", e.ID, e.Type, *j.Version))
		if e.ID == 8 {
			break
		}
	}
	if fmt.Sprint(got) != "[6 rm.job.admitted 6 7 rm.job.running 7 8 rm.job.succeeded 8]" || disconnects != 1 {
		t.Errorf("events %q after %d disconnects", got, disconnects)
	}
	if fmt.Sprint(resumed) != "[5 7]" {
		t.Errorf("Last-Event-ID sent: %q, want 5 then 7", resumed)
	}

	beyond := uint64(99)
	for _, err := range c.Watch(ctx, avxrm.WatchOptions{After: &beyond}) {
		var pe *avxrm.Error
		if !errors.As(err, &pe) || pe.StatusCode != http.StatusRequestedRangeNotSatisfiable {
			t.Errorf("beyond the end: %v", err)
		}
	}
}
