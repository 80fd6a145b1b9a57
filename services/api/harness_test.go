package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"testing"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/api"
	"github.com/avxrm/rm/services/api/internal/apitest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// env is a real API over real FerretDB and NATS, served on loopback.
type env struct {
	t    testing.TB
	base string // http://127.0.0.1:port
	db   *mongo.Database
	js   jetstream.JetStream
	ob   *outbox.Outbox
	svc  *api.Service
	// ferret is the embedded FerretDB, for EnsureIDIndex.
	ferret *ferretembed.Server
	// nats is the in-process NATS server.
	nats *server.Server
}

const v1 = "/api/resources/v1"

// startEnv starts FerretDB, NATS and the API for one test.
func startEnv(t testing.TB) *env {
	t.Helper()
	return startEnvConfigured(t, api.Config{})
}

// startEnvConfigured is startEnv with the API's Config cfg.
func startEnvConfigured(t testing.TB, cfg api.Config) *env {
	t.Helper()
	return envOf(t, apitest.StartConfigured(t, apitest.TestLogger(t), cfg))
}

// envOf is the env of the API a serves.
func envOf(t testing.TB, a *apitest.Env) *env {
	return &env{t: t, base: a.URL, db: a.DB, js: a.JS, ob: a.Outbox, svc: a.Svc, ferret: a.Ferret, nats: a.NATS}
}

// resp is an answer of the API.
type resp apitest.Response

// obj decodes the body as a JSON object.
func (r resp) obj(t testing.TB) obj {
	t.Helper()
	var o obj
	if err := json.Unmarshal(r.Body, &o); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
	return o
}

func (r resp) String() string { return fmt.Sprintf("%d %s", r.Status, r.Body) }

// do sends a request; body is JSON-encoded unless it is []byte or string.
// headers are name, value pairs.
func (e *env) do(method, path string, body any, headers ...string) resp {
	e.t.Helper()
	return resp(apitest.Do(e.t, method, e.base+path, body, headers...))
}

// must sends a request and fails the test unless the status is want.
func (e *env) must(want int, method, path string, body any, headers ...string) resp {
	e.t.Helper()
	r := e.do(method, path, body, headers...)
	if r.Status != want {
		e.t.Fatalf("%s %s = %s, want %d", method, path, r, want)
	}
	return r
}

// stream opens the event stream at path (under v1, query included) after
// Last-Event-ID last, until ctx ends; the test fails unless it answers 200.
func (e *env) stream(ctx context.Context, path, last string) *bufio.Scanner {
	e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.base+v1+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Last-Event-ID", last)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { res.Body.Close() })
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		e.t.Fatalf("GET %s = %d %s", path, res.StatusCode, b)
	}
	return bufio.NewScanner(res.Body)
}

// create POSTs body to path and returns the created resource.
func (e *env) create(path string, body any) obj {
	e.t.Helper()
	return e.must(http.StatusCreated, http.MethodPost, v1+path, body).obj(e.t)
}

// count is the number of live documents in a collection.
func (e *env) count(coll string) int64 {
	e.t.Helper()
	n, err := e.db.Collection(coll).CountDocuments(context.Background(), bson.D{{Key: "_deleted", Value: bson.D{{Key: "$exists", Value: false}}}})
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// events returns the events stored so far on subjects matching filter.
// Writes publish before they answer, so no waiting is needed.
func (e *env) events(filter string) []events.Event {
	e.t.Helper()
	return eventstest.ReadAll(e.t, e.js, filter)
}

// obj is a JSON object: request bodies built by the builders below, and
// decoded responses.
type obj map[string]any

// with returns a copy of o with k set to v (nil deletes k).
func (o obj) with(k string, v any) obj {
	c := maps.Clone(o)
	if v == nil {
		delete(c, k)
	} else {
		c[k] = v
	}
	return c
}

func (o obj) str(k string) string { s, _ := o[k].(string); return s }

// Builders for request bodies: the smallest valid body of each kind.
func queueBody(name string) obj { return obj{"name": name} }

func pluginBody(name string) obj {
	return obj{"name": name, "type": "simulated", "config": obj{"run_seconds": 1}}
}

func k8sPluginBody(name string) obj {
	return obj{"name": name, "type": "kubernetes", "config": obj{"namespace": "jobs", "kubeconfig": "apiVersion: v1\nkind: Config\n# secret"}}
}

func appBody(name, version string) obj {
	return obj{"name": name, "version": version, "image": "registry.example/sim:" + version}
}

func arcBody() obj { return obj{"image": "registry.example/sim:gpu", "working_directory": "/work"} }

func deploymentBody(name, appID, queueID string) obj {
	return obj{"name": name, "application_id": appID, "queue_id": queueID, "replicas": 2}
}
