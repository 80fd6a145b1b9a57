package launch

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/drivertest"
)

// TestSilentEngineTakesOneTryAtATime: ten jobs on a docker plugin whose
// engine accepts connections and never answers make one try at a time to
// reach it (one driver constructor under way, one connection each), and a
// job on the local driver admitted behind them succeeds while the first
// try is still under way. Before, the first try never ended (the client's
// version negotiation waited for the engine without a deadline), and with
// that bounded, the jobs that waited for a try held the launcher's 8
// workers until it ended: the local job succeeded only after the first try
// had failed and the next one begun.
func TestSilentEngineTakesOneTryAtATime(t *testing.T) {
	e := newEnv(t)
	engine := drivertest.ListenSilently(t)
	// The tries under way: the docker driver's constructor is where a try
	// waits for the engine.
	var mu sync.Mutex
	var tries, inFlight, maxInFlight int
	e.configure = func(_ *Config, drivers map[string]driver.Factory) {
		docker := drivers["docker"]
		drivers["docker"] = func(raw json.RawMessage, opts driver.Options) (driver.Driver, error) {
			mu.Lock()
			tries++
			inFlight++
			maxInFlight = max(maxInFlight, inFlight)
			mu.Unlock()
			defer func() {
				mu.Lock()
				inFlight--
				mu.Unlock()
			}()
			return docker(raw, opts)
		}
	}
	e.start()
	// The launcher's workers run before the plugin exists: at its start,
	// a launcher makes the driver of every plugin before it starts them.
	e.admit("job-first", 1, "exit 0", nil)
	e.wait("job-first", "final", final)
	e.insert(PluginsCollection, map[string]any{"_id": "plg-silent", "name": "silent", "type": "docker",
		"config": map[string]any{"host": "tcp://" + engine.Addr}})
	e.insert(QueuesCollection, &events.Queue{Meta: events.Meta{ID: "q-silent", Version: 1}, Name: "silent", PluginID: "plg-silent"})
	const n = 10
	for i := range n {
		e.admit("job-silent-"+strconv.Itoa(i), 1, "sleep 60", nil, func(j *events.Job) { j.QueueID, j.QueueName = "q-silent", "silent" })
	}
	e.wait("job-silent-0", "trying the engine", func(events.Job) bool { accepted, _ := engine.Conns(); return accepted > 0 })
	e.admit("job-local", 1, "exit 0", nil)
	if j := e.wait("job-local", "final", final); j.Status != events.JobSucceeded {
		t.Fatalf("the local job: %s %+v", j.Status, j.Conditions)
	}
	if accepted, open := engine.Conns(); accepted != 1 || open != 1 {
		t.Errorf("when the local job had succeeded, the engine had %d connections open of %d accepted, want the first try's still open", open, accepted)
	}
	for i := range n {
		j := e.wait("job-silent-"+strconv.Itoa(i), "showing the runtime trouble", func(j events.Job) bool {
			c := jobdoc.FindCondition(&j, jobdoc.CondStarted)
			return c != nil && c.Reason == jobdoc.ReasonRuntimeUnavailable
		})
		// A try under way is no trouble of the job's: it waits for the
		// try's end, and shows the failure.
		if c := jobdoc.FindCondition(&j, jobdoc.CondStarted); strings.Contains(c.Message, "being made") || !strings.Contains(c.Message, engine.Addr) {
			t.Errorf("%s: Started %q, want the engine's failure", j.ID, c.Message)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// A try counted here may not have connected yet.
	if accepted, _ := engine.Conns(); maxInFlight != 1 || accepted > tries || accepted < tries-1 || tries >= n {
		t.Errorf("%d jobs: %d tries (%d at most at a time), %d connections; want one try at a time, each one connection", n, tries, maxInFlight, accepted)
	}
}
