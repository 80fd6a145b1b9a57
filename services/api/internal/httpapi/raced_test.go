package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/api/internal/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// raceEnv is a deployment, and a writer that changes it (as the launcher
// writes its status) between the API's read of it and its write, times
// times per request (-1: every time).
type raceEnv struct {
	*artifactEnv
	dep string

	mu     sync.Mutex
	times  int
	writes int // the concurrent writes made
	ready  int // the ready_replicas the last one wrote
}

func newRaceEnv(t *testing.T) *raceEnv {
	e := &raceEnv{artifactEnv: newEnv(t, nil)}
	e.json(http.StatusCreated, http.MethodPost, "/queues", map[string]any{"name": "Default"}, nil)
	e.json(http.StatusCreated, http.MethodPost, "/applications", map[string]any{"name": "sim", "version": "1.0", "image": "registry.example/sim:1.0"}, nil)
	var d Deployment
	e.json(http.StatusCreated, http.MethodPost, "/deployments", map[string]any{"name": "w1", "application_id": "sim:1.0", "queue_id": "Default", "replicas": 2}, &d)
	e.dep = d.ID
	e.srv.beforeWrite = func(ctx context.Context, coll, id string) {
		e.mu.Lock()
		defer e.mu.Unlock()
		if coll != store.Deployments || id != e.dep || e.times == 0 {
			return
		}
		e.times--
		e.writes++
		e.ready = e.writes
		_, err := e.db.Collection(store.Deployments).UpdateOne(ctx, bson.D{{Key: "_id", Value: id}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "status.ready_replicas", Value: e.ready}}}, {Key: "$inc", Value: bson.D{{Key: "version", Value: 1}}}})
		if err != nil {
			t.Errorf("concurrent write: %v", err)
		}
	}
	return e
}

// race makes the next n reads of the deployment be followed by a change
// before the write (-1: all of them).
func (e *raceEnv) race(n int) {
	e.mu.Lock()
	e.times, e.writes = n, 0
	e.mu.Unlock()
}

func (e *raceEnv) get() Deployment {
	var d Deployment
	e.json(http.StatusOK, http.MethodGet, "/deployments/"+e.dep, nil, &d)
	return d
}

// A PUT, PATCH or DELETE without If-Match (or with "*") that another
// writer overtakes between its read and its write reads the resource again
// and writes it again: the client asked for no version, and the launcher
// writes a deployment's status at any time. The concurrent change is kept.
func TestUnconditionalWritesRetryAConcurrentChange(t *testing.T) {
	e := newRaceEnv(t)
	v0 := e.get().Version

	e.race(3)
	var d Deployment
	e.json(http.StatusOK, http.MethodPatch, "/deployments/"+e.dep, map[string]any{"replicas": 6}, &d, "Content-Type", "application/merge-patch+json")
	if d.Replicas != 6 || d.Version != v0+4 || d.Status.ReadyReplicas != 3 {
		t.Errorf("PATCH answered replicas %d, version %d, ready_replicas %d; want 6, %d (3 concurrent writes and the patch), 3 (the concurrent writer's)",
			d.Replicas, d.Version, v0+4, d.Status.ReadyReplicas)
	}

	e.race(2)
	e.json(http.StatusOK, http.MethodPut, "/deployments/"+e.dep, map[string]any{"name": "w1", "application_id": "sim:1.0", "queue_id": "Default", "replicas": 1}, &d, "If-Match", "*")
	if got := e.get(); got.Replicas != 1 || got.Version != v0+7 || got.Status.ReadyReplicas != 2 {
		t.Errorf("after the PUT: replicas %d, version %d, ready_replicas %d; want 1, %d, 2", got.Replicas, got.Version, v0+7, got.Status.ReadyReplicas)
	}

	e.race(3)
	e.json(http.StatusNoContent, http.MethodDelete, "/deployments/"+e.dep, nil, nil)
	e.json(http.StatusNotFound, http.MethodGet, "/deployments/"+e.dep, nil, nil)
}

// With an If-Match that names a version, a change between the check and
// the write is the client's 412: it asked for the change at that version.
// Without one, a resource that keeps changing is a 412 after raceAttempts.
func TestConditionalWritesDoNotRetry(t *testing.T) {
	e := newRaceEnv(t)
	for _, c := range []struct {
		method string
		body   any
		hdr    []string
	}{
		{http.MethodPatch, map[string]any{"replicas": 6}, []string{"Content-Type", "application/merge-patch+json"}},
		{http.MethodPut, map[string]any{"name": "w1", "application_id": "sim:1.0", "queue_id": "Default", "replicas": 6}, nil},
		{http.MethodDelete, nil, nil},
	} {
		e.race(1)
		cur := strconv.FormatInt(e.get().Version, 10)
		a := e.json(http.StatusPreconditionFailed, c.method, "/deployments/"+e.dep, c.body, nil, append(c.hdr, "If-Match", `"`+cur+`"`)...)
		if !strings.Contains(string(a.body), "changed concurrently") || e.writes != 1 {
			t.Errorf("%s with If-Match: %s after %d concurrent writes, want a 412 after one", c.method, a, e.writes)
		}
	}

	e.race(-1)
	a := e.json(http.StatusPreconditionFailed, http.MethodDelete, "/deployments/"+e.dep, nil, nil)
	if e.writes != raceAttempts || !strings.Contains(string(a.body), "changed concurrently") {
		t.Errorf("DELETE of a deployment that keeps changing: %s after %d tries, want a 412 after %d", a, e.writes, raceAttempts)
	}
	e.race(0)
	e.json(http.StatusNoContent, http.MethodDelete, "/deployments/"+e.dep, nil, nil)
}

// The same with a real concurrent writer: a goroutine writes the
// deployment's status in a loop, as the launcher does, while the client
// patches and then deletes it without If-Match.
func TestUnconditionalWritesBesideAWriter(t *testing.T) {
	e := newRaceEnv(t)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			_, _ = e.db.Collection(store.Deployments).UpdateOne(ctx, bson.D{{Key: "_id", Value: e.dep}, outbox.NotDeleted()},
				bson.D{{Key: "$set", Value: bson.D{{Key: "status.ready_replicas", Value: i % 3}}}, {Key: "$inc", Value: bson.D{{Key: "version", Value: 1}}}})
			time.Sleep(20 * time.Millisecond) // more often than a launcher writes a deployment
		}
	}()
	defer func() { stop(); wg.Wait() }()
	for i := range 10 {
		e.json(http.StatusOK, http.MethodPatch, "/deployments/"+e.dep, map[string]any{"replicas": 3 + i}, nil, "Content-Type", "application/merge-patch+json")
	}
	e.json(http.StatusNoContent, http.MethodDelete, "/deployments/"+e.dep, nil, nil)
}
