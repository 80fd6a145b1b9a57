package launch

import (
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/ledger"
	"github.com/avxrm/rm/services/launcher/internal/driver/drivertest"
)

// silentPlugin adds queue q-silent on a docker plugin whose engine accepts
// connections and never answers: a try to make its driver takes 10 s.
func silentPlugin(e *env) *drivertest.Silent {
	engine := drivertest.ListenSilently(e.t)
	e.insert(PluginsCollection, map[string]any{"_id": "plg-silent", "name": "silent", "type": "docker",
		"config": map[string]any{"host": "tcp://" + engine.Addr}})
	e.insert(QueuesCollection, &events.Queue{Meta: events.Meta{ID: "q-silent", Version: 1}, Name: "silent", PluginID: "plg-silent"})
	return engine
}

// underWay waits until the first try to make the driver of engine's plugin
// is under way (its connection open) and reports whether it still is.
func underWay(t *testing.T, engine *drivertest.Silent) bool {
	t.Helper()
	for {
		accepted, open := engine.Conns()
		if accepted > 0 {
			return accepted == 1 && open == 1
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logsOf asks the launcher for the log of the instance ref
// ("<job>.<role>.<index>") and returns the status and error it answers.
func (e *env) logsOf(ref string) (status, reason string) {
	e.t.Helper()
	m, err := e.js.Conn().Request(LogsSubjectPrefix+"."+ref, nil, time.Minute)
	if err != nil {
		e.t.Fatal(err)
	}
	return m.Header.Get(HeaderLogsStatus), m.Header.Get(HeaderLogsError)
}

// TestLogsWhileTheDriverIsBeingMade: a log asked for while the driver of
// its instance's plugin is being made is 503, to ask again, which the API
// passes on with Retry-After. Before, it was 404 (“is being made”): an
// instance that may well exist was said not to.
func TestLogsWhileTheDriverIsBeingMade(t *testing.T) {
	e := newEnv(t)
	engine := silentPlugin(e)
	e.admit("job-silent", 1, "exit 0", nil, func(j *events.Job) { j.QueueID, j.QueueName = "q-silent", "silent" })
	e.start()
	if !underWay(t, engine) {
		t.Fatal("the first try ended before the log was asked for")
	}
	status, reason := e.logsOf("job-silent.worker.0")
	if !underWay(t, engine) {
		t.Fatal("the first try ended before the log was answered")
	}
	if status != "503" {
		t.Errorf("log while the driver is being made: %s %q, want 503", status, reason)
	}
}

// TestReplicaWaitsForTheTry: a deployment's replica whose plugin's driver
// is being made waits for the try: it is starting, not restarting, and
// the try is no failure of its own that backs its restarts off. Before, it
// was counted as a failed restart.
func TestReplicaWaitsForTheTry(t *testing.T) {
	e := newEnv(t)
	engine := silentPlugin(e)
	e.insert(DeploymentsCollection, deployment{Meta: events.Meta{ID: "dep-silent", Version: 1}, Name: "viz",
		ApplicationID: "app-1", QueueID: "q-silent", Replicas: 1, Status: deploymentStatus{Conditions: []events.Condition{}},
		Runtime: events.RuntimeSpec{Image: "rm-test-never-pulled:1"}})
	leases := map[string][]ledger.Claim{"dep-silent/replica/0": {{Queue: "q-silent", Count: 1}}}
	e.insert(ledger.Collection, ledger.Doc{ID: ledger.ID, Epoch: 1, Version: 1, Held: ledger.Encode(leases)})
	e.start()
	var d deployment
	for {
		if d = e.deployment("dep-silent"); len(d.Status.Replicas) > 0 && d.Status.Replicas[0].State != replicaPending {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !underWay(t, engine) {
		t.Fatal("the first try ended before the replica's state was read")
	}
	if got := d.Status.Replicas[0]; got.State != replicaStarting || got.Restarts != 0 {
		t.Errorf("replica while its driver is being made: %+v, want starting, no restart", got)
	}
}
