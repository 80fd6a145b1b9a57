package launch

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/ledger"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestReplicaMovedToAnotherQueue: a deployment moved to another queue
// runs no replica on a lease of its old queue. Its running replica is
// stopped (the slot waits, pending, for a lease on the new queue) and,
// once admitted there, started again as the next generation. Before, the
// launcher took any lease of the slot, on whatever queue, and kept the
// replica running while the new queue's limit never applied.
func TestReplicaMovedToAnotherQueue(t *testing.T) {
	e := newEnv(t)
	e.insert(QueuesCollection, &events.Queue{Meta: events.Meta{ID: "q-Small", Version: 1}, Name: "Small"})
	e.insert(DeploymentsCollection, deployment{Meta: events.Meta{ID: "dep-01MV", Version: 1}, Name: "moved",
		ApplicationID: "app-1", QueueID: "q-Default", Replicas: 1, Status: deploymentStatus{Conditions: []events.Condition{}},
		Runtime: events.RuntimeSpec{Image: "local", Command: []string{"/bin/sh", "-c"}, Args: []string{"echo up; exec sleep 60"}}})
	setLease := func(queue string) {
		t.Helper()
		held := ledger.Encode(map[string][]ledger.Claim{"dep-01MV/replica/0": {{Queue: queue, Count: 1}}})
		_, err := e.db.Collection(ledger.Collection).UpdateOne(context.Background(), bson.D{{Key: "_id", Value: ledger.ID}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "epoch", Value: 1}, {Key: "held", Value: held}}}, {Key: "$inc", Value: bson.D{{Key: "version", Value: 1}}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	e.insert(ledger.Collection, ledger.Doc{ID: ledger.ID, Epoch: 1, Version: 1})
	setLease("q-Default")
	e.start()
	waitFor := func(what string, ok func(deployment) bool) deployment {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			d := e.deployment("dep-01MV")
			if ok(d) {
				return d
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: never; status %+v", what, d.Status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("the replica runs on q-Default", func(d deployment) bool { return d.Status.ReadyReplicas == 1 })

	// The deployment moves to q-Small; its lease is still on q-Default.
	_, err := e.db.Collection(DeploymentsCollection).UpdateOne(context.Background(), bson.D{{Key: "_id", Value: "dep-01MV"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "queue_id", Value: "q-Small"}}}, {Key: "$inc", Value: bson.D{{Key: "version", Value: 1}}}})
	if err != nil {
		t.Fatal(err)
	}
	d := waitFor("the replica stopped, waiting for q-Small", func(d deployment) bool {
		return d.Status.ReadyReplicas == 0 && len(d.Status.Replicas) == 1 && d.Status.Replicas[0].State == replicaPending
	})
	if rs := d.Status.Replicas[0]; rs.Restarts != 1 || rs.LastEndedAt == nil || rs.LastMessage == "" {
		t.Errorf("slot 0 after the move: %+v; want the next generation (restarts 1) and how the last one ended", rs)
	}
	time.Sleep(time.Second) // a round or two: nothing starts without a lease on q-Small
	if _, err := os.Stat(e.dataDir + "/local/dep-01MV-r0/replica-1"); !os.IsNotExist(err) {
		t.Errorf("generation 1 started without a lease on q-Small (%v)", err)
	}

	setLease("q-Small")
	d = waitFor("the replica runs on q-Small", func(d deployment) bool { return d.Status.ReadyReplicas == 1 })
	if rs := d.Status.Replicas[0]; rs.Restarts != 1 {
		t.Errorf("slot 0 on q-Small: %+v, want generation 1", rs)
	}
}
