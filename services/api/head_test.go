package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/avxrm/rm/services/api/internal/apitest"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
)

// head sends a HEAD to path (from the server's root) and fails the test
// unless it is answered within 10 s with no body.
func (e *env) head(path string, headers ...string) resp {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := resp(apitest.DoContext(ctx, e.t, http.MethodHead, e.base+path, nil, headers...))
	if len(r.Body) != 0 {
		e.t.Errorf("HEAD %s has a body: %q", path, r.Body)
	}
	return r
}

// sameHeaders are the headers a HEAD answers as its GET does.
var sameHeaders = []string{"Content-Type", "ETag", "Content-Length", "Cache-Control", "Rm-Log-Offset", "Allow"}

// headLikeGet fails the test unless HEAD path answers GET's status and headers.
func (e *env) headLikeGet(path string) {
	e.t.Helper()
	get := e.do(http.MethodGet, path, nil)
	head := e.head(path)
	want, got := map[string]string{"status": strconv.Itoa(get.Status)}, map[string]string{"status": strconv.Itoa(head.Status)}
	for _, h := range sameHeaders {
		want[h], got[h] = get.Header.Get(h), head.Header.Get(h)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		e.t.Errorf("HEAD %s differs from GET (-GET +HEAD):\n%s", path, diff)
	}
}

// TestHEAD: every route that answers GET answers HEAD (RFC 9110 §9.3.2),
// with GET's status and headers and no body, at the root and under the API.
func TestHEAD(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", queueBody("fq"))
	id := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("fq", 1)).obj(t).str("id")
	e.must(http.StatusCreated, http.MethodPut, v1+"/jobs/"+id+"/artifacts/scenarios/s-001/a/b.xosc", "<xosc/>", "Content-Type", "application/octet-stream")
	for _, path := range []string{
		v1 + "/queues/fq", v1 + "/queues", v1 + "/queues/nope", v1 + "/jobs/" + id, v1 + "/jobs?limit=1",
		v1 + "/jobs/" + id + "/artifacts/scenarios/s-001/a/b.xosc", v1 + "/jobs/" + id + "/artifacts/scenarios/s-001/nope",
		v1 + "/openapi.json", "/healthz", "/readyz", "/version", "/api/resources/docs/", "/ui/queues", "/nothing-here",
	} {
		e.headLikeGet(path)
	}
	r := e.head(v1 + "/queues/fq")
	if r.Status != http.StatusOK || r.Header.Get("ETag") != `"1"` || r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("HEAD queue = %d %v", r.Status, r.Header)
	}
	if r := e.head(v1 + "/queues/nope"); r.Status != http.StatusNotFound || r.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("HEAD unknown queue = %d %v", r.Status, r.Header)
	}
	r = e.head(v1 + "/jobs/" + id + "/artifacts/scenarios/s-001/a/b.xosc")
	if r.Status != http.StatusOK || r.Header.Get("Content-Length") != strconv.Itoa(len("<xosc/>")) || r.Header.Get("Accept-Ranges") != "bytes" {
		t.Errorf("HEAD artifact = %d, %v", r.Status, r.Header)
	}
	// The metrics count the request as a HEAD.
	m := e.do(http.MethodGet, "/metrics", nil)
	if want := `rm_api_requests_total{code="200",method="HEAD",route="` + v1 + `/queues/:queue_id"}`; !strings.Contains(string(m.Body), want) {
		t.Errorf("/metrics lacks %s", want)
	}
	// A problem an echo handler returns is counted with its status, which the
	// error handler writes after the metrics' middleware has returned.
	if want := `rm_api_requests_total{code="404",method="GET",route="` + v1 + `/jobs/:id/artifacts/scenarios/:sample_id/*"}`; !strings.Contains(string(m.Body), want) {
		t.Errorf("/metrics lacks %s", want)
	}
	if r := e.head("/metrics"); r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("HEAD /metrics = %d %v", r.Status, r.Header)
	}
}

// TestAllowListsHEAD: a 405 and an OPTIONS name HEAD wherever they name GET.
func TestAllowListsHEAD(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", queueBody("fq"))
	for _, path := range []string{v1 + "/queues/fq", v1 + "/queues", "/healthz", v1 + "/openapi.json", v1 + "/events"} {
		r := e.do(http.MethodPost, path, nil)
		if path == v1+"/queues" {
			r = e.do(http.MethodDelete, path, nil)
		}
		allow := strings.Split(r.Header.Get("Allow"), ", ")
		if r.Status != http.StatusMethodNotAllowed || !containsAll(allow, "GET", "HEAD") {
			t.Errorf("%s: 405 = %d, Allow %q", path, r.Status, allow)
		}
		if r.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: 405 Content-Type %q", path, r.Header.Get("Content-Type"))
		}
		o := e.do(http.MethodOptions, path, nil)
		if allow := strings.Split(o.Header.Get("Allow"), ", "); !containsAll(allow, "GET", "HEAD") {
			t.Errorf("OPTIONS %s: Allow %q", path, allow)
		}
	}
	// Without a GET there is no HEAD.
	r := e.head(v1 + "/jobs/job-x/cancel")
	if allow := r.Header.Get("Allow"); r.Status != http.StatusMethodNotAllowed || strings.Contains(allow, "HEAD") || strings.Contains(allow, "GET") {
		t.Errorf("HEAD on a POST route = %d, Allow %q", r.Status, allow)
	}
}

func containsAll(list []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, l := range list {
			found = found || l == w
		}
		if !found {
			return false
		}
	}
	return true
}

// TestHEADOfStreams: HEAD on the event stream and on a log that does not
// end answers the GET's headers and ends, where the GET streams on.
func TestHEADOfStreams(t *testing.T) {
	e := startEnv(t)
	// A HEAD of the event stream makes no consumer on the stream; a GET does.
	created, err := e.js.Conn().SubscribeSync("$JS.EVENT.ADVISORY.CONSUMER.CREATED.>")
	if err != nil {
		t.Fatal(err)
	}
	defer created.Unsubscribe()
	if err := e.js.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	r := e.head(v1 + "/events")
	if r.Status != http.StatusOK || r.Header.Get("Content-Type") != "text/event-stream" || r.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("HEAD /events = %d %v", r.Status, r.Header)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.stream(ctx, "/events", "")
	n := 0
	for ; ; n++ {
		if _, err := created.NextMsg(time.Second); err != nil {
			break
		}
	}
	cancel()
	if n != 1 {
		t.Errorf("HEAD and GET of /events made %d consumers, want 1 (the GET's)", n)
	}
	if r := e.head(v1+"/events", "Last-Event-ID", "999999"); r.Status != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("HEAD /events after an event to come = %d", r.Status)
	}

	e.create("/queues", queueBody("fq"))
	id := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("fq", 2)).obj(t).str("id")
	// A launcher that serves worker 0's log in 5-byte chunks up to 20
	// bytes, and worker 1's without end (a log still growing).
	var asked [2]atomic.Int32
	for i := range 2 {
		sub, err := e.js.Conn().Subscribe("rm.launcher.logs."+id+".worker."+strconv.Itoa(i), func(m *nats.Msg) {
			asked[i].Add(1)
			var q struct{ Offset int64 }
			_ = json.Unmarshal(m.Data, &q)
			reply := nats.NewMsg(m.Reply)
			reply.Header.Set("Rm-Logs-Status", "200")
			reply.Header.Set("Rm-Logs-Offset", strconv.FormatInt(q.Offset, 10))
			reply.Header.Set("Rm-Logs-Eof", strconv.FormatBool(i == 0 && q.Offset+5 >= 20))
			reply.Data = []byte("line\n")
			_ = m.RespondMsg(reply)
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	logs := v1 + "/jobs/" + id + "/instances/worker/"
	if g := e.must(http.StatusOK, http.MethodGet, logs+"0/logs", nil); string(g.Body) != strings.Repeat("line\n", 4) {
		t.Fatalf("GET log = %q", g.Body)
	}
	e.headLikeGet(logs + "0/logs?offset=15")
	asked[1].Store(0)
	r = e.head(logs + "1/logs?offset=10")
	if r.Status != http.StatusOK || r.Header.Get("Rm-Log-Offset") != "10" || r.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("HEAD of a growing log = %d %v", r.Status, r.Header)
	}
	if n := asked[1].Load(); n != 1 {
		t.Errorf("HEAD of a growing log asked the launcher %d times, want once", n)
	}
}
