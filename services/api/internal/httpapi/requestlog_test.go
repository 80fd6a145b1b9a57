package httpapi

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events/eventstest"
)

// requestLines are the lines of the JSON log whose msg is "request".
func requestLines(t *testing.T, log *eventstest.SyncBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range log.JSONLines(t) {
		if l["msg"] == "request" {
			out = append(out, l)
		}
	}
	return out
}

// At level debug the API logs one line per request, once it is answered: a
// stream when it ends, not per event; with the X-Request-Id the answer
// carries; and neither the bearer token nor a query that holds one.
func TestDebugLogsOneLinePerRequest(t *testing.T) {
	var log eventstest.SyncBuffer
	is := newTestIssuer(t)
	e := newEnv(t, is.authenticator(), func(o *Options) {
		o.Logger = slog.New(slog.NewJSONHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	admin := is.bearer("root", "rm-admin")
	token := strings.TrimPrefix(admin, "Bearer ")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream := e.send(ctx, http.MethodGet, "/events", nil, "Authorization", admin)
	if stream.StatusCode != http.StatusOK {
		t.Fatalf("GET /events = %d", stream.StatusCode)
	}
	ids := map[string]int{stream.Header.Get("X-Request-Id"): http.StatusOK}
	for i := range 3 {
		a := e.json(http.StatusCreated, http.MethodPost, "/queues", map[string]any{"name": fmt.Sprintf("q%d", i)}, nil, "Authorization", admin)
		ids[a.header.Get("X-Request-Id")] = http.StatusCreated
	}
	sc := bufio.NewScanner(stream.Body)
	seen := 0
	for seen < 3 && sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data:") {
			seen++
		}
	}
	if seen < 3 {
		t.Fatalf("the stream sent %d events of 3: %v", seen, sc.Err())
	}
	cancel()
	stream.Body.Close()

	secret := e.do(http.MethodGet, "/queues?access_token="+token, nil, "Authorization", admin)
	ids[secret.header.Get("X-Request-Id")] = secret.status
	got := e.do(http.MethodGet, "/queues/q0", nil, "Authorization", admin, "X-Request-Id", "walkthrough-7")
	if rid := got.header.Get("X-Request-Id"); got.status != http.StatusOK || rid != "walkthrough-7" {
		t.Fatalf("GET /queues/q0 with X-Request-Id walkthrough-7 = %s, X-Request-Id %q", got, rid)
	}
	ids["walkthrough-7"] = http.StatusOK
	forged := e.do(http.MethodGet, "/queues/q0", nil, "Authorization", admin, "X-Request-Id", `not "an" id`)
	rid := forged.header.Get("X-Request-Id")
	if rid == "" || strings.ContainsAny(rid, `" `) {
		t.Fatalf("an X-Request-Id that is no id is answered with X-Request-Id %q", rid)
	}
	ids[rid] = http.StatusOK
	if len(ids) != 7 {
		t.Fatalf("7 requests answered %d distinct X-Request-Ids: %v", len(ids), ids)
	}

	// The stream's line is written once its handler has seen the client go.
	var lines []map[string]any
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if lines = requestLines(t, &log); len(lines) >= len(ids) || time.Now().After(deadline) {
			break
		}
	}
	if len(lines) != len(ids) {
		t.Fatalf("%d requests logged %d lines:\n%s", len(ids), len(lines), log.String())
	}
	for _, l := range lines {
		id, _ := l["request_id"].(string)
		if status, ok := ids[id]; !ok || l["status"] != float64(status) || l["level"] != "DEBUG" {
			t.Errorf("line %v: want level DEBUG, the status %d of the request %q", l, status, id)
		}
		delete(ids, id)
		if path, _ := l["path"].(string); strings.Contains(path, "?") {
			t.Errorf("line %v logs a query", l)
		}
	}
	if strings.Contains(log.String(), token) || strings.Contains(log.String(), "access_token") {
		t.Errorf("the log holds the bearer token:\n%s", log.String())
	}
	want := map[string]any{"level": "DEBUG", "msg": "request", "method": "GET", "route": BasePath + "/queues/:queue_id",
		"path": BasePath + "/queues/q0", "status": float64(200), "bytes": float64(len(got.body)), "request_id": "walkthrough-7"}
	for _, l := range lines {
		if l["request_id"] != "walkthrough-7" {
			continue
		}
		for k, v := range want {
			if l[k] != v {
				t.Errorf("GET /queues/q0 logged %s = %v, want %v (line %v)", k, l[k], v, l)
			}
		}
		if took, _ := l["took"].(string); took == "" {
			t.Errorf("GET /queues/q0 logged no took: %v", l)
		}
	}
	for _, l := range lines {
		if l["route"] == BasePath+"/events" && (l["bytes"] == float64(0) || l["method"] != "GET") {
			t.Errorf("the stream's line %v: want GET and the bytes of its 3 events", l)
		}
	}
}
