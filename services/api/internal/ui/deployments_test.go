package ui_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// A queue's page lists the deployments whose replicas hold its capacity; a
// deployment's page shows each replica's state, restarts and last end, and
// the chosen replica's log (here no launcher serves it: the page says so).
func TestDeploymentPage(t *testing.T) {
	e := startEnv(t)
	e.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "Svc", "maximum_allowed_worker_instances": 3}, http.StatusCreated)
	e.must(http.MethodPost, "/api/resources/v1/applications", map[string]any{"name": "crashy", "version": "1", "image": "registry.example/crashy:1"}, http.StatusCreated)
	d := e.must(http.MethodPost, "/api/resources/v1/deployments", map[string]any{"name": "flaky", "application_id": "crashy:1", "queue_id": "Svc", "replicas": 2}, http.StatusCreated)
	id := d["id"].(string)
	// What the launcher would write: slot 0 runs, slot 1 waits to be started again.
	status := bson.D{{Key: "ready_replicas", Value: 1}, {Key: "conditions", Value: bson.A{
		bson.D{{Key: "type", Value: "Available"}, {Key: "status", Value: "False"}, {Key: "reason", Value: "ReplicasNotReady"}, {Key: "message", Value: "1 of 2 replicas running"}}}},
		{Key: "replicas", Value: bson.A{
			bson.D{{Key: "slot", Value: 0}, {Key: "state", Value: "running"}, {Key: "restarts", Value: 0}},
			bson.D{{Key: "slot", Value: 1}, {Key: "state", Value: "restarting"}, {Key: "restarts", Value: 3},
				{Key: "last_exit_code", Value: 3}, {Key: "last_message", Value: "exited with code 3"}}}}}
	if _, err := e.db.Collection("deployments").UpdateOne(context.Background(), bson.D{{Key: "_id", Value: id}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: status}}}}); err != nil {
		t.Fatal(err)
	}

	q := e.page("/ui/queues/Svc")
	wantIn(t, "queue page", q, `<h2 id="deployments-h">Deployments`, `<a href="/ui/deployments/`+id+`">flaky</a>`,
		`<td class="num">1 of 2</td>`, `<td class="num">3</td>`, "<strong>ReplicasNotReady</strong> 1 of 2 replicas running")

	p := e.page("/ui/deployments/flaky")
	wantIn(t, "deployment page", p, "<h1>Deployment flaky</h1>", "crashy 1 on queue", `href="/ui/queues/Svc"`, "1 of 2 replicas running · 3 restarts",
		`<tr data-key="1" data-state="restarting">`, `<span class="status s-restarting">restarting</span>`, "exited with code 3",
		"Log tail of replica 0", `id="log-error"`, "no launcher is reachable to serve logs")
	if p := e.page("/ui/deployments/" + id + "?log=1"); !strings.Contains(p, "Log tail of replica 1") {
		t.Errorf("?log=1 does not show replica 1's log")
	}
	for _, bad := range []string{"?log=2", "?log=x"} {
		if st, raw, _ := e.do(http.MethodGet, "/ui/deployments/flaky"+bad, nil, "Accept", "text/html"); st != http.StatusBadRequest || !strings.Contains(raw, "must be a replica slot of this deployment, 0 to 1") {
			t.Errorf("%s: %d, want 400 naming log:\n%s", bad, st, raw)
		}
	}
	if st, _, _ := e.do(http.MethodGet, "/ui/deployments/nothing", nil, "Accept", "text/html"); st != http.StatusNotFound {
		t.Errorf("an unknown deployment: %d, want 404", st)
	}
	// A deployment scaled to 0 has no slot whose log could be asked for.
	e.must(http.MethodPost, "/api/resources/v1/deployments", map[string]any{"name": "idle", "application_id": "crashy:1", "queue_id": "Svc", "replicas": 0}, http.StatusCreated)
	if st, raw, _ := e.do(http.MethodGet, "/ui/deployments/idle?log=0", nil, "Accept", "text/html"); st != http.StatusBadRequest || !strings.Contains(raw, "this deployment has no replica slots (replicas 0)") {
		t.Errorf("?log=0 of a deployment of 0 replicas: %d, want 400 saying it has none:\n%s", st, raw)
	}
	// A queue without deployments has no such section.
	e.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "Empty"}, http.StatusCreated)
	if strings.Contains(e.page("/ui/queues/Empty"), "deployments-h") {
		t.Error("a queue without deployments lists them")
	}
}
