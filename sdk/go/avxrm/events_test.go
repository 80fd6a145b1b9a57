package avxrm_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
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

// An event that cannot be read (its data not JSON, its id not a stream
// sequence) would come again on every reconnect: Watch yields the events
// before it, then an error naming it, and ends, instead of reconnecting
// for ever. FollowJob likewise ends at a job event whose data is not a job.
func TestWatchEndsAtAMalformedEvent(t *testing.T) {
	for name, bad := range map[string]string{
		"data not JSON": "id: 2\nevent: rm.job.running\ndata: {not json\n\n",
		"id not a number": "id: two\nevent: rm.job.running\n" +
			`data: {"type":"rm.job.running","subject":"job-1","data":{"id":"job-1","version":2}}` + "\n\n",
		"no id": "event: rm.job.running\n" +
			`data: {"type":"rm.job.running","subject":"job-1","data":{"id":"job-1","version":2}}` + "\n\n",
		"job data not a job": "id: 2\nevent: rm.job.running\n" +
			`data: {"type":"rm.job.running","subject":"job-1","data":{"id":"job-1","version":"two"}}` + "\n\n",
	} {
		var mu sync.Mutex
		conns := 0
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != avxrm.BasePath+"/events" {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"id":"job-1","status":"running","version":1}`))
				return
			}
			mu.Lock()
			conns++
			mu.Unlock()
			w.Header().Set("Content-Type", "text/event-stream")
			if r.Header.Get("Last-Event-ID") == "2" { // past the bad event: nothing new
				w.(http.Flusher).Flush()
				<-r.Context().Done()
				return
			}
			if r.Header.Get("Last-Event-ID") == "0" {
				_, _ = w.Write([]byte("id: 1\nevent: rm.job.admitted\n" +
					`data: {"type":"rm.job.admitted","subject":"job-1","data":{"id":"job-1","version":1}}` + "\n\n"))
			}
			_, _ = w.Write([]byte(bad))
		}))
		c, _ := avxrm.New(srv.URL, avxrm.WithBackoff(avxrm.Backoff{Initial: time.Millisecond, Max: time.Millisecond}))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		zero := uint64(0)
		var got []uint64
		var werr error
		for e, err := range c.Watch(ctx, avxrm.WatchOptions{After: &zero}) {
			if err != nil {
				werr = err
				continue
			}
			if got = append(got, e.ID); len(got) == 2 {
				break
			}
		}
		_, jerr := c.WaitJob(ctx, "job-1")
		expired := ctx.Err()
		cancel()
		srv.Close()
		if name == "job data not a job" {
			if werr != nil || len(got) != 2 {
				t.Errorf("%s: Watch yielded %v, then %v; want events 1 and 2", name, got, werr)
			}
		} else if !errors.Is(werr, avxrm.ErrMalformedEvent) || fmt.Sprint(got) != "[1]" || conns != 2 {
			t.Errorf("%s: Watch yielded %v, then %v, over %d connections; want event 1, then ErrMalformedEvent, over one",
				name, got, werr, conns-1)
		}
		if expired != nil || jerr == nil || !strings.Contains(jerr.Error(), "2") && name != "no id" && name != "id not a number" {
			t.Errorf("%s: WaitJob: %v (context: %v), want an error naming the event", name, jerr, expired)
		}
	}
}

// A wait that its context ends says which job or export it waited for and
// in which state it left it, and errors.Is finds the context's error.
func TestWaitEndedByItsContextSaysSo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case avxrm.BasePath + "/events":
			w.Header().Set("Content-Type", "text/event-stream")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		case avxrm.BasePath + "/jobs/job-1":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"id":"job-1","status":"running","version":3}`))
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"id":"exp-1","status":"building"}`))
		}
	}))
	defer srv.Close()
	c, _ := avxrm.New(srv.URL)
	waits := map[string]func(ctx context.Context) error{
		"job job-1 is still running": func(ctx context.Context) error { _, err := c.WaitJob(ctx, "job-1"); return err },
		"export exp-1 is still building": func(ctx context.Context) error {
			_, err := c.WaitExport(ctx, "exp-1")
			return err
		},
	}
	for want, wait := range waits {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := wait(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(fmt.Sprint(err), want) {
			t.Errorf("wait past its deadline: %v, want %q and the deadline", err, want)
		}
		ctx, cancel = context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		err = wait(ctx)
		if !errors.Is(err, context.Canceled) || !strings.Contains(fmt.Sprint(err), want) {
			t.Errorf("wait cancelled: %v, want %q and the cancellation", err, want)
		}
	}
}

// A watch of new events that loses its connection before its first event
// resumes after the id the server's first message gave (a message of an id
// alone, no event), so the events of the gap are not lost; the id alone is
// not yielded.
func TestWatchResumesFromWhereTheStreamStood(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.Header.Get("Last-Event-ID"))
		n := len(asked)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		if n == 1 {
			_, _ = w.Write([]byte("id: 41\n\n")) // then the connection is lost
			return
		}
		_, _ = w.Write([]byte("id: 42\nevent: rm.queue.created\n" +
			`data: {"type":"rm.queue.created","subject":"q-1","data":{"id":"q-1"}}` + "\n\n"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	c, _ := avxrm.New(srv.URL, avxrm.WithBackoff(avxrm.Backoff{Initial: time.Millisecond, Max: time.Millisecond}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []uint64
	for e, err := range c.Watch(ctx, avxrm.WatchOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.ID)
		break
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got) != "[42]" || fmt.Sprint(asked) != "[ 41]" {
		t.Fatalf("Watch yielded %v, asking with Last-Event-ID %q; want event 42, asked after none then 41", got, asked)
	}
}
