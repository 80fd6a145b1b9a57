package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// serveLogs answers the API's log requests for the workers of job as a
// launcher does (services/launcher/internal/launch/logs.go): worker i's log
// is logs[i].text, served from the offset asked for, or from the start of
// its last tail lines, in chunks of at most logs[i].chunk bytes.
func (e *env) serveLogs(job string, logs []fakeLog) {
	e.t.Helper()
	for i, l := range logs {
		sub, err := e.js.Conn().Subscribe("rm.launcher.logs."+job+".worker."+strconv.Itoa(i), func(m *nats.Msg) {
			var q struct{ Offset, Max, Tail int64 }
			_ = json.Unmarshal(m.Data, &q)
			start := min(q.Offset, int64(len(l.text)))
			if q.Tail > 0 {
				start = int64(len(l.text))
				for n := int64(0); n < q.Tail && start > 0; n++ {
					start = int64(bytes.LastIndexByte([]byte(l.text[:start-1]), '\n') + 1)
				}
			}
			end := min(start+min(q.Max, l.chunk), int64(len(l.text)))
			reply := nats.NewMsg(m.Reply)
			reply.Header.Set("Rm-Logs-Status", "200")
			reply.Header.Set("Rm-Logs-Offset", strconv.FormatInt(start, 10))
			reply.Header.Set("Rm-Logs-Eof", strconv.FormatBool(end == int64(len(l.text))))
			reply.Data = []byte(l.text[start:end])
			_ = m.RespondMsg(reply)
		})
		if err != nil {
			e.t.Fatal(err)
		}
		e.t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
}

type fakeLog struct {
	text  string
	chunk int64
}

// TestLogsContentType: a log is the bytes the program wrote, as they are;
// it is labelled UTF-8 only when it is (a rune cut by a chunk's end is
// still UTF-8, one cut by the log's end or by the offset asked for is not),
// else text/plain without a charset. GET and HEAD say the same, whatever
// the offset or tail; nosniff keeps a browser showing it as text.
func TestLogsContentType(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", queueBody("fq"))
	id := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("fq", 5)).obj(t).str("id")
	const big = 256 << 10
	e.serveLogs(id, []fakeLog{
		{"a\xff\xfeb\x00c", big},
		{"héllo wörld ✓\n", 2}, // the first chunk ends inside é
		{"ok\n\xff\n", big},
		{"ends inside a rune \xe2\x82", big},
		{"é\n", big},
	})
	const utf8, noCharset = "text/plain; charset=utf-8", "text/plain"
	for _, c := range []struct {
		path, body, ct string
	}{
		{"0/logs", "a\xff\xfeb\x00c", noCharset},
		{"0/logs?offset=3", "b\x00c", utf8},
		{"0/logs?tail=1", "a\xff\xfeb\x00c", noCharset},
		{"1/logs", "héllo wörld ✓\n", utf8},
		{"1/logs?offset=1", "éllo wörld ✓\n", utf8},
		{"1/logs?offset=2", "\xa9llo wörld ✓\n", noCharset}, // inside é
		{"2/logs", "ok\n\xff\n", noCharset},
		{"2/logs?tail=1", "\xff\n", noCharset},
		{"2/logs?tail=2", "ok\n\xff\n", noCharset},
		{"2/logs?offset=4", "\n", utf8},
		{"2/logs?offset=5", "", utf8},
		{"2/logs?offset=99", "", utf8},
		{"3/logs", "ends inside a rune \xe2\x82", noCharset},
		{"4/logs", "é\n", utf8},
		{"4/logs?tail=1", "é\n", utf8},
	} {
		path := v1 + "/jobs/" + id + "/instances/worker/" + c.path
		r := e.must(http.StatusOK, http.MethodGet, path, nil)
		if string(r.Body) != c.body {
			t.Errorf("GET %s = %q, want %q", c.path, r.Body, c.body)
		}
		if ct := r.Header.Get("Content-Type"); ct != c.ct {
			t.Errorf("GET %s (%q): Content-Type %q, want %q", c.path, r.Body, ct, c.ct)
		}
		if v := r.Header.Get("X-Content-Type-Options"); v != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q, want nosniff", c.path, v)
		}
		e.headLikeGet(path)
	}
}

// TestLogsOfAnUnreachableRuntime: when the launcher answers 503 (the
// instance's runtime cannot answer now: its driver being made, the engine
// not answering), the API answers 503 with Retry-After and the launcher's
// reason, so a client asks again. Before, it was a 500.
func TestLogsOfAnUnreachableRuntime(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", queueBody("uq"))
	id := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("uq", 1)).obj(t).str("id")
	const reason = "launch: the driver of plugin plg-1 is being made"
	e.launcherAnswers(t, "rm.launcher.logs."+id+".worker.0", "503", reason)
	r := e.must(http.StatusServiceUnavailable, http.MethodGet, v1+"/jobs/"+id+"/instances/worker/0/logs", nil)
	if got := r.Header.Get("Retry-After"); got == "" {
		t.Error("no Retry-After")
	}
	if p := r.obj(t); !strings.Contains(p["detail"].(string), reason) {
		t.Errorf("problem %v, want the launcher's reason", p)
	}
}

// While the API has lost NATS, through which it asks the launcher for a
// log, a log read answers 503 with Retry-After at once, saying so: not
// "the launcher did not answer" after waiting out its 10 s.
func TestLogsWhileNATSIsDown(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", queueBody("nd"))
	id := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("nd", 1)).obj(t).str("id")
	e.nats.Shutdown()
	e.nats.WaitForShutdown()
	for deadline := time.Now().Add(10 * time.Second); e.js.Conn().IsConnected(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the API's NATS connection still up 10 s after the server stopped")
		}
	}
	r := e.must(http.StatusServiceUnavailable, http.MethodGet, v1+"/jobs/"+id+"/instances/worker/0/logs", nil)
	if r.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	if p := r.obj(t); !strings.Contains(p["detail"].(string), "lost its connection to NATS") {
		t.Errorf("problem %v, want it to say that NATS is lost", p)
	}
}

// A log the launcher has not of a job that waits for admission, whose
// instances are starting, or that ended before it was admitted says why
// none can be there; of a job that ran, the launcher's 404 stands.
func TestLogsOfAJobThatDidNotRun(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", queueBody("nq"))
	id := e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("nq", 1)).obj(t).str("id")
	e.launcherAnswers(t, "rm.launcher.logs."+id+".worker.0", "404", "logs of "+id+"/worker/0")
	// A post controller's index is its start's: the second is asked for
	// (no launcher answers for it here).
	e.must(http.StatusServiceUnavailable, http.MethodGet, v1+"/jobs/"+id+"/instances/post-controller/1/logs", nil)
	if got := e.must(http.StatusNotFound, http.MethodGet, v1+"/jobs/"+id+"/instances/worker/1/logs", nil).obj(t)["detail"]; got != `worker 1 of job "`+id+`" not found: the job has 1 worker, index 0` {
		t.Errorf("worker 1 of a job of one: %q", got)
	}
	now := time.Now()
	for _, c := range []struct {
		set  bson.M
		want string
	}{
		{bson.M{"status": "submitted"}, `worker 0 of job "` + id + `" has no log: the job is submitted, so none of its instances has started`},
		{bson.M{"status": "pending"}, `worker 0 of job "` + id + `" has no log: the job is pending, so none of its instances has started`},
		{bson.M{"status": "admitted", "admitted_at": now}, `worker 0 of job "` + id + `" has no log: the job is admitted and its instances are starting; ask again once it runs`},
		{bson.M{"status": "cancelled", "admitted_at": nil}, `worker 0 of job "` + id + `" has no log: the job was cancelled before it was admitted, so no instance ran`},
		{bson.M{"status": "pending", "attempt": 2}, `logs of ` + id + `/worker/0 not found`},
		{bson.M{"status": "failed", "attempt": 1, "admitted_at": now}, `logs of ` + id + `/worker/0 not found`},
	} {
		if _, err := e.db.Collection("jobs").UpdateOne(context.Background(), bson.M{"_id": id}, bson.M{"$set": c.set}); err != nil {
			t.Fatal(err)
		}
		if got := e.must(http.StatusNotFound, http.MethodGet, v1+"/jobs/"+id+"/instances/worker/0/logs", nil).obj(t)["detail"]; got != c.want {
			t.Errorf("%v: detail %q, want %q", c.set, got, c.want)
		}
	}
}

// A replica slot with no log yet says why, as a job's instance does: it
// is pending (waiting for its queue's capacity) or starting. Before, the
// launcher's "logs of dep-…-r0/replica/0 not found" came through, naming
// no replica and no reason. A replica that ran keeps the launcher's 404.
func TestLogsOfAReplicaThatDidNotRun(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", queueBody("rq"))
	app := e.create("/applications", appBody("rapp", "1"))
	id := e.create("/deployments", deploymentBody("waits", app.str("id"), "rq")).str("id")
	e.launcherAnswers(t, "rm.launcher.logs."+id+"-r0.replica.*", "404", "logs of "+id+"-r0/replica/0")
	for _, c := range []struct {
		replicas bson.A
		want     string
	}{
		{bson.A{}, `replica 0 of deployment "waits" has no log: it is pending, waiting for capacity on the deployment's queue (its Admitted condition says why), so it has not started`},
		{bson.A{bson.M{"slot": 0, "state": "pending", "restarts": 0}}, `replica 0 of deployment "waits" has no log: it is pending, waiting for capacity on the deployment's queue (its Admitted condition says why), so it has not started`},
		{bson.A{bson.M{"slot": 0, "state": "starting", "restarts": 0}}, `replica 0 of deployment "waits" has no log: it is starting; ask again once it runs`},
		{bson.A{bson.M{"slot": 0, "state": "running", "restarts": 0}}, `logs of ` + id + `-r0/replica/0 not found`},
	} {
		if _, err := e.db.Collection("deployments").UpdateOne(context.Background(), bson.M{"_id": id}, bson.M{"$set": bson.M{"status.replicas": c.replicas}}); err != nil {
			t.Fatal(err)
		}
		if got := e.must(http.StatusNotFound, http.MethodGet, v1+"/deployments/waits/replicas/0/logs", nil).obj(t)["detail"]; got != c.want {
			t.Errorf("%v: detail %q, want %q", c.replicas, got, c.want)
		}
	}
}

// launcherAnswers answers the log requests on subject as a launcher that
// cannot serve them does, with status and the error what, until the test
// ends.
func (e *env) launcherAnswers(t *testing.T, subject, status, what string) {
	t.Helper()
	sub, err := e.js.Conn().Subscribe(subject, func(m *nats.Msg) {
		reply := nats.NewMsg(m.Reply)
		reply.Header.Set("Rm-Logs-Status", status)
		reply.Header.Set("Rm-Logs-Eof", "true")
		reply.Header.Set("Rm-Logs-Error", what)
		_ = m.RespondMsg(reply)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
}
