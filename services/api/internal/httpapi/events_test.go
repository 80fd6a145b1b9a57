package httpapi

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
)

// streamAnswer opens GET /events with query (headers are name, value pairs):
// a 200's stream is closed at once, another answer is read whole.
func (e *artifactEnv) streamAnswer(query string, headers ...string) answer {
	e.t.Helper()
	res := e.send(context.Background(), http.MethodGet, "/events"+query, nil, headers...)
	if res.StatusCode != http.StatusOK {
		return e.read(res)
	}
	res.Body.Close()
	return answer{status: res.StatusCode, header: res.Header}
}

// With auth on, the stream of one job tells no more than GET /jobs/{id}
// does: a job the caller may read (its queue's access.read names it, or it
// owns the job) streams; one it may not is the same 403 naming the access
// list; one there is not is a 422 naming job_id (GET's 404). A resume takes
// any id: what the caller may not read stays out of it.
func TestJobStreamAnswersAsTheJobDoes(t *testing.T) {
	e := newAuthEnv(t)
	var own events.Job
	e.json(http.StatusCreated, http.MethodPost, "/jobs", e.jobBody("secret"), &own, "Authorization", e.alice)
	// Alice still owns the job her queue's list no longer names her for.
	e.json(http.StatusOK, http.MethodPatch, "/queues/secret", map[string]any{"access": map[string]any{
		"read": []string{"user:carol"}, "submit": []string{"user:alice"}}}, nil, "Authorization", e.admin)
	typo := events.NewID("job")
	for _, c := range []struct {
		name, job, who string
		get, stream    int
	}{
		{"admin, a job", e.secretJob, e.admin, http.StatusOK, http.StatusOK},
		{"owner, a job its queue's access.read does not name it for", own.ID, e.alice, http.StatusOK, http.StatusOK},
		{"another user, that job", own.ID, e.bob, http.StatusForbidden, http.StatusForbidden},
		{"viewer, a job of a queue whose access.read does not name it", e.secretJob, e.viewer, http.StatusForbidden, http.StatusForbidden},
		{"user, no job", typo, e.bob, http.StatusNotFound, http.StatusUnprocessableEntity},
		{"admin, no job", typo, e.admin, http.StatusNotFound, http.StatusUnprocessableEntity},
	} {
		get := e.do(http.MethodGet, "/jobs/"+c.job, nil, "Authorization", c.who)
		stream := e.streamAnswer("?job_id="+c.job, "Authorization", c.who)
		if get.status != c.get || stream.status != c.stream {
			t.Errorf("%s: GET /jobs/{id} = %s, GET /events?job_id= = %s; want %d and %d", c.name, get, stream, c.get, c.stream)
			continue
		}
		switch stream.status {
		case http.StatusForbidden:
			if g, s := problemOf(t, get).Detail, problemOf(t, stream).Detail; g != s {
				t.Errorf("%s: the stream's 403 says %q, GET /jobs/{id}'s %q", c.name, s, g)
			}
		case http.StatusUnprocessableEntity:
			if p := problemOf(t, stream); len(p.Errors) != 1 || p.Errors[0].Field != "job_id" {
				t.Errorf("%s: GET /events?job_id= = %s, want 422 naming job_id", c.name, stream)
			}
		}
		if a := e.streamAnswer("?job_id="+c.job, "Authorization", c.who, "Last-Event-ID", "0"); a.status != http.StatusOK {
			t.Errorf("%s: GET /events?job_id= with Last-Event-ID 0 = %s, want 200", c.name, a)
		}
	}
}

// One caller holds at most maxStreamsPerCaller event streams at once: the
// next is a 429 saying so, while other callers' streams open as before, and
// a stream closed frees its place. Without the bound one token opened
// streams until the API had no file descriptor left for anyone.
func TestEventStreamsOfOneCallerAreBounded(t *testing.T) {
	e := newAuthEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var open []*http.Response
	for range maxStreamsPerCaller {
		res := e.send(ctx, http.MethodGet, "/events", nil, "Authorization", e.bob)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("stream %d of bob: %s", len(open)+1, e.read(res))
		}
		open = append(open, res)
	}
	a := e.streamAnswer("", "Authorization", e.bob)
	if a.status != http.StatusTooManyRequests || !strings.Contains(problemOf(t, a).Detail, "bob holds 64 event streams open") {
		t.Errorf("stream %d of bob = %s, want a 429 saying bob holds 64 event streams open", maxStreamsPerCaller+1, a)
	}
	if a := e.streamAnswer("", "Authorization", e.alice); a.status != http.StatusOK {
		t.Errorf("alice's stream = %s, want 200: bob's streams take none of hers", a)
	}
	open[0].Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		a := e.streamAnswer("", "Authorization", e.bob)
		if a.status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a stream of bob after he closed one = %s, want 200", a)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, res := range open[1:] {
		res.Body.Close()
	}
}
