package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Fuzz targets for the request decoding of queues and applications: any body
// sent to create, replace or patch one answers below 500, and every 4xx is
// a problem. They run with the corpus under testdata/fuzz as normal tests;
// `go test -fuzz FuzzQueueDecode` explores further.

func FuzzQueueDecode(f *testing.F) {
	for _, seed := range []string{
		`{"name":"Default","maximum_allowed_worker_instances":10}`,
		`{"name":"q","resource_limits":{"cpu":"500m","memory":"4Gi","gpu":1},"storages":[{"name":"s","type":"pvc","source":"c","mount_path":"/data"}]}`,
		`{"name":"q","attributes":{"tolerations":[{"key":"k","operator":"Equal","value":"v","effect":"NoSchedule"}],"node_selector":{"a/b":"c"}}}`,
		`{"name":{"$gt":""}}`,
		`{"name":"q","maximum_allowed_worker_instances":1e400}`,
		`{"name":"q","scheduling":{"starvation_seconds":0,"default_max_run_seconds":60}}`,
		`{"name":"q","scheduling":{"starvation_seconds":null,"default_max_run_seconds":-1}}`,
		`{"name":"q","environment_variables":{"A":"\u0000"}}`,
		`{"name":"q","attributes":{"node_selector":{"kubernetes.io/hostname":"n1"},"annotations":{"a.b%2E$":"x"}}}`,
		`{"name":"q","scheduling":{"start_timeout_seconds":20,"default_max_run_seconds":3600}}`,
		`{"name":"q","scheduling":{"start_timeout_seconds":0,"default_max_run_seconds":-1e400}}`,
		`[]`, `null`, ``,
	} {
		f.Add([]byte(seed))
	}
	fuzzDecode(f, "/queues", `{"name":"fuzz-target"}`)
}

func FuzzApplicationDecode(f *testing.F) {
	for _, seed := range []string{
		`{"name":"sim","version":"1.2.0","image":"registry/sim:1.2.0","command":["/bin/sim"],"args":["-v"]}`,
		`{"name":"sim","version":"1","environment_variables":{"SEED":"42"}}`,
		`{"name":"sim","version":{"$ne":null}}`,
		`{"name":"sim","version":"1","resource_version":7}`,
		`{"name":"sim","version":"1","command":"not a list"}`,
		`{"name":"sim","version":"1","command":["/bin/sh","-c"],"args":["a\u0000b"]}`,
	} {
		f.Add([]byte(seed))
	}
	fuzzDecode(f, "/applications", `{"name":"fuzz-target","version":"1"}`)
}

// fuzzDecode sends each input to create (POST) and to replace (PUT) and
// patch (PATCH) a resource made from target.
func fuzzDecode(f *testing.F, create, target string) {
	e := startEnv(f)
	item := create + "/" + e.must(http.StatusCreated, http.MethodPost, v1+create, target).obj(f).str("id")
	h := e.svc.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, req := range []struct{ method, path, ct string }{
			{http.MethodPost, create, "application/json"},
			{http.MethodPut, item, "application/json"},
			{http.MethodPatch, item, "application/merge-patch+json"},
		} {
			r := httptest.NewRequest(req.method, v1+req.path, bytes.NewReader(body))
			r.Header.Set("Content-Type", req.ct)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			checkFuzzAnswer(t, req.method+" "+req.path, body, w)
		}
	})
}

// checkFuzzAnswer fails t on a 5xx, or a 4xx that is not a problem.
func checkFuzzAnswer(t *testing.T, req string, body []byte, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code >= 500 {
		t.Fatalf("%s %q = %d %s", req, body, w.Code, w.Body)
	}
	if w.Code >= 400 {
		var p struct {
			Status int    `json:"status"`
			Title  string `json:"title"`
		}
		if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
			t.Fatalf("%s %q = %d with Content-Type %q", req, body, w.Code, ct)
		}
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Status != w.Code || p.Title == "" {
			t.Fatalf("%s %q = %d, not a problem: %s", req, body, w.Code, w.Body)
		}
	}
}

// FuzzJobSubmit sends any body to POST /jobs: below 500, every 4xx a problem.
func FuzzJobSubmit(f *testing.F) {
	for _, seed := range []string{
		`{"queue_id":"Default","worker_instances":1,"application":{"image":"busybox"},"command":["sleep"],"args":["1"]}`,
		`{"queue_id":"Default","worker_instances":1,"application":{"image":"busybox"},"args":["a\u0000b"]}`,
		`{"queue_id":"Default","worker_instances":1,"application":{"image":"busybox"},"command":[null]}`,
		`{"queue_id":"Default","worker_instances":1,"application":{"image":"busybox"},"args":{"$gt":""}}`,
		`{"queue_id":"Default","worker_instances":1,"application":{"image":"busybox"},"labels":{"example.com/key":"v"}}`,
		`{"queue_id":"Default","worker_instances":1,"application":{"image":"busybox"},"max_run_seconds":2,"max_retries":2,"retry_on":["failed","lost"]}`,
		`{"queue_id":"Default","worker_instances":1,"application":{"image":"busybox"},"max_run_seconds":-1e400,"max_retries":1.5,"retry_on":[null]}`,
	} {
		f.Add([]byte(seed))
	}
	e := startEnv(f)
	e.must(http.StatusCreated, http.MethodPost, v1+"/queues", `{"name":"Default"}`)
	h := e.svc.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, v1+"/jobs", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		checkFuzzAnswer(t, "POST /jobs", body, w)
	})
}

// FuzzJobArrayDecode sends each input as a job array (POST /job-arrays)
// and as a job (POST /jobs), whose depends_on it exercises too: any body
// answers below 500, and every 4xx is a problem.
func FuzzJobArrayDecode(f *testing.F) {
	for _, seed := range []string{
		`{"job":{"queue_id":"Default","worker_instances":1,"application":{"name":"s","version":"1","image":"r/s:1"}},"count":3,"max_parallel":1}`,
		`{"job":{"name":"sweep","queue_id":"Default","worker_instances":1,"application":{"name":"s","version":"1","image":"r/s:1"}},"count":100001}`,
		`{"job":{"queue_id":"Default","worker_instances":1,"application":{"image":"r/s:1"},"environment_variables":{"RM_ARRAY_INDEX":"1"}},"count":2}`,
		`{"job":{"queue_id":"Default","worker_instances":1,"application":{"image":"r/s:1"},"depends_on":[{"job_id":"job-X","condition":"succeeded"}]},"count":2}`,
		`{"job":{"name":"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn","queue_id":"Default","worker_instances":1,"application":{"image":"r/s:1"}},"count":10}`,
		`{"job":null,"count":{"$gt":0},"max_parallel":-1}`,
		`{"queue_id":"Default","worker_instances":1,"application":{"image":"r/s:1"},"depends_on":[{"job_id":"job-X","condition":"finished"},{"job_id":"job-X","condition":"succeeded"}]}`,
		`{"queue_id":"Default","worker_instances":1,"application":{"image":"r/s:1"},"depends_on":[{"job_id":{"$ne":""},"condition":"later"}]}`,
		`{"queue_id":"Default","worker_instances":1,"application":{"image":"r/s:1"},"depends_on":"job-X","array_index":3}`,
		`[]`, `null`, ``,
	} {
		f.Add([]byte(seed))
	}
	e := startEnv(f)
	e.create("/queues", obj{"name": "Default", "maximum_allowed_worker_instances": 10})
	h := e.svc.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, path := range []string{"/job-arrays", "/jobs"} {
			r := httptest.NewRequest(http.MethodPost, v1+path, bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code >= 500 {
				t.Fatalf("POST %s %q = %d %s", path, body, w.Code, w.Body)
			}
			if w.Code >= 400 && !strings.HasPrefix(w.Header().Get("Content-Type"), "application/problem+json") {
				t.Fatalf("POST %s %q = %d with Content-Type %q", path, body, w.Code, w.Header().Get("Content-Type"))
			}
		}
	})
}
