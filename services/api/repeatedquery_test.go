package api_test

import (
	"net/http"
	"strings"
	"testing"
)

// A query parameter that takes one value, given twice, is refused naming
// it; one that takes several (label) may repeat.
func TestRepeatedQueryParameter(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", queueBody("Default"))
	r := e.must(http.StatusUnprocessableEntity, http.MethodGet, v1+"/jobs?status=failed&status=succeeded", nil)
	if !strings.Contains(string(r.Body), `"field":"status"`) || !strings.Contains(string(r.Body), "given 2 times; it takes one value") {
		t.Errorf("repeated status: %s", r.Body)
	}
	e.must(http.StatusOK, http.MethodGet, v1+"/jobs?label=a=1&label=b=2", nil)
	e.must(http.StatusOK, http.MethodGet, v1+"/jobs?status=failed", nil)
}

// A query parameter the operation does not take is refused naming it and
// what the operation takes, and nothing is done: a misspelt filter
// (?queue= for ?queue_id=) would otherwise list every job, and a DELETE act
// without the condition meant.
func TestUnknownQueryParameter(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", queueBody("Default"))
	e.must(http.StatusCreated, http.MethodPost, v1+"/jobs", jobBody("Default", 1))
	for _, c := range []struct{ method, path, param, takes string }{
		{http.MethodGet, "/jobs?queue=Default", "queue", "it takes queue_id, array_id, status, label, owner, limit, cursor"},
		{http.MethodGet, "/queues/Default?verbose=1", "verbose", "it takes none"},
		{http.MethodDelete, "/queues/Default?force=true", "force", "it takes none"},
	} {
		r := e.must(http.StatusUnprocessableEntity, c.method, v1+c.path, nil)
		assertProblem(t, r, c.param)
		if !strings.Contains(string(r.Body), "no such query parameter here; "+c.takes) {
			t.Errorf("%s %s: %s does not say what the operation takes (%s)", c.method, c.path, r.Body, c.takes)
		}
	}
	if e.count("queues") == 0 {
		t.Error("DELETE with an unknown query parameter deleted the queue")
	}
	e.must(http.StatusOK, http.MethodGet, v1+"/jobs?queue_id=Default&limit=5", nil)
	e.must(http.StatusOK, http.MethodGet, v1+"/queues/Default", nil)
}
