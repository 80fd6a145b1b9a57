package up_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
)

type deploymentView struct {
	ID       string `json:"id"`
	Replicas int    `json:"replicas"`
	Status   struct {
		ReadyReplicas int                `json:"ready_replicas"`
		Conditions    []events.Condition `json:"conditions"`
	} `json:"status"`
}

func (d deploymentView) condition(typ string) *events.Condition {
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == typ {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}

// Deployments count against their queue: 3 replicas on a queue limited to 4
// leave room for exactly one 1-worker job; scaled to 5, two replicas wait
// and the deployment says so with the numbers; scaled down to 1 it gives
// capacity back to the waiting job; deleted, it gives back the rest.
func TestDeploymentReplicasHoldLeases(t *testing.T) {
	sys := startSystemIn(t, t.TempDir())
	c := newClient(t, sys.HTTPAddr)
	c.simulated()
	c.createQueue("Shared", 4)
	var app struct {
		ID string `json:"id"`
	}
	c.must(http.MethodPost, "/api/resources/v1/applications", map[string]any{"name": "viz", "version": "1", "image": "registry.example/viz:1"}, http.StatusCreated, &app)
	var dep deploymentView
	c.must(http.MethodPost, "/api/resources/v1/deployments", map[string]any{"name": "viz", "application_id": app.ID, "queue_id": "Shared", "replicas": 3}, http.StatusCreated, &dep)
	path := "/api/resources/v1/deployments/" + dep.ID
	waitDep := func(what string, ok func(deploymentView) bool) deploymentView {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			var d deploymentView
			c.must(http.MethodGet, path, nil, http.StatusOK, &d)
			if ok(d) {
				return d
			}
			if time.Now().After(deadline) {
				t.Fatalf("deployment never %s: %+v", what, d)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitDep("3 ready", func(d deploymentView) bool { return d.Status.ReadyReplicas == 3 })
	if u := c.queue("Shared").Usage; u == nil || u.AllocatedWorkerInstances != 3 {
		t.Errorf("usage with 3 replicas: %+v, want 3 allocated", u)
	}

	j1, j2 := c.submit("Shared", 1), c.submit("Shared", 1)
	c.waitJobFor(j1.ID, "admitted", 30*time.Second, isAdmitted)
	j := c.waitJobFor(j2.ID, "pending", 30*time.Second, func(j events.Job) bool { return j.Status == events.JobPending })
	if len(j.Conditions) == 0 || !strings.Contains(j.Conditions[0].Message, "queue Shared allows 4 worker instances, 4 in use (3 by deployments' replicas), job needs 1") {
		t.Errorf("second job waits with %+v", j.Conditions)
	}

	c.must(http.MethodPatch, path, map[string]any{"replicas": 5}, http.StatusOK, nil)
	d := waitDep("pending for 2 replicas", func(d deploymentView) bool {
		c := d.condition("Admitted")
		return d.Replicas == 5 && c != nil && c.Status == "False"
	})
	if c := d.condition("Admitted"); c.Reason != "InsufficientWorkerCapacity" ||
		!strings.Contains(c.Message, "3 of 5 replicas admitted, 2 pending: queue Shared allows 4 worker instances, 4 in use, each replica needs 1") {
		t.Errorf("scaled to 5: %+v", c)
	}
	if d.Status.ReadyReplicas != 3 {
		t.Errorf("scaled to 5 on a full queue: %d replicas ready, want 3", d.Status.ReadyReplicas)
	}

	c.must(http.MethodPatch, path, map[string]any{"replicas": 1}, http.StatusOK, nil)
	c.waitJobFor(j2.ID, "admitted", 30*time.Second, isAdmitted)
	waitDep("1 ready", func(d deploymentView) bool { return d.Status.ReadyReplicas == 1 })
	if u := c.queue("Shared").Usage; u.AllocatedWorkerInstances != 3 {
		t.Errorf("usage with 1 replica and 2 jobs: %+v, want 3 allocated", u)
	}

	c.must(http.MethodDelete, path, nil, http.StatusNoContent, nil)
	deadline := time.Now().Add(30 * time.Second)
	for c.queue("Shared").Usage.AllocatedWorkerInstances != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("deleted deployment still holds capacity: %+v", c.queue("Shared").Usage)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
