package contracttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// exchange is one recorded request and its answer.
type exchange struct {
	method, path string
	reqHeader    http.Header
	reqBody      []byte
	status       int
	header       http.Header
	body         []byte
	// offSchema marks a request the test makes against the document on
	// purpose (bad JSON, a wrong type, an undocumented media type): the
	// validator must refuse it, and the server must answer 4xx.
	offSchema bool
}

// session records every exchange of a scripted use of the API.
type session struct {
	t    *testing.T
	base string // server root + servers entry
	ex   []exchange
	// releaseExports starts the scenario-export service (startAPIHeld);
	// nil if it runs already.
	releaseExports func()
}

type opt func(*http.Request, *exchange)

func header(k, v string) opt { return func(r *http.Request, _ *exchange) { r.Header.Set(k, v) } }

// offSchema marks the request as deliberately outside the document.
func offSchema() opt { return func(_ *http.Request, e *exchange) { e.offSchema = true } }

// streamFor reads a streamed answer for d, then hangs up.
func streamFor(d time.Duration) opt {
	return func(r *http.Request, _ *exchange) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		*r = *r.WithContext(ctx)
		time.AfterFunc(d+time.Second, cancel)
	}
}

// retried is a write to a resource that another service writes too (the
// launcher records a deployment's status): a 412 "changed concurrently" is
// recorded and the write sent again.
func (s *session) retried(method, path string, body any, want int, opts ...opt) exchange {
	s.t.Helper()
	for range 20 {
		e := s.send(method, path, body, opts...)
		if e.status == http.StatusPreconditionFailed && strings.Contains(string(e.body), "changed concurrently") {
			continue
		}
		if e.status != want {
			s.t.Fatalf("%s %s = %d %s, want %d", method, path, e.status, e.body, want)
		}
		return e
	}
	s.t.Fatalf("%s %s: changed concurrently 20 times", method, path)
	return exchange{}
}

// do sends body (JSON-encoded unless []byte or string), records the
// exchange and fails the test unless the answer is want.
func (s *session) do(method, path string, body any, want int, opts ...opt) exchange {
	s.t.Helper()
	e := s.send(method, path, body, opts...)
	if e.status != want {
		s.t.Fatalf("%s %s = %d %s, want %d", method, path, e.status, e.body, want)
	}
	return e
}

// send sends body and records the exchange.
func (s *session) send(method, path string, body any, opts ...opt) exchange {
	s.t.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
	case string:
		raw = []byte(b)
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			s.t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, s.base+path, bytes.NewReader(raw))
	if err != nil {
		s.t.Fatal(err)
	}
	if body != nil {
		ct := "application/json"
		if method == http.MethodPatch {
			ct = "application/merge-patch+json"
		}
		req.Header.Set("Content-Type", ct)
	}
	e := exchange{method: method, path: path, reqBody: raw}
	for _, o := range opts {
		o(req, &e)
	}
	e.reqHeader = req.Header.Clone()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	e.status, e.header = res.StatusCode, res.Header
	e.body, err = io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		s.t.Fatalf("%s %s: read: %v", method, path, err)
	}
	s.ex = append(s.ex, e)
	return e
}

// eventually sends a request, recorded, every 100 ms until the answer is
// want (a replica's log is there once the replica has started).
func (s *session) eventually(method, path string, want int) exchange {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		e := s.send(method, path, nil)
		if e.status == want {
			return e
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s %s = %d %s after 60s, want %d", method, path, e.status, e.body, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitFor polls a resource, unrecorded, until its status is want.
func (s *session) waitFor(path, want string) {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	status := ""
	for time.Now().Before(deadline) {
		res, err := http.Get(s.base + path)
		if err != nil {
			s.t.Fatal(err)
		}
		var e struct {
			Status string `json:"status"`
		}
		err = json.NewDecoder(res.Body).Decode(&e)
		res.Body.Close()
		if status = e.Status; err == nil && status == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("%s: status %q after 60s, want %s", path, status, want)
}

func (s *session) id(e exchange) string {
	var o struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(e.body, &o); err != nil || o.ID == "" {
		s.t.Fatalf("%s %s: no id in %s", e.method, e.path, e.body)
	}
	return o.ID
}

// script uses every operation of the API, on its happy path and on error paths.
func script(s *session) {
	const bad = `{"name": "x",, }`
	// Plugins
	s.do("POST", "/plugins", map[string]any{"name": "sim", "type": "simulated", "config": map[string]any{"run_seconds": 1}}, 201)
	s.do("POST", "/plugins", map[string]any{"name": "sim2", "type": "simulated", "config": map[string]any{"run_seconds": -1}}, 422, offSchema())
	s.do("POST", "/plugins", map[string]any{"name": "sim", "type": "simulated"}, 409)
	s.do("GET", "/plugins?type=simulated", nil, 200)
	s.do("GET", "/plugins?cursor=garbage", nil, 400)
	pl := s.do("GET", "/plugins/sim", nil, 200)
	s.do("GET", "/plugins/plg-nothing", nil, 404)
	s.do("PUT", "/plugins/sim", map[string]any{"name": "sim", "type": "simulated", "config": map[string]any{"run_seconds": 2}}, 200)
	s.do("PUT", "/plugins/sim", map[string]any{"name": "sim", "type": "simulated"}, 412, header("If-Match", `"999"`))
	s.do("PATCH", "/plugins/sim", map[string]any{"is_default": nil, "config": map[string]any{"failure_rate": 0}}, 200)
	s.do("PATCH", "/plugins/sim", map[string]any{"name": 5}, 422, offSchema())
	s.do("POST", "/plugins", map[string]any{"name": "plg-x", "type": "local", "config": map[string]any{"work_dir": "/tmp"}}, 201)
	s.do("GET", "/plugins/plg-x", nil, 200)
	s.do("DELETE", "/plugins/plg-x", nil, 412, header("If-Match", `"999"`))
	s.do("DELETE", "/plugins/plg-x", nil, 204)
	_ = pl

	// Queues
	s.do("POST", "/queues", map[string]any{"name": "Default", "plugin_id": "sim", "maximum_allowed_worker_instances": 10,
		"resource_limits": map[string]any{"cpu": "500m", "memory": "1Gi"}}, 201)
	s.do("POST", "/queues", map[string]any{"name": "Default"}, 409)
	s.do("POST", "/queues", bad, 400, offSchema())
	s.do("POST", "/queues", map[string]any{"name": "x", "colour": "red"}, 422, offSchema())
	s.do("POST", "/queues", map[string]any{"name": "x", "resource_limits": map[string]any{"cpu": "lots"}}, 422, offSchema())
	s.do("POST", "/queues", `{"name":"x"}`, 415, header("Content-Type", "text/plain"), offSchema())
	s.do("POST", "/queues", `{"name":"`+strings.Repeat("x", 3<<20)+`"}`, 413, offSchema())
	s.do("POST", "/queues", map[string]any{"name": "q-lookalike"}, 201)
	s.do("GET", "/queues/q-lookalike", nil, 200)
	s.do("GET", "/queues?limit=2", nil, 200)
	s.do("GET", "/queues?limit=0", nil, 422, offSchema())
	s.do("GET", "/queues/Default", nil, 200)
	s.do("GET", "/queues/nothing", nil, 404)
	s.do("PUT", "/queues/q-lookalike", map[string]any{"name": "q-lookalike", "description": "looks like an id"}, 200)
	s.do("PUT", "/queues/q-lookalike", map[string]any{"name": "Default"}, 409)
	s.do("PATCH", "/queues/Default", map[string]any{"maximum_allowed_worker_instances": nil, "resource_limits": map[string]any{"cpu": nil}}, 200)
	s.do("PATCH", "/queues/Default", map[string]any{"maximum_allowed_worker_instances": 10}, 200, header("Content-Type", "application/json"))
	s.do("PATCH", "/queues/Default", "{}", 415, header("Content-Type", "text/plain"), offSchema())
	s.do("PATCH", "/queues/Default", map[string]any{}, 412, header("If-Match", `"1"`))
	s.do("DELETE", "/queues/q-lookalike", nil, 204)
	s.do("DELETE", "/queues/simulation-controller-queue", nil, 409)

	// Who am I (auth is off here: an administrator on every queue)
	s.do("GET", "/whoami", nil, 200)
	s.do("GET", "/whoami?queue=Default", nil, 200)
	s.do("GET", "/whoami?queue=nothing", nil, 404)
	s.do("GET", "/whoami?queue="+strings.Repeat("q", 64), nil, 422, offSchema())

	// Applications and app-runtime-configs
	app := s.id(s.do("POST", "/applications", map[string]any{"name": "sim", "version": "1.0", "image": "registry.example/sim:1.0",
		"command": []string{"/bin/sh", "-c", "echo hi"}}, 201))
	s.do("POST", "/applications", map[string]any{"name": "sim", "version": "1.0"}, 409)
	s.do("POST", "/applications", map[string]any{"name": "sh", "version": "1", "image": "/bin/sh"}, 422, offSchema())
	s.do("GET", "/applications?name=sim", nil, 200)
	s.do("GET", "/applications/"+app, nil, 200)
	s.do("GET", "/applications/sim", nil, 200)
	s.do("GET", "/applications/app-nothing", nil, 404)
	s.do("PUT", "/applications/"+app, map[string]any{"name": "sim", "version": "1.0", "image": "registry.example/sim:1.0",
		"command": []string{"/bin/sh", "-c", "echo hi"}, "description": "a simulator"}, 200)
	s.do("PATCH", "/applications/"+app, map[string]any{"description": nil, "args": []string{"--seed", "42"}}, 200)
	s.do("PATCH", "/applications/"+app, map[string]any{"version": nil}, 422, offSchema()) // required
	s.do("PUT", "/applications/"+app, map[string]any{"name": "sim"}, 422, offSchema())
	s.do("GET", "/applications?cursor=app-", nil, 400)
	arc := "/app-runtime-config/Default/application/" + app
	s.do("POST", arc, map[string]any{"image": "registry.example/sim:gpu", "working_directory": "/work"}, 201)
	s.do("POST", arc, map[string]any{"image": "registry.example/sim:gpu", "working_directory": "/work"}, 409)
	s.do("POST", "/app-runtime-config/nothing/application/"+app, map[string]any{"image": "i", "working_directory": "/w"}, 404)
	s.do("GET", "/app-runtime-config?queue_id=Default", nil, 200)
	s.do("GET", arc, nil, 200)
	s.do("PUT", arc, map[string]any{"image": "registry.example/sim:gpu", "working_directory": "/work", "args": []string{"-v"}}, 200)
	s.do("PATCH", arc, map[string]any{"args": nil, "environment_variables": map[string]any{"A": "1"}}, 200)
	s.do("PATCH", arc, map[string]any{"working_directory": nil}, 422, offSchema()) // required: not nullable
	s.do("PUT", arc, map[string]any{"image": "registry.example/sim:gpu"}, 422, offSchema())
	s.do("GET", "/app-runtime-config/Default/application/app-nothing", nil, 404)
	s.do("GET", "/app-runtime-config?limit=1001", nil, 422, offSchema())

	// Deployments
	s.do("POST", "/deployments", map[string]any{"name": "viz", "application_id": app, "queue_id": "Default", "replicas": 1}, 201)
	s.do("POST", "/deployments", map[string]any{"name": "viz2", "application_id": app, "queue_id": "Default", "replicas": -1}, 422, offSchema())
	s.do("GET", "/deployments", nil, 200)
	s.do("GET", "/deployments?cursor=q-01M8NDNQQ35WAK040FG0Z85YV9", nil, 400) // another kind's id
	s.do("GET", "/deployments/viz", nil, 200)
	s.do("GET", "/deployments/nothing", nil, 404)
	s.eventually("GET", "/deployments/viz/replicas/0/logs", 200)
	s.do("GET", "/deployments/viz/replicas/0/logs?offset=2", nil, 200)
	s.do("GET", "/deployments/viz/replicas/0/logs?tail=1", nil, 200)
	s.do("GET", "/deployments/viz/replicas/3/logs", nil, 404)
	s.do("GET", "/deployments/viz/replicas/-1/logs", nil, 422, offSchema())
	s.retried("PUT", "/deployments/viz", map[string]any{"name": "viz", "application_id": app, "queue_id": "Default", "replicas": 2}, 200)
	s.retried("PATCH", "/deployments/viz", map[string]any{"environment_variables": nil, "replicas": 0}, 200)
	s.do("PATCH", "/deployments/viz", map[string]any{"replicas": "two"}, 422, offSchema())
	s.do("PUT", "/deployments/viz", map[string]any{"name": "viz", "application_id": app, "queue_id": "nothing", "replicas": 2}, 422)
	s.do("DELETE", "/deployments/viz", nil, 412, header("If-Match", `"1"`))
	s.retried("DELETE", "/deployments/viz", nil, 204)

	// Jobs
	// It runs (simulated workers, for 10 minutes) until it is cancelled below.
	job := s.id(s.do("POST", "/jobs", map[string]any{"queue_id": "Default", "application": map[string]any{"id": app},
		"worker_instances": 2, "labels": map[string]any{"team": "adas"}, "environment_variables": map[string]any{"RM_SIM_RUN_SECONDS": "600"}}, 201))
	s.waitFor("/jobs/"+job, "running")
	s.do("GET", "/jobs/"+job+"/instances/worker/0/logs", nil, 200)
	s.do("GET", "/jobs/"+job+"/instances/worker/0/logs?offset=3", nil, 200)
	s.do("GET", "/jobs/"+job+"/instances/worker/0/logs?offset=-1", nil, 422, offSchema())
	s.do("GET", "/jobs/"+job+"/instances/worker/0/logs?tail=2", nil, 200)
	s.do("GET", "/jobs/"+job+"/instances/worker/0/logs?offset=1&tail=2", nil, 422)
	s.do("GET", "/jobs/"+job+"/instances/worker/0/logs?offset=0&tail=2", nil, 422)
	s.do("GET", "/jobs/"+job+"/instances/worker/0/logs?tail=0", nil, 422, offSchema())
	s.do("POST", "/jobs", map[string]any{"queue_id": "Default", "application": map[string]any{"id": app}, "worker_instances": 11}, 422)
	s.do("POST", "/jobs", map[string]any{"application": map[string]any{"id": app}, "worker_instances": 1}, 422, offSchema())
	s.do("GET", "/jobs?label=team=adas&label=site=x", nil, 200)
	s.do("POST", "/jobs", map[string]any{"queue_id": "Default", "application": map[string]any{"id": app}, "worker_instances": 1,
		"command": []string{"/opt/sim/run"}, "args": []string{"--seed", "42"}, "labels": map[string]any{"example.com/team": "adas"}}, 201)
	s.do("POST", "/jobs", map[string]any{"queue_id": "Default", "application": map[string]any{"id": app}, "worker_instances": 1,
		"args": []string{"a\x00b"}}, 422)
	s.do("GET", "/jobs?owner=nobody&label=example.com/team=adas", nil, 200)
	s.do("GET", "/jobs/"+job+"/events?limit=2", nil, 200)
	s.do("GET", "/jobs/"+job+"/events?cursor=garbage", nil, 400)
	s.do("GET", "/jobs/job-nothing/events", nil, 404)
	s.do("GET", "/jobs?cursor=garbage", nil, 400)
	s.do("GET", "/jobs?status=lost", nil, 422, offSchema())
	s.do("GET", "/queues/Default/jobs?status=submitted", nil, 200)
	s.do("GET", "/queues/nothing/jobs", nil, 404)
	// Job arrays (they wait behind nothing: one at a time, cancelled below) and the pending list
	arrayJob := map[string]any{"queue_id": "Default", "application": map[string]any{"id": app}, "worker_instances": 1,
		"environment_variables": map[string]any{"RM_SIM_RUN_SECONDS": "600"}}
	arr := s.id(s.do("POST", "/job-arrays", map[string]any{"job": arrayJob, "count": 3, "max_parallel": 1}, 201))
	s.do("POST", "/job-arrays", map[string]any{"job": arrayJob, "count": 0}, 422, offSchema())
	s.do("GET", "/job-arrays/"+arr, nil, 200)
	s.do("GET", "/job-arrays/arr-nothing", nil, 404)
	s.do("GET", "/job-arrays?limit=1", nil, 200)
	s.do("GET", "/job-arrays?cursor=garbage", nil, 400)
	s.do("GET", "/jobs?array_id="+arr, nil, 200)
	s.do("GET", "/queues/Default/pending", nil, 200)
	s.do("GET", "/queues/nothing/pending", nil, 404)
	s.do("POST", "/job-arrays/"+arr+"/cancel", nil, 202)
	s.do("POST", "/job-arrays/arr-nothing/cancel", nil, 404)
	s.do("GET", "/jobs/"+job, nil, 200)
	s.do("GET", "/jobs/"+job+"/instances?role=worker&limit=1", nil, 200)
	s.do("GET", "/jobs/"+job+"/instances?cursor=garbage", nil, 400)
	s.do("GET", "/jobs/job-nothing", nil, 404)
	s.do("PUT", "/jobs/"+job+"/artifacts/scenarios/s-001/scenario.xosc", "<xosc/>", 201, header("Content-Type", "application/octet-stream"))
	s.do("PUT", "/jobs/"+job+"/artifacts/assets/road.xodr?declaration=road-network", "<xodr/>", 201, header("Content-Type", "application/octet-stream"))
	s.do("PUT", "/jobs/job-nothing/artifacts/assets/road.xodr", "<xodr/>", 404, header("Content-Type", "application/octet-stream"))
	s.do("PUT", "/jobs/job-nothing/artifacts/scenarios/s-001/scenario.xosc", "<xosc/>", 404, header("Content-Type", "application/octet-stream"))
	s.do("GET", "/jobs/"+job+"/artifacts", nil, 200)
	s.do("GET", "/jobs/job-nothing/artifacts", nil, 404)
	s.do("GET", "/jobs/"+job+"/artifacts/scenarios/s-001/scenario.xosc", nil, 200)
	s.do("GET", "/jobs/"+job+"/artifacts/scenarios/s-002/scenario.xosc", nil, 404)
	s.do("GET", "/jobs/"+job+"/artifacts/assets/road.xodr?declaration=road-network", nil, 200)
	s.do("GET", "/jobs/"+job+"/artifacts/assets/road.xodr", nil, 404)
	exp := s.id(s.do("POST", "/jobs/"+job+"/scenario-exports", map[string]any{"samples": []string{"s-001"}}, 202))
	s.do("POST", "/jobs/"+job+"/scenario-exports", map[string]any{"samples": []string{"s-999"}}, 422)
	s.do("GET", "/scenario-exports/"+exp, nil, 200)
	s.do("GET", "/scenario-exports/exp-nothing", nil, 404)
	s.do("GET", "/jobs/"+job+"/scenario-exports", nil, 200)
	s.do("GET", "/jobs/job-nothing/scenario-exports", nil, 404)
	s.do("GET", "/scenario-exports/"+exp+"/download", nil, 409) // not ready yet
	if s.releaseExports != nil {
		s.releaseExports()
	}
	s.waitFor("/scenario-exports/"+exp, "ready")
	s.do("GET", "/scenario-exports/"+exp+"/download", nil, 200)
	s.do("DELETE", "/scenario-exports/"+exp, nil, 204)
	s.do("DELETE", "/scenario-exports/"+exp, nil, 404)
	s.do("GET", "/jobs/"+job+"/instances/worker/7/logs", nil, 404)
	s.do("GET", "/jobs/"+job+"/instances/gardener/0/logs", nil, 422, offSchema())
	s.do("DELETE", "/jobs/"+job+"/post-controller", nil, 409)
	s.do("POST", "/jobs/"+job+"/post-controller", nil, 202)
	s.do("POST", "/jobs/job-nothing/post-controller", nil, 404)
	s.do("DELETE", "/jobs/"+job+"/post-controller", nil, 412, header("If-Match", `"999"`))
	s.do("DELETE", "/jobs/"+job+"/post-controller", nil, 202)
	s.do("POST", "/jobs/"+job+"/cancel", nil, 202)
	s.do("POST", "/jobs/job-nothing/cancel", nil, 404)
	s.do("POST", "/jobs/"+job+"/cleanup", nil, 202)
	s.do("POST", "/jobs/job-nothing/cleanup", nil, 404)
	s.do("DELETE", "/jobs/"+job, nil, 412, header("If-Match", `"999"`))
	s.do("DELETE", "/jobs/"+job, nil, 204) // (no If-Match: the launcher changes the job meanwhile)
	s.do("DELETE", "/jobs/"+job, nil, 404)
	s.do("DELETE", "/applications/"+app, nil, 409) // the app-runtime-config still uses it
	s.do("DELETE", arc, nil, 412, header("If-Match", `"999"`))
	s.do("DELETE", arc, nil, 204)
	s.do("DELETE", "/applications/"+app, nil, 204)

	// Events
	s.do("GET", "/events?type=rm.queue.created", nil, 200, header("Last-Event-ID", "0"), streamFor(500*time.Millisecond))
	s.do("GET", "/events", nil, 416, header("Last-Event-ID", "999999"))
	s.do("GET", "/events?type=queue", nil, 422)
	s.do("GET", "/events?job_id=garbage", nil, 422) // a mistyped id would stream nothing, forever
}

// TestValidatorAgreesWithServer runs kin-openapi's openapi3filter over a
// recorded session that uses every operation, on happy and error paths:
// every response matches the document, every request the test means to be
// valid passes, every request it means to be off the document is refused,
// and 0 exchanges disagree.
func TestValidatorAgreesWithServer(t *testing.T) {
	ctx := context.Background()
	root, releaseExports := startAPIHeld(t)
	s := &session{t: t, base: baseURL(t, root), releaseExports: releaseExports}
	script(s)

	openapi3filter.RegisterBodyDecoder("text/event-stream", func(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
		b, err := io.ReadAll(body)
		return string(b), err
	})
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromURI(mustURL(t, root+"/api/resources/v1/openapi.json"))
	if err != nil {
		t.Fatalf("load the served document: %v", err)
	}
	if err := doc.Validate(ctx); err != nil {
		t.Fatalf("the served document is not valid OpenAPI %s: %v", doc.OpenAPI, err)
	}
	// The servers entry is relative to where the document is served.
	doc.Servers = openapi3.Servers{{URL: s.base}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}

	covered := map[string][]int{}
	mismatches := 0
	for _, e := range s.ex {
		req, _ := http.NewRequest(e.method, s.base+e.path, bytes.NewReader(e.reqBody))
		req.Header = e.reqHeader
		route, params, err := router.FindRoute(req)
		if err != nil {
			mismatches++
			t.Errorf("%s %s: no operation of the document: %v", e.method, e.path, err)
			continue
		}
		covered[route.Operation.OperationID] = append(covered[route.Operation.OperationID], e.status)
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true, IncludeResponseStatus: true}}
		reqErr := openapi3filter.ValidateRequest(ctx, in)
		switch {
		case e.offSchema && reqErr == nil:
			mismatches++
			t.Errorf("%s %s (%d): the validator accepts a request that is off the document: %s", e.method, e.path, e.status, trim(e.reqBody))
		case !e.offSchema && reqErr != nil:
			mismatches++
			t.Errorf("%s %s (%d): the validator refuses a valid request: %v", e.method, e.path, e.status, reqErr)
		case e.offSchema && e.status < 400:
			mismatches++
			t.Errorf("%s %s: the server accepted (%d) a request off the document", e.method, e.path, e.status)
		}
		if e.status == http.StatusRequestEntityTooLarge || e.status == http.StatusUnsupportedMediaType {
			in.Options.ExcludeRequestBody = true // the body is what the answer is about
		}
		resErr := openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in, Status: e.status, Header: e.header, Body: io.NopCloser(bytes.NewReader(e.body)),
			Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
		})
		if resErr != nil {
			mismatches++
			t.Errorf("%s %s: response %d does not match the document: %v\n%s", e.method, e.path, e.status, resErr, trim(e.body))
		}
	}
	var missing []string
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			codes := covered[op.OperationID]
			happy := slices.ContainsFunc(codes, func(c int) bool { return c < 400 })
			sad := slices.ContainsFunc(codes, func(c int) bool { return c >= 400 })
			if !happy || !sad {
				missing = append(missing, fmt.Sprintf("%s (answers seen: %v)", op.OperationID, codes))
			}
		}
	}
	slices.Sort(missing)
	for _, m := range missing {
		t.Errorf("operation not used on both a happy and an error path: %s", m)
	}
	t.Logf("%d exchanges over %d operations, %d mismatches", len(s.ex), len(covered), mismatches)
}

func trim(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

var _ routers.Router // the router interface gorillamux implements

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
