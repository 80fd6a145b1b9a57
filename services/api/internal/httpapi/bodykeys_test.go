package httpapi

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A field is named as the schema names it. A key that differs from one
// only in case is an unknown field (422 naming it, nothing written), also
// next to the field it imitates: encoding/json ignores case and keeps the
// later key, so {"priority": 1, "Priority": 2000000000} stored a priority
// the schema's maximum never saw, and {"name": "ok", "Name": "a b"} a name
// outside the name rule.
func TestFieldNamesAreCaseSensitive(t *testing.T) {
	e := newEnv(t, nil)
	e.json(http.StatusCreated, http.MethodPost, "/queues", map[string]any{"name": "Q", "maximum_allowed_worker_instances": 5}, nil)
	e.json(http.StatusCreated, http.MethodPost, "/applications", map[string]any{"name": "sim", "version": "1", "image": "registry.example/sim:1"}, nil)
	before := e.json(http.StatusOK, http.MethodGet, "/queues/Q", nil, nil).body
	cases := map[string]struct {
		method, path, body, field string
	}{
		"queue name beside name": {http.MethodPost, "/queues",
			`{"name": "ok", "Name": "a b"}`, "Name"},
		"queue limit beside limit": {http.MethodPost, "/queues",
			`{"name": "ok", "maximum_allowed_worker_instances": 5, "Maximum_Allowed_Worker_Instances": -7}`, "Maximum_Allowed_Worker_Instances"},
		"queue name alone": {http.MethodPost, "/queues",
			`{"NAME": "ok"}`, "NAME"},
		"replaced queue name beside name": {http.MethodPut, "/queues/Q",
			`{"name": "Q", "Name": "a b"}`, "Name"},
		"patched queue limit": {http.MethodPatch, "/queues/Q",
			`{"maximum_allowed_worker_instances": 6, "Maximum_Allowed_Worker_Instances": -7}`, "Maximum_Allowed_Worker_Instances"},
		"job priority beside priority": {http.MethodPost, "/jobs",
			`{"queue_id": "Q", "application": {"id": "sim:1"}, "worker_instances": 1, "priority": 1, "Priority": 2000000000}`, "Priority"},
		"job name beside name": {http.MethodPost, "/jobs",
			`{"name": "ok", "Name": "a/../b", "queue_id": "Q", "application": {"id": "sim:1"}, "worker_instances": 1}`, "Name"},
		"nested application id": {http.MethodPost, "/jobs",
			`{"queue_id": "Q", "application": {"id": "sim:1", "ID": "other"}, "worker_instances": 1}`, "application.ID"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			a := e.do(tc.method, tc.path, strings.NewReader(tc.body), "Content-Type", "application/json")
			if got := problemFields(t, a); a.status != http.StatusUnprocessableEntity || !strings.Contains(got, "|"+tc.field+"|") {
				t.Errorf("%s %s %s = %s, want a 422 naming %s", tc.method, tc.path, tc.body, a, tc.field)
			}
		})
	}
	for _, path := range []string{"/queues/ok", "/queues/a%20b"} {
		if a := e.do(http.MethodGet, path, nil); a.status != http.StatusNotFound {
			t.Errorf("GET %s = %s, want 404: nothing is created", path, a)
		}
	}
	if after := e.json(http.StatusOK, http.MethodGet, "/queues/Q", nil, nil).body; string(after) != string(before) {
		t.Errorf("queue Q changed:\nbefore %s\nafter  %s", before, after)
	}
	var jobs struct{ Items []any }
	if e.json(http.StatusOK, http.MethodGet, "/jobs", nil, &jobs); len(jobs.Items) != 0 {
		t.Errorf("GET /jobs = %d jobs, want none", len(jobs.Items))
	}
}

// A body of objects nested far deeper than any field goes answers its 400
// at once: the check for keys given twice made each key's field path, at
// the cost of its depth, and 100,000 nested objects (500 KB, under the
// body limit) held a request, and a CPU, for minutes.
func TestDeeplyNestedBodyAnswersAtOnce(t *testing.T) {
	e := newEnv(t, nil)
	const depth = 100000
	body := `{"name": "deep", "description": ` + strings.Repeat(`{"a": `, depth) + `1` + strings.Repeat(`}`, depth) + `}`
	for _, method := range []string{http.MethodPost, http.MethodPatch} {
		path := "/queues"
		if method == http.MethodPatch {
			e.json(http.StatusCreated, http.MethodPost, "/queues", map[string]any{"name": "deep"}, nil)
			path = "/queues/deep"
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		a := e.read(e.send(ctx, method, path, strings.NewReader(body), "Content-Type", "application/json"))
		cancel()
		if a.status != http.StatusBadRequest || !strings.Contains(string(a.body), "exceeded max depth") {
			t.Errorf("%s %s with %d nested objects = %s, want a 400 saying the body is nested too deep", method, path, depth, a)
		}
	}
}

// A JSON body sent compressed (Content-Encoding: gzip), which the API does
// not decode, is a 415 naming Content-Encoding, not a 400 calling the
// compressed bytes invalid UTF-8; identity is no compression.
func TestCompressedBodyIsRefusedSayingSo(t *testing.T) {
	e := newEnv(t, nil)
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	if _, err := w.Write([]byte(`{"name": "zipped"}`)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	a := e.do(http.MethodPost, "/queues", bytes.NewReader(gz.Bytes()), "Content-Type", "application/json", "Content-Encoding", "gzip")
	if got := problemFields(t, a); a.status != http.StatusUnsupportedMediaType || got != "|Content-Encoding|" || a.header.Get("Accept-Encoding") != "identity" {
		t.Errorf("POST /queues gzipped = %s (Accept-Encoding %q), want a 415 naming Content-Encoding, Accept-Encoding identity", a, a.header.Get("Accept-Encoding"))
	}
	if a := e.do(http.MethodGet, "/queues/zipped", nil); a.status != http.StatusNotFound {
		t.Errorf("GET /queues/zipped = %s, want 404", a)
	}
	e.json(http.StatusCreated, http.MethodPost, "/queues", map[string]any{"name": "plain"}, nil, "Content-Encoding", "identity")
}
