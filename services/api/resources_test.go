package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/api"
	"github.com/google/go-cmp/cmp"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// The resource routes of API.md through the real handler over real FerretDB
// and NATS: happy paths, 404, 409, 412, merge patch, built-in queues, secret
// redaction, events, pagination and idempotency.

func TestQueueLifecycle(t *testing.T) {
	e := startEnv(t)

	r := e.must(http.StatusCreated, http.MethodPost, v1+"/queues", queueBody("Default").
		with("description", "Test queue").with("maximum_allowed_worker_instances", 10).
		with("resource_limits", obj{"cpu": "2", "memory": "4Gi"}).
		with("environment_variables", obj{"A": "1", "B": "2"}))
	q := r.obj(t)
	id := q.str("id")
	if !strings.HasPrefix(id, "q-") || r.Header.Get("Location") != v1+"/queues/"+id || r.Header.Get("ETag") != `"1"` {
		t.Fatalf("create: id %q Location %q ETag %q", id, r.Header.Get("Location"), r.Header.Get("ETag"))
	}
	if q["version"] != 1.0 || q["usage"] == nil || q["created_at"] != q["updated_at"] {
		t.Errorf("created queue %v", q)
	}

	// By id and by name, the same queue.
	byID := e.must(http.StatusOK, http.MethodGet, v1+"/queues/"+id, nil)
	byName := e.must(http.StatusOK, http.MethodGet, v1+"/queues/Default", nil)
	if diff := cmp.Diff(byID.obj(t), byName.obj(t)); diff != "" || byID.Header.Get("ETag") != `"1"` {
		t.Errorf("get by id vs by name (-id +name):\n%s", diff)
	}
	if diff := cmp.Diff(q, byID.obj(t)); diff != "" {
		t.Errorf("read back differs from created (-created +read):\n%s", diff)
	}

	e.must(http.StatusConflict, http.MethodPost, v1+"/queues", queueBody("Default"))
	e.must(http.StatusNotFound, http.MethodGet, v1+"/queues/q-NOPE", nil)
	e.must(http.StatusNotFound, http.MethodGet, v1+"/queues/nope", nil)

	// PUT replaces everything: fields left out are gone.
	put := e.must(http.StatusOK, http.MethodPut, v1+"/queues/"+id, queueBody("Default").with("maximum_allowed_worker_instances", 20), "If-Match", `"1"`)
	pq := put.obj(t)
	if put.Header.Get("ETag") != `"2"` || pq["version"] != 2.0 || pq["maximum_allowed_worker_instances"] != 20.0 || pq["description"] != nil || pq["created_at"] != q["created_at"] {
		t.Errorf("after PUT: ETag %s %v", put.Header.Get("ETag"), pq)
	}
	e.must(http.StatusPreconditionFailed, http.MethodPut, v1+"/queues/"+id, queueBody("Default"), "If-Match", `"1"`)
	e.must(http.StatusPreconditionFailed, http.MethodPatch, v1+"/queues/"+id, obj{"description": "x"}, "If-Match", `"1"`)
	e.must(http.StatusPreconditionFailed, http.MethodDelete, v1+"/queues/"+id, nil, "If-Match", `"7"`)
	e.must(http.StatusNotFound, http.MethodPut, v1+"/queues/q-NOPE", queueBody("x"))
	e.must(http.StatusNotFound, http.MethodPatch, v1+"/queues/q-NOPE", obj{"description": "x"})
	e.must(http.StatusNotFound, http.MethodDelete, v1+"/queues/q-NOPE", nil)

	// Renaming onto another queue's name is a conflict.
	e.create("/queues", queueBody("Other"))
	e.must(http.StatusConflict, http.MethodPut, v1+"/queues/"+id, queueBody("Other"))
	e.must(http.StatusConflict, http.MethodPatch, v1+"/queues/"+id, obj{"name": "Other"})

	// Merge patch: untouched fields stay, null deletes, objects merge.
	e.must(http.StatusOK, http.MethodPatch, v1+"/queues/"+id, obj{"environment_variables": obj{"A": "1", "B": "2"}, "description": "d"})
	p := e.must(http.StatusOK, http.MethodPatch, v1+"/queues/"+id,
		obj{"maximum_allowed_worker_instances": nil, "environment_variables": obj{"B": nil, "C": "3"}}, "If-Match", `"3"`)
	want := map[string]any{"A": "1", "C": "3"}
	got := p.obj(t)
	if diff := cmp.Diff(want, got["environment_variables"]); diff != "" {
		t.Errorf("merged environment (-want +got):\n%s", diff)
	}
	if got["maximum_allowed_worker_instances"] != nil || got["description"] != "d" || got["name"] != "Default" || got["version"] != 4.0 {
		t.Errorf("after patch: %v", got)
	}
	// A patch is validated like a PUT.
	bad := e.must(http.StatusUnprocessableEntity, http.MethodPatch, v1+"/queues/"+id, obj{"maximum_allowed_worker_instances": -1})
	assertProblem(t, bad, "maximum_allowed_worker_instances")
	bad = e.must(http.StatusUnprocessableEntity, http.MethodPatch, v1+"/queues/"+id, obj{"name": nil})
	assertProblem(t, bad, "name")

	// List: both queues and the built-in ones.
	l := e.must(http.StatusOK, http.MethodGet, v1+"/queues?name=Default", nil).obj(t)
	if items := l["items"].([]any); len(items) != 1 || l["next_cursor"] != nil {
		t.Errorf("filtered list: %v", l)
	}

	e.must(http.StatusNoContent, http.MethodDelete, v1+"/queues/"+id, nil, "If-Match", `"4"`)
	e.must(http.StatusNotFound, http.MethodGet, v1+"/queues/"+id, nil)
	// The name is free again.
	e.create("/queues", queueBody("Default"))

	evs := e.events(events.FilterSubject(events.KindQueue, id, id))
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type)
		if ev.QueueID != id || ev.ResourceID != id {
			t.Errorf("event %s on queue %s resource %s", ev.Type, ev.QueueID, ev.ResourceID)
		}
	}
	wantTypes := []string{events.TypeQueueCreated, events.TypeQueueUpdated, events.TypeQueueUpdated, events.TypeQueueUpdated, events.TypeQueueDeleted}
	if diff := cmp.Diff(wantTypes, types); diff != "" {
		t.Errorf("queue events (-want +got):\n%s", diff)
	}
	// Each event's data is the resource as the API returned it.
	var last obj
	if err := json.Unmarshal(evs[3].Data, &last); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, last); diff != "" {
		t.Errorf("event data vs response (-response +event):\n%s", diff)
	}
}

func TestBuiltinQueues(t *testing.T) {
	e := startEnv(t)
	for _, name := range []string{events.ControllerQueue, events.PostControllerQueue} {
		q := e.must(http.StatusOK, http.MethodGet, v1+"/queues/"+name, nil).obj(t)
		if q["built_in"] != true || q["maximum_allowed_worker_instances"] != nil {
			t.Errorf("%s: %v", name, q)
		}
		// Updates are allowed, the name stays, built_in stays.
		u := e.must(http.StatusOK, http.MethodPut, v1+"/queues/"+name, queueBody(name).with("maximum_allowed_worker_instances", 5)).obj(t)
		if u["built_in"] != true || u["maximum_allowed_worker_instances"] != 5.0 {
			t.Errorf("%s after PUT: %v", name, u)
		}
		u = e.must(http.StatusOK, http.MethodPatch, v1+"/queues/"+name, obj{"maximum_allowed_worker_instances": nil}).obj(t)
		if u["built_in"] != true || u["maximum_allowed_worker_instances"] != nil {
			t.Errorf("%s after PATCH: %v", name, u)
		}
		assertProblem(t, e.must(http.StatusUnprocessableEntity, http.MethodPut, v1+"/queues/"+name, queueBody("renamed")), "name")
		assertProblem(t, e.must(http.StatusUnprocessableEntity, http.MethodPatch, v1+"/queues/"+name, obj{"name": "renamed"}), "name")
		r := e.must(http.StatusConflict, http.MethodDelete, v1+"/queues/"+name, nil)
		if !strings.Contains(r.obj(t).str("detail"), "built in") {
			t.Errorf("delete built-in: %s", r)
		}
	}
	// A second start finds them and creates nothing.
	before := e.count("queues")
	if _, err := api.New(context.Background(), api.Config{}, api.Deps{DB: e.db, Outbox: e.ob}); err != nil {
		t.Fatal(err)
	}
	if n := e.count("queues"); n != before || n != 2 {
		t.Errorf("queues: %d, want 2", n)
	}
}

func TestQueueInUseCannotBeDeleted(t *testing.T) {
	e := startEnv(t)
	q := e.create("/queues", queueBody("busy"))
	app := e.create("/applications", appBody("sim", "1.0.0"))
	qid, aid := q.str("id"), app.str("id")

	// An active job on the queue (the jobs collection is the jobs service's record).
	jobs := e.db.Collection("jobs")
	if _, err := jobs.InsertOne(context.Background(), bson.D{{Key: "_id", Value: "job-1"}, {Key: "queue_id", Value: qid},
		{Key: "application", Value: bson.D{{Key: "id", Value: aid}}}, {Key: "status", Value: events.JobRunning}, {Key: "version", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	r := e.must(http.StatusConflict, http.MethodDelete, v1+"/queues/busy", nil)
	if d := r.obj(t).str("detail"); !strings.Contains(d, "active job job-1; those must end first: cancel them, or wait until they have ended") {
		t.Errorf("detail %q does not say by what, and what to do", d)
	}
	r = e.must(http.StatusConflict, http.MethodDelete, v1+"/applications/"+aid, nil)
	if d := r.obj(t).str("detail"); !strings.Contains(d, "active job job-1") {
		t.Errorf("detail %q does not say by what", d)
	}
	// A final job does not hold it.
	if _, err := jobs.UpdateOne(context.Background(), bson.D{{Key: "_id", Value: "job-1"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: events.JobSucceeded}}}}); err != nil {
		t.Fatal(err)
	}

	e.must(http.StatusCreated, http.MethodPost, v1+"/app-runtime-config/busy/application/"+aid, arcBody())
	r = e.must(http.StatusConflict, http.MethodDelete, v1+"/queues/"+qid, nil)
	// It names the app-runtime-config with the path that deletes it: the API
	// has none by its id.
	arcPath := v1 + "/app-runtime-config/" + qid + "/application/" + aid
	if d := r.obj(t).str("detail"); !strings.Contains(d, "app-runtime-config arc-") || !strings.Contains(d, "("+arcPath+")") {
		t.Errorf("detail %q does not say by what, and where it is", d)
	}
	r = e.must(http.StatusConflict, http.MethodDelete, v1+"/applications/"+aid, nil)
	if d := r.obj(t).str("detail"); !strings.Contains(d, "("+arcPath+")") {
		t.Errorf("detail %q does not say where the app-runtime-config is", d)
	}
	e.must(http.StatusNoContent, http.MethodDelete, arcPath, nil)

	d := e.create("/deployments", deploymentBody("dep", aid, "busy"))
	r = e.must(http.StatusConflict, http.MethodDelete, v1+"/queues/"+qid, nil)
	if det := r.obj(t).str("detail"); !strings.Contains(det, "deployment "+d.str("id")) {
		t.Errorf("detail %q does not say by what", det)
	}
	e.must(http.StatusConflict, http.MethodDelete, v1+"/applications/"+aid, nil)
	e.must(http.StatusNoContent, http.MethodDelete, v1+"/deployments/dep", nil)

	e.must(http.StatusNoContent, http.MethodDelete, v1+"/queues/"+qid, nil)
	e.must(http.StatusNoContent, http.MethodDelete, v1+"/applications/"+aid, nil)
}

func TestPlugins(t *testing.T) {
	e := startEnv(t)
	const secret = "apiVersion: v1\nkind: Config\n# secret"
	r := e.must(http.StatusCreated, http.MethodPost, v1+"/plugins", k8sPluginBody("k8s"))
	p := r.obj(t)
	id := p.str("id")
	if !strings.HasPrefix(id, "plg-") || r.Header.Get("Location") != v1+"/plugins/"+id {
		t.Fatalf("create: %s", r)
	}
	wantConfig := map[string]any{"namespace": "jobs", "kubeconfig": "***"}
	if diff := cmp.Diff(wantConfig, p["config"]); diff != "" {
		t.Errorf("config in the create response (-want +got):\n%s", diff)
	}
	if bytesContain(r.Body, "secret") {
		t.Errorf("create response shows the secret: %s", r.Body)
	}
	for _, path := range []string{"/plugins/" + id, "/plugins/k8s", "/plugins"} {
		if b := e.must(http.StatusOK, http.MethodGet, v1+path, nil).Body; bytesContain(b, "# secret") || !bytesContain(b, `"***"`) {
			t.Errorf("GET %s: %s", path, b)
		}
	}

	e.must(http.StatusConflict, http.MethodPost, v1+"/plugins", k8sPluginBody("k8s"))
	e.must(http.StatusNotFound, http.MethodGet, v1+"/plugins/plg-NOPE", nil)
	e.must(http.StatusPreconditionFailed, http.MethodPut, v1+"/plugins/"+id, k8sPluginBody("k8s"), "If-Match", `"2"`)
	e.must(http.StatusPreconditionFailed, http.MethodPatch, v1+"/plugins/"+id, obj{"is_default": true}, "If-Match", `"0"`)

	// "***" sent back keeps the stored secret; PATCH and PUT alike.
	u := e.must(http.StatusOK, http.MethodPut, v1+"/plugins/"+id, obj{"name": "k8s", "type": "kubernetes",
		"config": obj{"namespace": "other", "kubeconfig": "***"}}).obj(t)
	if diff := cmp.Diff(map[string]any{"namespace": "other", "kubeconfig": "***"}, u["config"]); diff != "" {
		t.Errorf("config after PUT (-want +got):\n%s", diff)
	}
	e.must(http.StatusOK, http.MethodPatch, v1+"/plugins/"+id, obj{"config": obj{"namespace": "third"}})
	var stored struct {
		Config map[string]any `bson:"config"`
	}
	if err := e.db.Collection("plugins").FindOne(context.Background(), bson.D{{Key: "_id", Value: id}}).Decode(&stored); err != nil {
		t.Fatal(err)
	}
	if stored.Config["kubeconfig"] != secret || stored.Config["namespace"] != "third" {
		t.Errorf("stored config %v", stored.Config)
	}
	// No event carries the secret.
	evs := e.events(events.FilterSubject(events.KindPlugin, events.NoQueue, id))
	if len(evs) != 3 {
		t.Errorf("plugin events: %d, want 3", len(evs))
	}
	for _, ev := range evs {
		if bytesContain(ev.Data, "# secret") || !bytesContain(ev.Data, `"***"`) {
			t.Errorf("event %s data %s", ev.Type, ev.Data)
		}
	}

	// Config is validated per type.
	for name, tc := range map[string]struct {
		config obj
		typ    string
		field  string
	}{
		"k8s without namespace":   {typ: "kubernetes", config: obj{"in_cluster": true}, field: "config.namespace"},
		"k8s both":                {typ: "kubernetes", config: obj{"namespace": "a", "in_cluster": true, "kubeconfig": "x"}, field: "config.kubeconfig"},
		"k8s neither":             {typ: "kubernetes", config: obj{"namespace": "a"}, field: "config.kubeconfig"},
		"k8s bad namespace":       {typ: "kubernetes", config: obj{"namespace": "Not_DNS", "in_cluster": true}, field: "config.namespace"},
		"k8s placeholder secret":  {typ: "kubernetes", config: obj{"namespace": "a", "kubeconfig": "***"}, field: "config.kubeconfig"},
		"k8s negative qps":        {typ: "kubernetes", config: obj{"namespace": "a", "in_cluster": true, "api_qps": -5}, field: "config.api_qps"},
		"k8s qps as a string":     {typ: "kubernetes", config: obj{"namespace": "a", "in_cluster": true, "api_qps": "50"}, field: "config.api_qps"},
		"k8s fractional burst":    {typ: "kubernetes", config: obj{"namespace": "a", "in_cluster": true, "api_burst": 10.5}, field: "config.api_burst"},
		"k8s burst too high":      {typ: "kubernetes", config: obj{"namespace": "a", "in_cluster": true, "api_burst": 100001}, field: "config.api_burst"},
		"docker bad host":         {typ: "docker", config: obj{"host": "/var/run/docker.sock"}, field: "config.host"},
		"docker unknown":          {typ: "docker", config: obj{"hots": "tcp://x:1"}, field: "config.hots"},
		"local relative":          {typ: "local", config: obj{"work_dir": "work"}, field: "config.work_dir"},
		"simulated out of range":  {typ: "simulated", config: obj{"run_seconds": 86401}, field: "config.run_seconds"},
		"simulated failure rate":  {typ: "simulated", config: obj{"failure_rate": 1.5}, field: "config.failure_rate"},
		"simulated wrong type":    {typ: "simulated", config: obj{"run_seconds": "10"}, field: "config.run_seconds"},
		"simulated unknown token": {typ: "simulated", config: obj{"token": "abc"}, field: "config.token"},
	} {
		t.Run(name, func(t *testing.T) {
			r := e.must(http.StatusUnprocessableEntity, http.MethodPost, v1+"/plugins", obj{"name": "bad", "type": tc.typ, "config": tc.config})
			assertProblem(t, r, tc.field)
			if bytesContain(r.Body, "abc") {
				t.Errorf("problem echoes a secret: %s", r.Body)
			}
		})
	}
	for _, ok := range []obj{
		{"name": "d", "type": "docker", "config": obj{"host": "unix:///var/run/docker.sock", "network": "rm"}},
		{"name": "d2", "type": "docker", "config": obj{"host": "tcp://10.0.0.1:2376"}},
		{"name": "l", "type": "local", "config": obj{"work_dir": "/var/lib/rm"}},
		{"name": "s", "type": "simulated", "config": obj{"run_seconds": 0.5, "failure_rate": 0.1}},
		{"name": "k", "type": "kubernetes", "config": obj{"namespace": "a", "in_cluster": true}},
		{"name": "k2", "type": "kubernetes", "config": obj{"namespace": "a", "in_cluster": true, "api_qps": 200, "api_burst": 400}},
	} {
		e.must(http.StatusCreated, http.MethodPost, v1+"/plugins", ok)
	}

	// A queue refers to a plugin by id or name and stores its id.
	q := e.create("/queues", queueBody("onk8s").with("plugin_id", "k8s"))
	if q["plugin_id"] != id {
		t.Errorf("queue plugin_id %v, want %s", q["plugin_id"], id)
	}
	assertProblem(t, e.must(http.StatusUnprocessableEntity, http.MethodPost, v1+"/queues", queueBody("x").with("plugin_id", "nope")), "plugin_id")
	r = e.must(http.StatusConflict, http.MethodDelete, v1+"/plugins/k8s", nil)
	if want := "is in use by queue onk8s (" + q.str("id") + "); give those queues another plugin_id, or delete them, first"; !strings.Contains(r.obj(t).str("detail"), want) {
		t.Errorf("delete plugin in use: %s", r)
	}
	e.must(http.StatusNoContent, http.MethodDelete, v1+"/queues/onk8s", nil)
	e.must(http.StatusNoContent, http.MethodDelete, v1+"/plugins/k8s", nil)
	e.must(http.StatusNotFound, http.MethodGet, v1+"/plugins/k8s", nil)
	e.must(http.StatusNotFound, http.MethodDelete, v1+"/plugins/k8s", nil)
}

func TestDefaultPlugin(t *testing.T) {
	e := startEnv(t)
	a := e.create("/plugins", pluginBody("a").with("is_default", true))
	b := e.create("/plugins", pluginBody("b"))
	if a["is_default"] != true || b["is_default"] != false {
		t.Fatalf("a %v b %v", a, b)
	}
	// b becomes the default: a loses it, with its own event.
	e.must(http.StatusOK, http.MethodPatch, v1+"/plugins/b", obj{"is_default": true})
	if got := e.must(http.StatusOK, http.MethodGet, v1+"/plugins/a", nil).obj(t); got["is_default"] != false || got["version"] != 2.0 {
		t.Errorf("previous default: %v", got)
	}
	defaults := e.must(http.StatusOK, http.MethodGet, v1+"/plugins?is_default=true", nil).obj(t)["items"].([]any)
	if len(defaults) != 1 || defaults[0].(map[string]any)["name"] != "b" {
		t.Errorf("defaults: %v", defaults)
	}
	evs := e.events(events.FilterSubject(events.KindPlugin, events.NoQueue, a.str("id")))
	if len(evs) != 2 || evs[1].Type != events.TypePluginUpdated || !bytesContain(evs[1].Data, `"is_default":false`) {
		t.Errorf("events of the previous default: %v", evs)
	}
	// A new default created: b loses it.
	e.create("/plugins", pluginBody("c").with("is_default", true))
	if got := e.must(http.StatusOK, http.MethodGet, v1+"/plugins/b", nil).obj(t); got["is_default"] != false {
		t.Errorf("b after c became default: %v", got)
	}
}

func TestApplications(t *testing.T) {
	e := startEnv(t)
	r := e.must(http.StatusCreated, http.MethodPost, v1+"/applications", appBody("sim", "1.2.0").
		with("command", []string{"/bin/sim"}).with("args", []string{"--fast"}).with("environment_variables", obj{"LOG": "debug"}))
	a := r.obj(t)
	id := a.str("id")
	// "version" is the application's; the revision is resource_version, and the ETag follows it.
	if !strings.HasPrefix(id, "app-") || a["version"] != "1.2.0" || a["resource_version"] != 1.0 || r.Header.Get("ETag") != `"1"` {
		t.Fatalf("created application: %s", r)
	}
	e.must(http.StatusConflict, http.MethodPost, v1+"/applications", appBody("sim", "1.2.0"))
	b := e.create("/applications", appBody("sim", "1.3.0"))
	e.create("/applications", appBody("other", "1.2.0"))

	e.must(http.StatusOK, http.MethodGet, v1+"/applications/"+id, nil)
	// A name is enough when only one version exists.
	if got := e.must(http.StatusOK, http.MethodGet, v1+"/applications/other", nil).obj(t); got["version"] != "1.2.0" {
		t.Errorf("by name: %v", got)
	}
	if d := e.must(http.StatusUnprocessableEntity, http.MethodGet, v1+"/applications/sim", nil).obj(t).str("detail"); !strings.Contains(d, "sim:<version>") {
		t.Errorf("an ambiguous name: %q does not say how to name one version", d)
	}
	e.must(http.StatusNotFound, http.MethodGet, v1+"/applications/app-NOPE", nil)
	// name:version names one of several versions, as the CLI's --app does.
	if got := e.must(http.StatusOK, http.MethodGet, v1+"/applications/sim:1.3.0", nil).obj(t); got["id"] != b.str("id") {
		t.Errorf("by name:version: %v", got)
	}
	e.must(http.StatusNotFound, http.MethodGet, v1+"/applications/sim:9", nil)
	e.must(http.StatusNotFound, http.MethodGet, v1+"/applications/nope:1.3.0", nil)

	l := e.must(http.StatusOK, http.MethodGet, v1+"/applications?name=sim&version=1.3.0", nil).obj(t)
	if items := l["items"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != b.str("id") {
		t.Errorf("filtered list: %v", l)
	}

	// Merge patch: the image changes, command and args stay; null removes the environment.
	p := e.must(http.StatusOK, http.MethodPatch, v1+"/applications/"+id, obj{"image": "registry.example/sim:1.2.1", "environment_variables": nil}, "If-Match", `"1"`)
	got := p.obj(t)
	if got["image"] != "registry.example/sim:1.2.1" || got["environment_variables"] != nil || got["resource_version"] != 2.0 || got["version"] != "1.2.0" || p.Header.Get("ETag") != `"2"` {
		t.Errorf("after patch: %s", p)
	}
	if diff := cmp.Diff([]any{"/bin/sim"}, got["command"]); diff != "" {
		t.Errorf("command (-want +got):\n%s", diff)
	}
	e.must(http.StatusPreconditionFailed, http.MethodPatch, v1+"/applications/"+id, obj{"description": "x"}, "If-Match", `"1"`)
	// Changing the version onto an existing name + version conflicts.
	e.must(http.StatusConflict, http.MethodPatch, v1+"/applications/"+id, obj{"version": "1.3.0"})
	e.must(http.StatusOK, http.MethodPut, v1+"/applications/"+id, appBody("sim", "1.2.2"), "If-Match", `"2"`)

	e.must(http.StatusNoContent, http.MethodDelete, v1+"/applications/"+id, nil, "If-Match", `"3"`)
	e.must(http.StatusNotFound, http.MethodGet, v1+"/applications/"+id, nil)

	evs := e.events(events.FilterSubject(events.KindApplication, events.NoQueue, id))
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	if diff := cmp.Diff([]string{events.TypeApplicationCreated, events.TypeApplicationUpdated, events.TypeApplicationUpdated, events.TypeApplicationDeleted}, types); diff != "" {
		t.Errorf("application events (-want +got):\n%s", diff)
	}
	if !bytesContain(evs[0].Data, `"resource_version":1`) || !bytesContain(evs[0].Data, `"version":"1.2.0"`) {
		t.Errorf("created event data %s", evs[0].Data)
	}
}

func TestAppRuntimeConfigs(t *testing.T) {
	e := startEnv(t)
	q := e.create("/queues", queueBody("gpu"))
	a := e.create("/applications", appBody("sim", "1.0.0"))
	qid, aid := q.str("id"), a.str("id")
	path := v1 + "/app-runtime-config/" + qid + "/application/" + aid

	// The queue by name, the application by id; the resource has both ids.
	r := e.must(http.StatusCreated, http.MethodPost, v1+"/app-runtime-config/gpu/application/"+aid,
		arcBody().with("environment_variables", obj{"CUDA": "1"}).with("resource_limits", obj{"gpu": 1}))
	c := r.obj(t)
	if r.Header.Get("Location") != path || c["queue_id"] != qid || c["application_id"] != aid || !strings.HasPrefix(c.str("id"), "arc-") {
		t.Fatalf("create: %s (Location %s)", r, r.Header.Get("Location"))
	}
	if d := e.must(http.StatusConflict, http.MethodPost, path, arcBody()).obj(t).str("detail"); d != "an app-runtime-config of application "+aid+" on queue "+qid+
		" already exists; change it with PUT or PATCH at "+path {
		t.Errorf("a second app-runtime-config of the pair: %q, want it to say which exists and where to change it", d)
	}
	e.must(http.StatusNotFound, http.MethodPost, v1+"/app-runtime-config/nope/application/"+aid, arcBody())
	e.must(http.StatusNotFound, http.MethodPost, v1+"/app-runtime-config/gpu/application/app-NOPE", arcBody())

	if diff := cmp.Diff(c, e.must(http.StatusOK, http.MethodGet, path, nil).obj(t)); diff != "" {
		t.Errorf("read back (-created +read):\n%s", diff)
	}
	e.must(http.StatusNotFound, http.MethodGet, v1+"/app-runtime-config/"+events.ControllerQueue+"/application/"+aid, nil)

	p := e.must(http.StatusOK, http.MethodPatch, path, obj{"working_directory": "/scratch", "environment_variables": obj{"X": "y"}}, "If-Match", `"1"`).obj(t)
	if p["image"] != "registry.example/sim:gpu" || p["working_directory"] != "/scratch" || p["version"] != 2.0 {
		t.Errorf("after patch: %v", p)
	}
	if diff := cmp.Diff(map[string]any{"CUDA": "1", "X": "y"}, p["environment_variables"]); diff != "" {
		t.Errorf("merged env (-want +got):\n%s", diff)
	}
	assertProblem(t, e.must(http.StatusUnprocessableEntity, http.MethodPatch, path, obj{"image": nil}), "image")
	e.must(http.StatusPreconditionFailed, http.MethodPut, path, arcBody(), "If-Match", `"1"`)
	u := e.must(http.StatusOK, http.MethodPut, path, arcBody(), "If-Match", `"2"`).obj(t)
	if u["environment_variables"] != nil || u["queue_id"] != qid {
		t.Errorf("after PUT: %v", u)
	}

	// A second config on another queue, then the list filters.
	e.create("/app-runtime-config/"+events.ControllerQueue+"/application/"+aid, arcBody())
	for query, want := range map[string]int{"": 2, "?queue_id=gpu": 1, "?queue_id=" + qid: 1, "?application_id=" + aid: 2, "?queue_id=nope": 0} {
		l := e.must(http.StatusOK, http.MethodGet, v1+"/app-runtime-config"+query, nil).obj(t)
		if n := len(l["items"].([]any)); n != want {
			t.Errorf("list %q: %d items, want %d", query, n, want)
		}
	}

	e.must(http.StatusNoContent, http.MethodDelete, path, nil)
	e.must(http.StatusNotFound, http.MethodGet, path, nil)
	e.must(http.StatusNotFound, http.MethodDelete, path, nil)

	evs := e.events(events.FilterSubject(events.KindAppRuntimeConfig, qid, ""))
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	if diff := cmp.Diff([]string{events.TypeAppRuntimeConfigCreated, events.TypeAppRuntimeConfigUpdated, events.TypeAppRuntimeConfigUpdated, events.TypeAppRuntimeConfigDeleted}, types); diff != "" {
		t.Errorf("events on the queue's subject (-want +got):\n%s", diff)
	}
}

func TestDeployments(t *testing.T) {
	e := startEnv(t)
	q := e.create("/queues", queueBody("svc"))
	a := e.create("/applications", appBody("viewer", "2.0"))
	r := e.must(http.StatusCreated, http.MethodPost, v1+"/deployments", deploymentBody("viewer", "viewer", "svc").with("environment_variables", obj{"PORT": "80"}))
	d := r.obj(t)
	id := d.str("id")
	if !strings.HasPrefix(id, "dep-") || d["application_id"] != a.str("id") || d["queue_id"] != q.str("id") || d["replicas"] != 2.0 {
		t.Fatalf("create: %s", r)
	}
	if diff := cmp.Diff(map[string]any{"ready_replicas": 0.0, "conditions": []any{}, "replicas": []any{}}, d["status"]); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	// Its events carry the status without the per-replica list (it grows with the replicas).
	for _, ev := range e.events(events.FilterSubject(events.KindDeployment, "", id)) {
		var data map[string]any
		if err := json.Unmarshal(ev.Data, &data); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(map[string]any{"ready_replicas": 0.0, "conditions": []any{}}, data["status"]); diff != "" || data["name"] != "viewer" {
			t.Errorf("%s: status (-want +got):\n%s", ev.Type, diff)
		}
	}
	r = e.must(http.StatusConflict, http.MethodPost, v1+"/deployments", deploymentBody("viewer", "viewer", "svc"))
	if d := r.obj(t).str("detail"); d != "a deployment named viewer already exists" {
		t.Errorf("a second deployment named viewer: %q", d)
	}
	assertProblem(t, r, "name")
	assertProblem(t, e.must(http.StatusUnprocessableEntity, http.MethodPost, v1+"/deployments", deploymentBody("x", "app-NOPE", "svc")), "application_id")
	assertProblem(t, e.must(http.StatusUnprocessableEntity, http.MethodPost, v1+"/deployments", deploymentBody("x", "viewer", "nope")), "queue_id")
	// The status is read-only.
	assertProblem(t, e.must(http.StatusUnprocessableEntity, http.MethodPatch, v1+"/deployments/"+id, obj{"status": obj{"ready_replicas": 3}}), "status")

	// The launcher reports status; a replace keeps it.
	if _, err := e.db.Collection("deployments").UpdateOne(context.Background(), bson.D{{Key: "_id", Value: id}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "status.ready_replicas", Value: 2}}}}); err != nil {
		t.Fatal(err)
	}
	u := e.must(http.StatusOK, http.MethodPatch, v1+"/deployments/viewer", obj{"replicas": 3}, "If-Match", `"1"`).obj(t)
	if u["replicas"] != 3.0 || u["status"].(map[string]any)["ready_replicas"] != 2.0 || u["environment_variables"].(map[string]any)["PORT"] != "80" {
		t.Errorf("after patch: %v", u)
	}
	e.must(http.StatusOK, http.MethodPut, v1+"/deployments/"+id, deploymentBody("viewer", a.str("id"), q.str("id")).with("replicas", 0))
	e.must(http.StatusPreconditionFailed, http.MethodDelete, v1+"/deployments/"+id, nil, "If-Match", `"1"`)
	l := e.must(http.StatusOK, http.MethodGet, v1+"/deployments?queue_id=svc", nil).obj(t)
	if n := len(l["items"].([]any)); n != 1 {
		t.Errorf("list by queue name: %d", n)
	}
	e.must(http.StatusNoContent, http.MethodDelete, v1+"/deployments/"+id, nil, "If-Match", `"3"`)
	e.must(http.StatusNotFound, http.MethodGet, v1+"/deployments/"+id, nil)

	evs := e.events(events.FilterSubject(events.KindDeployment, q.str("id"), id))
	if len(evs) != 4 || evs[3].Type != events.TypeDeploymentDeleted {
		t.Errorf("deployment events: %d", len(evs))
	}
}

// TestDeploymentRuntime: the API resolves a deployment's runtime when it is
// written (the rules of a job) and stores it, out of responses; a later
// app-runtime-config applies at the next write; no image is a 422.
func TestDeploymentRuntime(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", queueBody("svc").with("environment_variables", obj{"Q": "q", "PORT": "1"}))
	a := e.create("/applications", appBody("viewer", "2.0").with("command", []string{"/srv"}).with("environment_variables", obj{"A": "a"}))
	d := e.create("/deployments", deploymentBody("viewer", a.str("id"), "svc").with("environment_variables", obj{"PORT": "80"}))
	if _, ok := d["runtime"]; ok {
		t.Errorf("runtime in a response: %v", d)
	}
	stored := func() events.RuntimeSpec {
		t.Helper()
		var doc struct {
			Runtime events.RuntimeSpec `bson:"runtime"`
		}
		if err := e.db.Collection("deployments").FindOne(context.Background(), bson.D{{Key: "_id", Value: d.str("id")}}).Decode(&doc); err != nil {
			t.Fatal(err)
		}
		return doc.Runtime
	}
	want := events.RuntimeSpec{Image: "registry.example/sim:2.0", Command: []string{"/srv"},
		EnvironmentVariables: map[string]string{"Q": "q", "A": "a", "PORT": "80"}}
	if diff := cmp.Diff(want, stored()); diff != "" {
		t.Errorf("runtime on create (-want +got):\n%s", diff)
	}
	// An app-runtime-config written later applies at the next write of the deployment.
	e.create("/app-runtime-config/svc/application/"+a.str("id"), arcBody())
	if diff := cmp.Diff(want, stored()); diff != "" {
		t.Errorf("runtime changed without a write (-want +got):\n%s", diff)
	}
	e.must(http.StatusOK, http.MethodPatch, v1+"/deployments/viewer", obj{"replicas": 1})
	want.Image, want.WorkingDirectory = "registry.example/sim:gpu", "/work"
	if diff := cmp.Diff(want, stored()); diff != "" {
		t.Errorf("runtime after patch (-want +got):\n%s", diff)
	}
	// No image anywhere: 422 naming application_id, nothing written.
	bare := e.create("/applications", obj{"name": "bare", "version": "1"})
	assertProblem(t, e.must(http.StatusUnprocessableEntity, http.MethodPost, v1+"/deployments", deploymentBody("bare", bare.str("id"), "svc")), "application_id")
	e.must(http.StatusNotFound, http.MethodGet, v1+"/deployments/bare", nil)
}

// TestPagination pages through every kind with limit 5: every item once, in
// creation order, and no next_cursor on the last page.
func TestPagination(t *testing.T) {
	e := startEnv(t)
	const n = 23
	q := e.create("/queues", queueBody("pages"))
	var wantQueues, wantPlugins, wantApps, wantDeps, wantARCs []string
	for _, b := range e.listAll(t, "/queues", 50) {
		wantQueues = append(wantQueues, b)
	}
	for i := range n {
		wantQueues = append(wantQueues, e.create("/queues", queueBody(fmt.Sprintf("q%02d", i))).str("id"))
		wantPlugins = append(wantPlugins, e.create("/plugins", pluginBody(fmt.Sprintf("p%02d", i))).str("id"))
		a := e.create("/applications", appBody("app", fmt.Sprintf("1.0.%d", i)))
		wantApps = append(wantApps, a.str("id"))
		wantDeps = append(wantDeps, e.create("/deployments", deploymentBody(fmt.Sprintf("d%02d", i), a.str("id"), "pages")).str("id"))
		wantARCs = append(wantARCs, e.create("/app-runtime-config/pages/application/"+a.str("id"), arcBody()).str("id"))
	}
	for path, want := range map[string][]string{
		"/queues": wantQueues, "/plugins": wantPlugins, "/applications": wantApps,
		"/deployments": wantDeps, "/app-runtime-config?queue_id=" + q.str("id"): wantARCs,
	} {
		if diff := cmp.Diff(want, e.listAll(t, path, 5)); diff != "" {
			t.Errorf("%s pages (-want +got):\n%s", path, diff)
		}
	}
	if got := len(e.listAll(t, "/applications?name=app", 1000)); got != n {
		t.Errorf("one page of 1000: %d items", got)
	}
	for _, bad := range []string{"limit=0", "limit=1001", "limit=x"} {
		assertProblem(t, e.must(http.StatusUnprocessableEntity, http.MethodGet, v1+"/queues?"+bad, nil), strings.Split(bad, "=")[0])
	}
	// API.md: a malformed cursor is a 400 naming it, whichever check finds it.
	assertProblem(t, e.must(http.StatusBadRequest, http.MethodGet, v1+"/queues?cursor=%24gt", nil), "cursor")
}

// listAll follows next_cursor with the given page size and returns the ids.
func (e *env) listAll(t *testing.T, path string, limit int) []string {
	t.Helper()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	var ids []string
	cursor := ""
	for page := 0; page < 100; page++ {
		l := e.must(http.StatusOK, http.MethodGet, fmt.Sprintf("%s%s%slimit=%d&cursor=%s", v1, path, sep, limit, url.QueryEscape(cursor)), nil).obj(t)
		items := l["items"].([]any)
		if len(items) > limit {
			t.Fatalf("%s: page of %d items with limit %d", path, len(items), limit)
		}
		for _, it := range items {
			ids = append(ids, it.(map[string]any)["id"].(string))
		}
		next, ok := l["next_cursor"].(string)
		if !ok {
			return ids
		}
		if len(items) != limit {
			t.Errorf("%s: a short page (%d) with a next_cursor", path, len(items))
		}
		cursor = next
	}
	t.Fatalf("%s: more than 100 pages", path)
	return nil
}

func TestIdempotencyKey(t *testing.T) {
	e := startEnv(t)
	body := queueBody("once").with("description", "first")
	first := e.must(http.StatusCreated, http.MethodPost, v1+"/queues", body, "Idempotency-Key", "k1")
	// Same key, same body (members reordered and spaced): the original response.
	again := e.must(http.StatusCreated, http.MethodPost, v1+"/queues", `{ "description": "first",  "name": "once" }`, "Idempotency-Key", "k1")
	if string(first.Body) != string(again.Body) || first.Header.Get("Location") != again.Header.Get("Location") || first.Header.Get("ETag") != again.Header.Get("ETag") {
		t.Errorf("replay differs:\n%s\n%s", first, again)
	}
	// Different body: 422 naming the header.
	assertProblem(t, e.must(http.StatusUnprocessableEntity, http.MethodPost, v1+"/queues", body.with("description", "second"), "Idempotency-Key", "k1"), "Idempotency-Key")
	if n := e.count("queues"); n != 3 {
		t.Errorf("queues: %d, want the 2 built-in ones and 1", n)
	}
	// Keys are per route: the same key on another route is a new key.
	e.must(http.StatusCreated, http.MethodPost, v1+"/applications", appBody("a", "1"), "Idempotency-Key", "k1")
	// A failed request does not consume its key.
	e.must(http.StatusUnprocessableEntity, http.MethodPost, v1+"/plugins", obj{"name": "p", "type": "docker", "config": obj{"host": "bad"}}, "Idempotency-Key", "k2")
	e.must(http.StatusCreated, http.MethodPost, v1+"/plugins", obj{"name": "p", "type": "docker"}, "Idempotency-Key", "k2")
	e.must(http.StatusCreated, http.MethodPost, v1+"/plugins", obj{"name": "p", "type": "docker"}, "Idempotency-Key", "k2")
	// Also on the app-runtime-config route, whose POST has path parameters.
	a := e.create("/applications", appBody("b", "1"))
	arc := v1 + "/app-runtime-config/once/application/" + a.str("id")
	one := e.must(http.StatusCreated, http.MethodPost, arc, arcBody(), "Idempotency-Key", "k3")
	two := e.must(http.StatusCreated, http.MethodPost, arc, arcBody(), "Idempotency-Key", "k3")
	if string(one.Body) != string(two.Body) {
		t.Errorf("app-runtime-config replay differs")
	}
	e.must(http.StatusBadRequest, http.MethodPost, v1+"/queues", queueBody("x"), "Idempotency-Key", strings.Repeat("k", 256))

	var rec struct {
		ExpiresAt time.Time `bson:"expires_at"`
	}
	if err := e.db.Collection("idempotency_keys").FindOne(context.Background(), bson.D{}).Decode(&rec); err != nil {
		t.Fatal(err)
	}
	if until := time.Until(rec.ExpiresAt); until < 23*time.Hour || until > 25*time.Hour {
		t.Errorf("key expires in %v, want about 24h", until)
	}
}

// assertProblem checks that r is an RFC 9457 problem naming field (if not empty).
func assertProblem(t testing.TB, r resp, field string) {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("Content-Type %q for %s", ct, r)
	}
	var p struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
		Errors []struct {
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(r.Body, &p); err != nil {
		t.Fatalf("problem %s: %v", r.Body, err)
	}
	if p.Status != r.Status || p.Title == "" || p.Type == "" {
		t.Errorf("problem %s", r.Body)
	}
	if field == "" {
		return
	}
	for _, e := range p.Errors {
		if e.Field == field || strings.HasPrefix(e.Field, field+".") || strings.HasPrefix(e.Field, field+"[") {
			return
		}
	}
	t.Errorf("problem does not name %q: %s", field, r.Body)
}

func bytesContain(b []byte, s string) bool { return strings.Contains(string(b), s) }
