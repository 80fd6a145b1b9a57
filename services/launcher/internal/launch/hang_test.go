package launch

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/drivertest"
)

// readyDriver is a driver that says when the launcher's pool has made it:
// the pool watches a driver once it has listed its instances.
type readyDriver struct {
	driver.Driver
	ready chan struct{}
}

func (d *readyDriver) Watch(ctx context.Context) (<-chan driver.Status, error) {
	defer close(d.ready)
	return d.Driver.Watch(ctx)
}

// TestEngineThatHangsAfterItsDriverWasMade: a Docker engine stops
// answering once its driver is made. Ten jobs on it, more than the
// launcher's 8 workers, each try to start a container; a job on the local
// driver admitted after them still runs, and the docker jobs show the
// engine did not answer (RuntimeUnavailable), to be retried; a log on it
// is 503, to ask again. Before, a
// driver's calls had no bound but the worker's context, which has none:
// the starts held the 8 workers for good and the local job never ran.
func TestEngineThatHangsAfterItsDriverWasMade(t *testing.T) {
	e := newEnv(t)
	engine := drivertest.ListenProxy(t, "/var/run/docker.sock")
	made := make(chan struct{})
	e.configure = func(cfg *Config, drivers map[string]driver.Factory) {
		b := defaultBounds
		b.start, b.logs = time.Second, time.Second
		cfg.bounds = &b
		docker := drivers["docker"]
		drivers["docker"] = func(raw json.RawMessage, opts driver.Options) (driver.Driver, error) {
			d, err := docker(raw, opts)
			if err != nil {
				return nil, err
			}
			return &readyDriver{Driver: d, ready: made}, nil
		}
	}
	e.insert(PluginsCollection, map[string]any{"_id": "plg-hang", "name": "hang", "type": "docker",
		"config": map[string]any{"host": "tcp://" + engine.Addr}})
	e.insert(QueuesCollection, &events.Queue{Meta: events.Meta{ID: "q-hang", Version: 1}, Name: "hang", PluginID: "plg-hang"})
	e.start()
	<-made // by the launcher's first resync: the queue uses the plugin
	engine.Swallow()

	const n = 10
	for i := range n {
		e.admit("job-hang-"+strconv.Itoa(i), 1, "sleep 60", nil, func(j *events.Job) {
			j.QueueID, j.QueueName = "q-hang", "hang"
			j.Runtime.Image = "rm-test-never-pulled:1"
		})
	}
	e.admit("job-local", 1, "exit 0", nil)
	if j := e.wait("job-local", "final", final); j.Status != events.JobSucceeded {
		t.Fatalf("the local job: %s %+v", j.Status, j.Conditions)
	}
	for i := range n {
		j := e.wait("job-hang-"+strconv.Itoa(i), "showing the engine's trouble", func(j events.Job) bool {
			c := jobdoc.FindCondition(&j, jobdoc.CondStarted)
			return c != nil && c.Reason == jobdoc.ReasonRuntimeUnavailable
		})
		if c := jobdoc.FindCondition(&j, jobdoc.CondStarted); !strings.Contains(c.Message, "did not answer") || j.Status != events.JobAdmitted {
			t.Errorf("%s: %s, Started %q; want admitted, retrying, saying the engine did not answer", j.ID, j.Status, c.Message)
		}
	}
	// A log on the engine is not there to read now: to ask again.
	if status, reason := e.logsOf("job-hang-0.worker.0"); status != "503" || !strings.Contains(reason, "did not answer") {
		t.Errorf("log of a worker on the hung engine: %s %q, want 503 saying it did not answer", status, reason)
	}
	// Their local controllers run sleep: cancelled, they are stopped.
	for i := range n {
		e.change("job-hang-"+strconv.Itoa(i), events.TypeJobCancelRequested, func(j *events.Job) { j.CancelRequested = true })
	}
	for i := range n {
		e.wait("job-hang-"+strconv.Itoa(i), "cancelled", final)
	}
}
