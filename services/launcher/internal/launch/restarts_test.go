package launch

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/ledger"
	"github.com/avxrm/rm/services/launcher/internal/driver"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// replicaGate is a driver whose starts of a replica's restart (generation
// 1 and on) fail, as a runtime that cannot be reached, while closed; it
// records the generations it was asked to start.
type replicaGate struct {
	driver.Driver
	mu     sync.Mutex
	closed bool
	failed chan struct{} // closed at the first start it failed
	gens   []int
}

func (g *replicaGate) Start(ctx context.Context, s driver.Spec) error {
	if s.Ref.Role == driver.RoleReplica {
		g.mu.Lock()
		g.gens = append(g.gens, s.Ref.Index)
		fail := g.closed && s.Ref.Index > 0
		if fail {
			select {
			case <-g.failed:
			default:
				close(g.failed)
			}
		}
		g.mu.Unlock()
		if fail {
			return driver.Mark(driver.ErrUnavailable, errors.New("the runtime is away"))
		}
	}
	return g.Driver.Start(ctx, s)
}

// startFailOnce starts a launcher whose local driver is wrapped by wrap,
// and deployment id of one replica on q-Default, admitted, whose first
// replica exits 1 and the next ones run.
func (e *env) startFailOnce(id string, wrap func(driver.Driver) driver.Driver) {
	e.t.Helper()
	e.configure = func(_ *Config, drivers map[string]driver.Factory) {
		local := drivers["local"]
		drivers["local"] = func(raw json.RawMessage, opts driver.Options) (driver.Driver, error) {
			d, err := local(raw, opts)
			return wrap(d), err
		}
	}
	mark := e.dataDir + "/failed-once"
	e.insert(DeploymentsCollection, deployment{Meta: events.Meta{ID: id, Version: 1}, Name: "fail-once",
		ApplicationID: "app-1", QueueID: "q-Default", Replicas: 1, Status: deploymentStatus{Conditions: []events.Condition{}},
		Runtime: events.RuntimeSpec{Image: "local", Command: []string{"/bin/sh", "-c"},
			Args: []string{`if [ -e "` + mark + `" ]; then exec sleep 60; fi; touch "` + mark + `"; exit 1`}}})
	claim := []ledger.Claim{{Queue: "q-Default", Count: 1}}
	e.insert(ledger.Collection, ledger.Doc{ID: ledger.ID, Epoch: 1, Version: 1, Held: ledger.Encode(map[string][]ledger.Claim{id + "/replica/0": claim})})
	e.start()
}

// deployment reads deployment id from the store.
func (e *env) deployment(id string) deployment {
	e.t.Helper()
	var d deployment
	if err := e.db.Collection(DeploymentsCollection).FindOne(context.Background(), bson.D{{Key: "_id", Value: id}}).Decode(&d); err != nil {
		e.t.Fatal(err)
	}
	return d
}

// TestReplicaRestartsSurviveAFailedStart: a replica that ended is removed
// before its slot is started again as the next generation; when that
// start fails, the next round starts the same generation again, and the
// slot's restart count does not go back to 0. Before, the removal had
// emptied the launcher's view of the slot, and the next round started
// generation 0, reporting no restart.
func TestReplicaRestartsSurviveAFailedStart(t *testing.T) {
	e := newEnv(t)
	gate := &replicaGate{closed: true, failed: make(chan struct{})}
	e.startFailOnce("dep-01R", func(d driver.Driver) driver.Driver { gate.Driver = d; return gate })
	<-gate.failed // the restart's start failed
	gate.mu.Lock()
	gate.closed = false
	gate.mu.Unlock()

	deadline := time.Now().Add(30 * time.Second)
	var d deployment
	for {
		if d = e.deployment("dep-01R"); d.Status.ReadyReplicas == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica never ran again: %+v", d.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	gate.mu.Lock()
	defer gate.mu.Unlock()
	if reps := d.Status.Replicas; len(reps) != 1 || reps[0].Restarts != 1 {
		t.Errorf("replicas %+v, want slot 0 restarted once", reps)
	}
	for i, g := range gate.gens[1:] {
		if g != 1 {
			t.Errorf("start %d of the slot was of generation %d, want 1 (starts: %v)", i+2, g, gate.gens)
		}
	}
}
