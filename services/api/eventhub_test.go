package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/api/internal/apitest"
)

// sseEvent is one event as a reader of GET /events got it.
type sseEvent struct {
	id      uint64
	typ     string
	subject string // the CloudEvent's subject: the resource's id
}

// openEvents opens GET /events (query included) after last ("" for none)
// and returns its events as they come; the stream closes with ctx.
func openEvents(ctx context.Context, t *testing.T, base, query, last string) (<-chan sseEvent, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+v1+"/events"+query, nil)
	if err != nil {
		return nil, err
	}
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		res.Body.Close()
		return nil, &statusError{res.StatusCode}
	}
	out := make(chan sseEvent, 64)
	go func() {
		defer close(out)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(nil, 1<<20)
		var e sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				e.id, _ = strconv.ParseUint(line[4:], 10, 64)
			case strings.HasPrefix(line, "event: "):
				e.typ = line[7:]
			case strings.HasPrefix(line, "data: "):
				if i := strings.Index(line, `"subject":"`); i >= 0 {
					e.subject, _, _ = strings.Cut(line[i+len(`"subject":"`):], `"`)
				}
			case line == "":
				if e.typ != "" { // an id alone is the reader's position, no event
					select {
					case out <- e:
					case <-ctx.Done():
						return
					}
				}
				e = sseEvent{}
			}
		}
	}()
	return out, nil
}

type statusError struct{ status int }

func (e *statusError) Error() string { return "status " + strconv.Itoa(e.status) }

// next is the reader's next event, or fails the test after 10 s.
func next(t *testing.T, ch <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatal("the event stream ended")
		}
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10 s")
	}
	return sseEvent{}
}

// Readers of the event stream share one consumer per API: 1,500 readers at
// once (NATS allows 1,000 consumers a stream, and a consumer each answered
// every reader past about 995 with a 500) each get the next event, and the
// stream's consumers do not grow with them.
func TestManyEventStreamsShareOneConsumer(t *testing.T) {
	e := startEnv(t)
	st, err := e.js.Stream(context.Background(), events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	before := info.State.Consumers
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const readers = 1500
	streams := make([]<-chan sseEvent, readers)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []error
	for i := range streams {
		wg.Go(func() {
			ch, err := openEvents(ctx, t, e.base, "?type=rm.queue.created", "")
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, err)
			}
			streams[i] = ch
		})
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d of %d readers refused, the first: %v", len(failed), readers, failed[0])
	}
	info, err = st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Consumers - before; n != 1 {
		t.Errorf("%d readers made %d consumers, want 1", readers, n)
	}
	q := e.create("/queues", queueBody("many")).str("id")
	for i, ch := range streams {
		if got := next(t, ch); got.typ != "rm.queue.created" || got.subject != q {
			t.Fatalf("reader %d got %+v, want the creation of %s", i, got, q)
		}
	}
}

// A reader resuming within what the hub holds gets the events after its
// Last-Event-ID from there; one resuming from before the hub started replays
// them from the stream first and then follows live, each event once, in
// order; a job's reader from 0 (as FollowJob reads) gets that job's alone.
func TestEventStreamResumes(t *testing.T) {
	e := startEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Stored before any reader: the hub starts after them.
	var early []string
	for _, n := range []string{"r1", "r2", "r3"} {
		early = append(early, e.create("/queues", queueBody(n)).str("id"))
	}
	job := e.create("/jobs", jobBody("r1", 1)).str("id")

	fromStart, err := openEvents(ctx, t, e.base, "?type=rm.queue.created", "0")
	if err != nil {
		t.Fatal(err)
	}
	// The built-in queues' creations come first.
	var seen []sseEvent
	for len(seen) < len(early) {
		if got := next(t, fromStart); got.subject == early[len(seen)] || len(seen) > 0 {
			seen = append(seen, got)
		}
	}
	late := e.create("/queues", queueBody("r4")).str("id")
	seen = append(seen, next(t, fromStart))
	for i, want := range append(early, late) {
		if seen[i].subject != want || (i > 0 && seen[i].id <= seen[i-1].id) {
			t.Fatalf("replayed then live: %+v, want the creations of %v in order", seen, append(early, late))
		}
	}

	// Resume after r2's creation: r3's and r4's come from the hub's ring
	// (r3's from the stream, as the hub started after it).
	resumed, err := openEvents(ctx, t, e.base, "?type=rm.queue.created", strconv.FormatUint(seen[1].id, 10))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{early[2], late} {
		if got := next(t, resumed); got.subject != want {
			t.Fatalf("resumed after %d: %+v, want %s", seen[1].id, got, want)
		}
	}
	// Resume after r4's creation, which the hub holds: nothing until the next.
	inRing, err := openEvents(ctx, t, e.base, "?type=rm.queue.created", strconv.FormatUint(seen[3].id, 10))
	if err != nil {
		t.Fatal(err)
	}
	r5 := e.create("/queues", queueBody("r5")).str("id")
	if got := next(t, inRing); got.subject != r5 {
		t.Fatalf("resumed after the last event: %+v, want r5's creation", got)
	}
	if got := next(t, resumed); got.subject != r5 {
		t.Fatalf("resumed reader, live: %+v, want r5's creation", got)
	}

	jobEvents, err := openEvents(ctx, t, e.base, "?job_id="+job, "0")
	if err != nil {
		t.Fatal(err)
	}
	if got := next(t, jobEvents); got.typ != "rm.job.submitted" || got.subject != job {
		t.Fatalf("the job's events from 0: %+v, want its submission", got)
	}
	e.must(http.StatusAccepted, http.MethodPost, v1+"/jobs/"+job+"/cancel", nil)
	for {
		got := next(t, jobEvents)
		if got.subject != job {
			t.Fatalf("the job's reader got %+v", got)
		}
		if got.typ == "rm.job.cancel-requested" {
			break
		}
	}
}

// A reader without Last-Event-ID is first told the stream sequence it starts
// after (a message of an id alone), so one whose connection is lost before
// its first event resumes from there: the events of the gap are not lost.
func TestNewReaderIsToldWhereItStarts(t *testing.T) {
	e := startEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.create("/queues", queueBody("p1"))
	st, err := e.js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.base+v1+"/events?type=rm.queue.created", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(res.Body)
	var first []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream's first message: %v (so far %q)", err, first)
		}
		if line == "\n" {
			break
		}
		first = append(first, line)
	}
	res.Body.Close() // the connection is lost before any event

	want := fmt.Sprintf("id: %d\n", info.State.LastSeq)
	if len(first) != 1 || first[0] != want {
		t.Fatalf("first message %q, want only %q: the stream's position when the reader came", first, want)
	}
	gap := e.create("/queues", queueBody("p2")).str("id")
	resumed, err := openEvents(ctx, t, e.base, "?type=rm.queue.created", strconv.FormatUint(info.State.LastSeq, 10))
	if err != nil {
		t.Fatal(err)
	}
	if got := next(t, resumed); got.subject != gap {
		t.Fatalf("resumed from the position: %+v, want the creation of %s made while it was away", got, gap)
	}
}

// GET /events?job_id= selects the job's events and its scenario exports'
// (whose subject is the export's id, their job in data.job_id): live, replayed
// from 0, and with a type filter; another job's exports stay out.
func TestJobEventsIncludeItsExports(t *testing.T) {
	e := startEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.create("/queues", queueBody("x1"))
	job := e.create("/jobs", jobBody("x1", 1)).str("id")
	other := e.create("/jobs", jobBody("x1", 1)).str("id")
	live, err := openEvents(ctx, t, e.base, "?job_id="+job, "")
	if err != nil {
		t.Fatal(err)
	}
	exportOf := func(id string) string {
		return e.must(http.StatusAccepted, http.MethodPost, v1+"/jobs/"+id+"/scenario-exports", obj{}).obj(t).str("id")
	}
	exportOf(other)
	mine := exportOf(job)
	e.must(http.StatusAccepted, http.MethodPost, v1+"/jobs/"+job+"/cancel", nil)

	want := []string{"rm.export.requested " + mine, "rm.job.cancel-requested " + job}
	for name, ch := range map[string]<-chan sseEvent{"live": live, "from 0": mustOpen(ctx, t, e.base, "?job_id="+job, "0")} {
		var got []string
		for len(got) < len(want) {
			ev := next(t, ch)
			if len(got) == 0 && ev.subject == job && ev.typ != "rm.job.cancel-requested" {
				continue // the job's events before its export (its submission)
			}
			got = append(got, ev.typ+" "+ev.subject)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	typed := mustOpen(ctx, t, e.base, "?job_id="+job+"&type=rm.export.requested", "0")
	if got := next(t, typed); got.typ != "rm.export.requested" || got.subject != mine {
		t.Errorf("the job's export requests from 0: %+v, want %s's", got, mine)
	}
}

// GET /events?job_id= with a well-formed id no job has (a typo) is refused
// naming job_id, as a queue name no queue has is: it would stream nothing,
// forever. A resume (Last-Event-ID) takes any id unread, so a deleted job's
// stored events are replayed and a stream whose job is deleted meanwhile
// reconnects.
func TestJobFilterRefusesAJobThereIsNot(t *testing.T) {
	e := startEnv(t)
	ctx := t.Context()
	e.create("/queues", queueBody("t1"))
	job := e.create("/jobs", jobBody("t1", 1)).str("id")
	refused := func(id, why string) {
		t.Helper()
		// A stream would not end: the deadline fails the test instead.
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		defer rcancel()
		r := resp(apitest.DoContext(rctx, t, http.MethodGet, e.base+v1+"/events?job_id="+id, nil))
		var p struct {
			Errors []struct{ Field, Message string }
		}
		want := fmt.Sprintf("no job %q; a deleted job's stored events can still be replayed with Last-Event-ID (0 replays every stored event)", id)
		if err := json.Unmarshal(r.Body, &p); r.Status != http.StatusUnprocessableEntity || r.Header.Get("Content-Type") != "application/problem+json" ||
			err != nil || len(p.Errors) != 1 || p.Errors[0].Field != "job_id" || p.Errors[0].Message != want {
			t.Errorf("GET /events?job_id= of %s = %s, want 422 saying job_id: %s", why, r, want)
		}
	}
	typo := events.NewID("job")
	refused(typo, "no job")
	mustOpen(ctx, t, e.base, "?job_id="+typo, "0")

	live := mustOpen(ctx, t, e.base, "?job_id="+job, "")
	e.must(http.StatusNoContent, http.MethodDelete, v1+"/jobs/"+job, nil)
	var last sseEvent
	for last.typ != "rm.job.deleted" {
		if last = next(t, live); last.subject != job {
			t.Fatalf("the job's reader got %+v", last)
		}
	}
	refused(job, "a deleted job")
	// A reconnect resumes; a replay from 0 has the job's stored events.
	mustOpen(ctx, t, e.base, "?job_id="+job, strconv.FormatUint(last.id, 10))
	replay := mustOpen(ctx, t, e.base, "?job_id="+job, "0")
	if got := next(t, replay); got.typ != "rm.job.submitted" || got.subject != job {
		t.Errorf("a deleted job's events from 0: %+v, want its submission", got)
	}
}

func mustOpen(ctx context.Context, t *testing.T, base, query, last string) <-chan sseEvent {
	t.Helper()
	ch, err := openEvents(ctx, t, base, query, last)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}
