package launch

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// slowWatch is a driver whose Watch holds back the statuses of replica
// generation 1 until release is closed, as a runtime whose events lag its
// starts; it records the generations it was asked to start, and calls
// onStart at the start of generation 1.
type slowWatch struct {
	driver.Driver
	release chan struct{}
	onStart func()
	mu      sync.Mutex
	gens    []int
}

func (w *slowWatch) Start(ctx context.Context, s driver.Spec) error {
	if s.Ref.Role == driver.RoleReplica {
		w.mu.Lock()
		w.gens = append(w.gens, s.Ref.Index)
		first := s.Ref.Index == 1 && w.onStart != nil
		f := w.onStart
		if first {
			w.onStart = nil
		}
		w.mu.Unlock()
		if first {
			f()
		}
	}
	return w.Driver.Start(ctx, s)
}

func (w *slowWatch) Watch(ctx context.Context) (<-chan driver.Status, error) {
	in, err := w.Driver.Watch(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan driver.Status)
	go func() {
		defer close(out)
		var held []driver.Status
		released := w.release
		for {
			select {
			case st, ok := <-in:
				if !ok {
					return
				}
				if released != nil && st.Role == driver.RoleReplica && st.Index == 1 {
					held = append(held, st)
					continue
				}
				out <- st
			case <-released:
				released = nil
				for _, st := range held {
					out <- st
				}
				held = nil
			}
		}
	}()
	return out, nil
}

// TestReplicaStartNotYetSeen: a round that runs after a replica's start
// returned but before the driver reports the new instance must not start
// the slot again. Here the restart of slot 0 as generation 1 is followed
// at once by another round (the deployment changed under the first, whose
// status write conflicts), while the driver's watch has not reported
// generation 1 and generation 0 was removed: the round saw the slot
// empty and started generation 0 again, a second replica in the slot.
func TestReplicaStartNotYetSeen(t *testing.T) {
	e := newEnv(t)
	w := &slowWatch{release: make(chan struct{})}
	changed := make(chan struct{})
	var bumped int64 // the deployment's version once changed
	w.onStart = func() {
		// The deployment changes (as by a patch) while the round that
		// starts generation 1 runs: its status write conflicts and the
		// deployment is reconciled again at once.
		var d deployment
		if err := e.db.Collection(DeploymentsCollection).FindOneAndUpdate(context.Background(), bson.D{{Key: "_id", Value: "dep-01U"}},
			bson.D{{Key: "$inc", Value: bson.D{{Key: "version", Value: 1}}}},
			options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&d); err != nil {
			t.Error(err)
		}
		bumped = d.Version
		close(changed)
	}
	e.startFailOnce("dep-01U", func(d driver.Driver) driver.Driver { w.Driver = d; return w })
	<-changed

	read := func() deployment { return e.deployment("dep-01U") }
	// Wait for the round after the conflict: it writes the status.
	deadline := time.Now().Add(30 * time.Second)
	for read().Version == bumped {
		if time.Now().After(deadline) {
			t.Fatal("no round wrote the deployment after it changed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(w.release)
	for d := read(); d.Status.ReadyReplicas != 1; d = read() {
		if time.Now().After(deadline) {
			t.Fatalf("the replica never ran again: %+v", d.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.gens) < 2 || w.gens[0] != 0 || w.gens[1] != 1 {
		t.Fatalf("starts of the slot %v, want generation 0 then 1", w.gens)
	}
	for _, g := range w.gens[2:] {
		if g != 1 {
			t.Errorf("starts of the slot %v: generation %d started again after generation 1", w.gens, g)
		}
	}
	if d := read(); len(d.Status.Replicas) != 1 || d.Status.Replicas[0].Restarts != 1 {
		t.Errorf("replicas %+v, want slot 0 restarted once", d.Status.Replicas)
	}
}
