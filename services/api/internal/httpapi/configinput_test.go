package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A queue's storages and attributes that no runtime could use are refused
// when written (422 naming the field, nothing stored, the queue as it was),
// not taken and then failing every instance of the queue at its start.
func TestQueueRefusesStoragesAndAttributesNoRuntimeTakes(t *testing.T) {
	e := newEnv(t, nil)
	e.json(http.StatusCreated, http.MethodPost, "/queues", map[string]any{"name": "existing"}, nil)
	before := e.json(http.StatusOK, http.MethodGet, "/queues/existing", nil, nil).body
	pvc := func(name, mount string) map[string]any {
		return map[string]any{"name": name, "type": "pvc", "source": "claim", "mount_path": mount}
	}
	cases := map[string]struct {
		body  map[string]any
		field string
	}{
		"duplicate mount path": {map[string]any{"storages": []any{pvc("a", "/data"), pvc("b", "/data")}}, "storages[1].mount_path"},
		"mount path root":      {map[string]any{"storages": []any{pvc("a", "/")}}, "storages[0].mount_path"},
		"nfs without path":     {map[string]any{"storages": []any{map[string]any{"name": "a", "type": "nfs", "source": "nfs.example", "mount_path": "/d"}}}, "storages[0].source"},
		"nfs relative path":    {map[string]any{"storages": []any{map[string]any{"name": "a", "type": "nfs", "source": "nfs.example:exports", "mount_path": "/d"}}}, "storages[0].source"},
		"nfs without server":   {map[string]any{"storages": []any{map[string]any{"name": "a", "type": "nfs", "source": ":/exports", "mount_path": "/d"}}}, "storages[0].source"},
		"pvc claim with space": {map[string]any{"storages": []any{map[string]any{"name": "a", "type": "pvc", "source": "my claim", "mount_path": "/d"}}}, "storages[0].source"},
		"empty_dir source":     {map[string]any{"storages": []any{map[string]any{"name": "a", "type": "empty_dir", "source": "/host", "mount_path": "/d"}}}, "storages[0].source"},
		"node selector value":  {map[string]any{"attributes": map[string]any{"node_selector": map[string]any{"pool": "gpu nodes"}}}, "attributes.node_selector.pool"},
		"label value":          {map[string]any{"attributes": map[string]any{"labels": map[string]any{"team": "-adas"}}}, "attributes.labels.team"},
		"toleration value":     {map[string]any{"attributes": map[string]any{"tolerations": []any{map[string]any{"key": "k", "operator": "Equal", "value": "a/b"}}}}, "attributes.tolerations[0].value"},
		"service account":      {map[string]any{"attributes": map[string]any{"service_account": "Sim Runner"}}, "attributes.service_account"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tc.body["name"] = "new"
			patch := map[string]any{}
			for k, v := range tc.body {
				if k != "name" {
					patch[k] = v
				}
			}
			for _, r := range []struct {
				method, path string
				body         map[string]any
			}{{http.MethodPost, "/queues", tc.body}, {http.MethodPut, "/queues/existing", tc.body}, {http.MethodPatch, "/queues/existing", patch}} {
				raw, _ := json.Marshal(r.body)
				a := e.do(r.method, r.path, strings.NewReader(string(raw)), "Content-Type", "application/json")
				if got := problemFields(t, a); a.status != http.StatusUnprocessableEntity || !strings.Contains(got, "|"+tc.field+"|") {
					t.Errorf("%s %s = %s, want a 422 naming %s", r.method, r.path, a, tc.field)
				}
			}
			if a := e.do(http.MethodGet, "/queues/new", nil); a.status != http.StatusNotFound {
				t.Errorf("GET /queues/new = %s, want 404", a)
			}
			if after := e.do(http.MethodGet, "/queues/existing", nil).body; string(after) != string(before) {
				t.Errorf("the existing queue changed:\n%s\n%s", before, after)
			}
		})
	}

	// What the runtimes take passes.
	e.json(http.StatusCreated, http.MethodPost, "/queues", map[string]any{"name": "fine",
		"storages": []any{pvc("a", "/data"), pvc("b", "/data2"),
			map[string]any{"name": "c", "type": "nfs", "source": "nfs.example:/exports/scenarios", "mount_path": "/scenarios"},
			map[string]any{"name": "d", "type": "empty_dir", "mount_path": "/scratch"},
			map[string]any{"name": "e", "type": "host_path", "source": "/srv/maps", "mount_path": "/maps"}},
		"attributes": map[string]any{"node_selector": map[string]any{"node-group-reservation": "my-special-group", "empty": ""},
			"labels":          map[string]any{"team": "adas_1.2"},
			"tolerations":     []any{map[string]any{"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}, map[string]any{"operator": "Exists"}},
			"service_account": "sim-runner.v1"}}, nil)
}

// problemFields is "|field|field|…|" of a problem's errors.
func problemFields(t *testing.T, a answer) string {
	t.Helper()
	var p struct {
		Errors []struct{ Field string } `json:"errors"`
	}
	if err := json.Unmarshal(a.body, &p); err != nil {
		t.Fatalf("not a problem: %s", a)
	}
	var b strings.Builder
	b.WriteString("|")
	for _, f := range p.Errors {
		b.WriteString(f.Field + "|")
	}
	return b.String()
}

// A number of integral value is an integer wherever one goes (JSON Schema
// says so, and a merge patch took it already): 10.0 and 1e3 in a POST or a
// PUT are 10 and 1000, not a 422 naming no field. A fraction stays refused,
// naming the field.
func TestIntegralNumbersAreIntegers(t *testing.T) {
	e := newEnv(t, nil)
	var q struct {
		Limit          int `json:"maximum_allowed_worker_instances"`
		ResourceLimits struct {
			GPU int `json:"gpu"`
		} `json:"resource_limits"`
		Scheduling struct {
			Starvation int `json:"starvation_seconds"`
		} `json:"scheduling"`
	}
	e.json(http.StatusCreated, http.MethodPost, "/queues", json.RawMessage(`{"name": "Q", "maximum_allowed_worker_instances": 10.0,
		"resource_limits": {"gpu": 1.0}, "scheduling": {"starvation_seconds": 6e2}}`), &q)
	if q.Limit != 10 || q.ResourceLimits.GPU != 1 || q.Scheduling.Starvation != 600 {
		t.Errorf("POST /queues = %+v, want limit 10, gpu 1, starvation_seconds 600", q)
	}
	e.json(http.StatusOK, http.MethodPut, "/queues/Q", json.RawMessage(`{"name": "Q", "maximum_allowed_worker_instances": 1e3}`), &q)
	if q.Limit != 1000 {
		t.Errorf("PUT /queues/Q: limit %d, want 1000", q.Limit)
	}
	for _, body := range []string{`{"name": "Q", "maximum_allowed_worker_instances": 1.5}`, `{"name": "Q", "maximum_allowed_worker_instances": 1e300}`} {
		a := e.json(http.StatusUnprocessableEntity, http.MethodPut, "/queues/Q", json.RawMessage(body), nil)
		if got := problemFields(t, a); got != "|maximum_allowed_worker_instances|" {
			t.Errorf("PUT %s = %s, want a 422 naming maximum_allowed_worker_instances", body, a)
		}
	}
	e.json(http.StatusOK, http.MethodGet, "/queues/Q", nil, &q)
	if q.Limit != 1000 {
		t.Errorf("after refused PUTs: limit %d, want 1000", q.Limit)
	}
}

// An application is reached by name:version however long its name (63
// characters and a version make more than 63), in the paths of
// applications and app-runtime-configs and in the list's filter.
func TestApplicationByNameVersionOfLongName(t *testing.T) {
	e := newEnv(t, nil)
	e.json(http.StatusCreated, http.MethodPost, "/queues", map[string]any{"name": "Q"}, nil)
	name := strings.Repeat("s", 63)
	var app struct{ ID string }
	e.json(http.StatusCreated, http.MethodPost, "/applications", map[string]any{"name": name, "version": "1.0.0", "image": "registry.example/sim:1"}, &app)
	ref := name + ":1.0.0"
	var got struct{ ID string }
	e.json(http.StatusOK, http.MethodGet, "/applications/"+ref, nil, &got)
	if got.ID != app.ID {
		t.Errorf("GET /applications/%s = %s, want %s", ref, got.ID, app.ID)
	}
	arc := map[string]any{"image": "registry.example/sim:1", "working_directory": "/work"}
	e.json(http.StatusCreated, http.MethodPost, "/app-runtime-config/Q/application/"+ref, arc, nil)
	e.json(http.StatusOK, http.MethodGet, "/app-runtime-config/Q/application/"+ref, nil, nil)
	var list struct {
		Items []struct {
			ApplicationID string `json:"application_id"`
		}
	}
	e.json(http.StatusOK, http.MethodGet, "/app-runtime-config?application_id="+ref, nil, &list)
	if len(list.Items) != 1 || list.Items[0].ApplicationID != app.ID {
		t.Errorf("GET /app-runtime-config?application_id=%s = %+v, want the one of %s", ref, list.Items, app.ID)
	}
	// A job and a deployment name it the same way.
	e.json(http.StatusCreated, http.MethodPost, "/jobs", map[string]any{"queue_id": "Q", "worker_instances": 1, "application": map[string]any{"id": ref}}, nil)
	e.json(http.StatusCreated, http.MethodPost, "/deployments", map[string]any{"name": "d", "queue_id": "Q", "application_id": ref, "replicas": 0}, nil)
	e.json(http.StatusOK, http.MethodGet, "/deployments?application_id="+ref, nil, &list)
	if len(list.Items) != 1 || list.Items[0].ApplicationID != app.ID {
		t.Errorf("GET /deployments?application_id=%s = %+v, want the one of %s", ref, list.Items, app.ID)
	}
}

// A name of several versions names no one application: where a path or a
// filter takes it, the 422 names that parameter, and a list does not
// answer as if the application had no app-runtime-configs.
func TestApplicationNameOfSeveralVersionsIsNamed(t *testing.T) {
	e := newEnv(t, nil)
	e.json(http.StatusCreated, http.MethodPost, "/queues", map[string]any{"name": "Q"}, nil)
	for _, v := range []string{"1.0", "2.0"} {
		e.json(http.StatusCreated, http.MethodPost, "/applications", map[string]any{"name": "sim", "version": v, "image": "registry.example/sim:1"}, nil)
	}
	e.json(http.StatusCreated, http.MethodPost, "/app-runtime-config/Q/application/sim:1.0",
		map[string]any{"image": "registry.example/sim:1", "working_directory": "/work"}, nil)
	for path, field := range map[string]string{
		"/applications/sim":                      "app_id",
		"/app-runtime-config/Q/application/sim":  "app_id",
		"/app-runtime-config?application_id=sim": "application_id",
	} {
		a := e.json(http.StatusUnprocessableEntity, http.MethodGet, path, nil, nil)
		if diff := cmp.Diff("|"+field+"|", problemFields(t, a)); diff != "" || !strings.Contains(string(a.body), "sim:<version>") {
			t.Errorf("GET %s = %s, want a 422 naming %s that says how to name one (-want +got fields):\n%s", path, a, field, diff)
		}
	}
}
