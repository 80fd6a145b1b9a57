package avxrm_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
)

// JobFilter.ArrayID lists the jobs of one array (GET /jobs?array_id=).
func TestJobsOfAnArray(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	c, _ := avxrm.New(srv.URL, avxrm.WithRetries(0))
	for _, err := range c.Jobs(context.Background(), avxrm.JobFilter{ArrayID: "arr-1"}) {
		if !errors.Is(err, avxrm.ErrNotFound) {
			t.Errorf("the recorder's 404: %v", err)
		}
	}
	got := rec.take()
	if len(got) != 1 {
		t.Fatalf("asked %q", got)
	}
	u, _ := url.Parse(got[0])
	if u.Path != avxrm.BasePath+"/jobs" || u.Query().Get("array_id") != "arr-1" {
		t.Errorf("asked %q, want /jobs?array_id=arr-1", got[0])
	}
}

// An array is final once none of its jobs is in a status that is not
// final, whatever its count: the counts leave out the deleted jobs.
func TestJobArrayFinal(t *testing.T) {
	counts := func(m map[string]int64) *api.JobArray { return &api.JobArray{Count: ptr(int64(3)), Counts: &m} }
	for _, tc := range []struct {
		a    *api.JobArray
		want bool
	}{
		{nil, false},
		{&api.JobArray{Count: ptr(int64(3))}, false}, // the server said no counts
		{counts(map[string]int64{"succeeded": 1, "running": 1, "failed": 1}), false},
		{counts(map[string]int64{"succeeded": 1, "pending": 0, "failed": 1}), true}, // one deleted
		{counts(map[string]int64{"succeeded": 2, "cancelled": 1}), true},
		{counts(map[string]int64{}), true}, // every job deleted
	} {
		if got := avxrm.JobArrayFinal(tc.a); got != tc.want {
			t.Errorf("JobArrayFinal(%v) = %v, want %v", tc.a, got, tc.want)
		}
	}
}

// arrayServer is an API with the array arr-1 of three jobs on queue q-1,
// one of them deleted: GET /job-arrays/arr-1 says one job runs until
// final() is true. events writes its event stream.
type arrayServer struct {
	reads  atomic.Int32
	final  atomic.Bool
	events func(w http.ResponseWriter, r *http.Request)
	mu     sync.Mutex
	asked  []string // the event stream's queries
}

func (s *arrayServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case avxrm.BasePath + "/job-arrays/arr-1":
		s.reads.Add(1)
		counts := `{"succeeded":1,"running":1}`
		if s.final.Load() {
			counts = `{"succeeded":1,"failed":1}`
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"id":"arr-1","queue_id":"q-1","count":3,"counts":%s,"failed_indexes":[2]}`, counts)
	case avxrm.BasePath + "/events":
		s.mu.Lock()
		s.asked = append(s.asked, r.URL.RawQuery)
		s.mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte("id: 10\n\n"))
		w.(http.Flusher).Flush()
		s.events(w, r)
		<-r.Context().Done()
	default:
		http.NotFound(w, r)
	}
}

// jobEvent writes the end event id of a job of array (none: of no array).
func jobEvent(w http.ResponseWriter, id int, typ, array string) {
	arr := ""
	if array != "" {
		arr = fmt.Sprintf(`,"array_id":%q`, array)
	}
	_, _ = fmt.Fprintf(w, "id: %d\nevent: %s\ndata: {\"type\":%q,\"subject\":\"job-%d\",\"data\":{\"id\":\"job-%d\"%s}}\n\n", id, typ, typ, id, id, arr)
	w.(http.Flusher).Flush()
}

// WaitJobArray follows the end events of the array's queue and reads the
// array again after those of its jobs, however many end at once, at most
// once a second; it returns the array once no job of it has a status that
// is not final, though fewer jobs ended than its count (one was deleted).
func TestWaitJobArray(t *testing.T) {
	s := &arrayServer{}
	s.events = func(w http.ResponseWriter, r *http.Request) {
		for i := range 20 {
			jobEvent(w, 11+i, "rm.job.succeeded", "arr-1")
		}
		s.final.Store(true)
		jobEvent(w, 31, "rm.job.failed", "arr-1")
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	c, _ := avxrm.New(srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := c.WaitJobArray(ctx, "arr-1")
	if err != nil {
		t.Fatal(err)
	}
	if !avxrm.JobArrayFinal(a) || (*a.Counts)["failed"] != 1 || fmt.Sprint(avxrm.Values(a.FailedIndexes)) != "[2]" {
		t.Errorf("WaitJobArray = %+v", a)
	}
	// The first read, then one for the connection and the 21 events.
	if n := s.reads.Load(); n != 2 {
		t.Errorf("the array was read %d times, want 2", n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.asked) != 1 {
		t.Fatalf("the event stream was asked %q", s.asked)
	}
	q, _ := url.ParseQuery(s.asked[0])
	if q.Get("queue_id") != "q-1" || q.Get("type") != "rm.job.succeeded,rm.job.failed,rm.job.cancelled,rm.job.deleted" {
		t.Errorf("the event stream was asked %q, want the end events of queue q-1", s.asked[0])
	}
}

// The end events of other jobs of the queue do not read the array; a wait
// that its context ends says how many of the array's jobs had not ended,
// and errors.Is finds the context's error.
func TestWaitJobArrayIgnoresOtherJobs(t *testing.T) {
	s := &arrayServer{}
	s.events = func(w http.ResponseWriter, r *http.Request) {
		for i := 0; r.Context().Err() == nil; i++ {
			jobEvent(w, 11+2*i, "rm.job.succeeded", "arr-2")
			jobEvent(w, 12+2*i, "rm.job.failed", "")
			select {
			case <-r.Context().Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	c, _ := avxrm.New(srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	_, err := c.WaitJobArray(ctx, "arr-1")
	if want := "job array arr-1 is still not final (1 of its jobs not ended)"; !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(fmt.Sprint(err), want) {
		t.Errorf("WaitJobArray past its deadline: %v, want %q and the deadline", err, want)
	}
	// The first read, then one for the connection.
	if n := s.reads.Load(); n != 2 {
		t.Errorf("the array was read %d times, want 2", n)
	}
}

func ptr[T any](v T) *T { return &v }
