package launch

import (
	"strconv"
	"testing"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/launcher/internal/driver/drivertest"
)

// TestStartDoesNotWaitForSilentEngines: three docker plugins whose engines
// accept connections and never answer are in use when the launcher starts;
// a job on the local driver runs while the tries to make their drivers are
// all still under way (each engine's first connection still open). Before,
// the launcher's first resync made the drivers one after the other before
// its workers ran: 10 s per such engine before any job started.
func TestStartDoesNotWaitForSilentEngines(t *testing.T) {
	e := newEnv(t)
	const n = 3
	engines := make([]*drivertest.Silent, n)
	for i := range engines {
		engines[i] = drivertest.ListenSilently(t)
		id := "plg-silent-" + strconv.Itoa(i)
		e.insert(PluginsCollection, map[string]any{"_id": id, "name": "silent-" + strconv.Itoa(i), "type": "docker",
			"config": map[string]any{"host": "tcp://" + engines[i].Addr}})
		e.insert(QueuesCollection, &events.Queue{Meta: events.Meta{ID: "q-silent-" + strconv.Itoa(i), Version: 1},
			Name: "silent-" + strconv.Itoa(i), PluginID: id})
	}
	e.admit("job-local", 1, "exit 0", nil)
	e.start()
	if j := e.wait("job-local", "final", final); j.Status != events.JobSucceeded {
		t.Fatalf("the local job: %s %+v", j.Status, j.Conditions)
	}
	for i, engine := range engines {
		if accepted, open := engine.Conns(); accepted != 1 || open != 1 {
			t.Errorf("when the local job had succeeded, engine %d had %d connections open of %d accepted, want the first try's still open", i, open, accepted)
		}
	}
}
