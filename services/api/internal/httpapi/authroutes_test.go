package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/api/internal/problem"
)

// authEnv is the API with auth on, a queue secret whose access lists name
// alice alone, a queue Default open to all, an application, and a job and
// a job array of the admin's on secret.
type authEnv struct {
	*artifactEnv
	is                        *testIssuer
	admin, alice, bob, viewer string // Authorization headers
	secretJob, secretArray    string
}

func newAuthEnv(t *testing.T) *authEnv {
	is := newTestIssuer(t)
	e := &authEnv{artifactEnv: newEnv(t, is.authenticator()), is: is}
	e.admin, e.alice = is.bearer("root", "rm-admin"), is.bearer("alice", "rm-user")
	e.bob, e.viewer = is.bearer("bob", "rm-user"), is.bearer("vic", "rm-viewer")
	e.json(http.StatusCreated, http.MethodPost, "/queues", map[string]any{"name": "secret",
		"access": map[string]any{"read": []string{"user:alice"}, "submit": []string{"user:alice"}}}, nil, "Authorization", e.admin)
	e.json(http.StatusCreated, http.MethodPost, "/queues", map[string]any{"name": "Default"}, nil, "Authorization", e.admin)
	e.json(http.StatusCreated, http.MethodPost, "/applications", map[string]any{"name": "sim", "version": "1.0", "image": "registry.example/sim:1.0"}, nil, "Authorization", e.admin)
	var j events.Job
	e.json(http.StatusCreated, http.MethodPost, "/jobs", e.jobBody("secret"), &j, "Authorization", e.admin)
	e.secretJob = j.ID
	var arr events.JobArray
	e.json(http.StatusCreated, http.MethodPost, "/job-arrays", map[string]any{"job": e.jobBody("secret"), "count": 2}, &arr, "Authorization", e.admin)
	e.secretArray = arr.ID
	return e
}

func (e *authEnv) jobBody(queue string) map[string]any {
	return map[string]any{"queue_id": queue, "application": map[string]any{"name": "sim", "version": "1.0"}, "worker_instances": 1}
}

// problemOf decodes a problem answer.
func problemOf(t *testing.T, a answer) problem.Problem {
	t.Helper()
	var p problem.Problem
	if ct := a.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s: Content-Type %q, want application/problem+json", a, ct)
	}
	if err := json.Unmarshal(a.body, &p); err != nil {
		t.Fatalf("decode %s: %v", a, err)
	}
	return p
}

// A method a path does not take is a 405 with Allow, whoever asks: the
// role the method would need on a route that does not exist is no answer.
// A 403 for a role names the route as the documents write it ({id}).
func TestMethodNotAllowedWhateverTheRole(t *testing.T) {
	e := newAuthEnv(t)
	for _, c := range []struct{ method, path, allow string }{
		{http.MethodPut, "/jobs/x", "OPTIONS, DELETE, GET, HEAD"},
		{http.MethodPatch, "/jobs/x", "OPTIONS, DELETE, GET, HEAD"},
		{http.MethodPost, "/queues/Default", "OPTIONS, DELETE, GET, HEAD, PATCH, PUT"},
	} {
		for who, h := range map[string]string{"viewer": e.viewer, "user": e.bob, "admin": e.admin, "no token": ""} {
			var hdr []string
			if h != "" {
				hdr = []string{"Authorization", h}
			}
			a := e.do(c.method, c.path, nil, hdr...)
			if a.status != http.StatusMethodNotAllowed || !sameMethods(a.header.Get("Allow"), c.allow) {
				t.Errorf("%s %s as %s = %s (Allow %q), want 405 allowing %s", c.method, c.path, who, a, a.header.Get("Allow"), c.allow)
			}
		}
	}

	for _, c := range []struct{ method, path, route, role string }{
		{http.MethodPost, "/jobs/" + e.secretJob + "/cancel", "POST /api/resources/v1/jobs/{id}/cancel", "rm-user"},
		{http.MethodPost, "/queues", "POST /api/resources/v1/queues", "rm-admin"},
		{http.MethodDelete, "/queues/Default", "DELETE /api/resources/v1/queues/{queue_id}", "rm-admin"},
		{http.MethodPut, "/jobs/" + e.secretJob + "/artifacts/assets/a/b.txt", "PUT /api/resources/v1/jobs/{id}/artifacts/assets/{path}", "rm-admin"},
	} {
		a := e.do(c.method, c.path, strings.NewReader("{}"), "Authorization", e.viewer, "Content-Type", "application/json")
		if p := problemOf(t, a); a.status != http.StatusForbidden || !strings.HasPrefix(p.Detail, c.route+" needs role "+c.role) {
			t.Errorf("%s %s as viewer = %s, want 403 saying %q", c.method, c.path, a, c.route+" needs role "+c.role)
		}
	}
}

func sameMethods(a, b string) bool {
	set := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, x := range strings.Split(s, ",") {
			m[strings.TrimSpace(x)] = true
		}
		return m
	}
	sa, sb := set(a), set(b)
	if len(sa) != len(sb) {
		return false
	}
	for k := range sa {
		if !sb[k] {
			return false
		}
	}
	return true
}

// Every problem carries instance, the path asked for, whoever writes it
// (an echo middleware, huma's validation, a handler), and a refusal by a
// queue's access list names the queue by name, for reads as for
// submissions.
func TestProblemsCarryInstanceAndNameTheQueue(t *testing.T) {
	e := newAuthEnv(t)
	for _, c := range []struct {
		name, method, path string
		body               any
		who                string
		status             int
		says               string
	}{
		{"submit refused by access.submit", http.MethodPost, "/jobs", e.jobBody("secret"), e.bob, http.StatusForbidden,
			`queue secret's access.submit ["user:alice"] does not name bob`},
		{"array submit refused by access.submit", http.MethodPost, "/job-arrays", map[string]any{"job": e.jobBody("secret"), "count": 2}, e.bob, http.StatusForbidden,
			`queue secret's access.submit ["user:alice"] does not name bob`},
		{"job read refused by access.read", http.MethodGet, "/jobs/" + e.secretJob, nil, e.bob, http.StatusForbidden,
			`queue secret's access.read ["user:alice"] does not name bob`},
		{"job cancel refused by access.read", http.MethodPost, "/jobs/" + e.secretJob + "/cancel", nil, e.bob, http.StatusForbidden,
			`queue secret's access.read ["user:alice"] does not name bob`},
		{"array read refused by access.read", http.MethodGet, "/job-arrays/" + e.secretArray, nil, e.bob, http.StatusForbidden,
			`queue secret's access.read ["user:alice"] does not name bob`},
		{"array cancel refused by access.read", http.MethodPost, "/job-arrays/" + e.secretArray + "/cancel", nil, e.bob, http.StatusForbidden,
			`queue secret's access.read ["user:alice"] does not name bob`},
		{"array cancel of another's array", http.MethodPost, "/job-arrays/" + e.secretArray + "/cancel", nil, e.alice, http.StatusForbidden,
			"only its owner or rm-admin may cancel it"},
		{"unknown job", http.MethodGet, "/jobs/nonexistent-job", nil, e.admin, http.StatusNotFound, `job "nonexistent-job" not found`},
		{"unknown queue", http.MethodGet, "/queues/nonexistent", nil, e.admin, http.StatusNotFound, `queue "nonexistent" not found`},
		{"bad body", http.MethodPost, "/queues", map[string]any{"name": 1}, e.admin, http.StatusUnprocessableEntity, "name: expected string"},
		{"unknown query parameter", http.MethodGet, "/jobs?queue=Default", nil, e.admin, http.StatusUnprocessableEntity, "queue: no such query parameter"},
		{"no token", http.MethodGet, "/jobs", nil, "", http.StatusUnauthorized, "no bearer token"},
		{"no route", http.MethodPut, "/jobs/x", nil, e.viewer, http.StatusMethodNotAllowed, ""},
	} {
		var hdr []string
		if c.who != "" {
			hdr = []string{"Authorization", c.who}
		}
		var a answer
		if c.body != nil {
			raw, _ := json.Marshal(c.body)
			a = e.do(c.method, c.path, strings.NewReader(string(raw)), append(hdr, "Content-Type", "application/json")...)
		} else {
			a = e.do(c.method, c.path, nil, hdr...)
		}
		p := problemOf(t, a)
		want, _, _ := strings.Cut(BasePath+c.path, "?")
		if a.status != c.status || !strings.Contains(p.Detail, c.says) || p.Instance != want {
			t.Errorf("%s: %s %s = %s, want %d saying %q with instance %q", c.name, c.method, c.path, a, c.status, c.says, want)
		}
	}
	// Alice, whom the lists name, may read and submit.
	e.json(http.StatusOK, http.MethodGet, "/jobs/"+e.secretJob, nil, nil, "Authorization", e.alice)
	e.json(http.StatusOK, http.MethodGet, "/job-arrays/"+e.secretArray, nil, nil, "Authorization", e.alice)
	e.json(http.StatusCreated, http.MethodPost, "/jobs", e.jobBody("secret"), nil, "Authorization", e.alice)
}
