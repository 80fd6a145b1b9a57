package launch

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/local"
)

// unplaced is d with its workers seen as kubernetes reports pods the
// cluster cannot place: pending, with the scheduler's words.
func unplaced(d driver.Driver) driver.Driver {
	return rewriting{d, func(st driver.Status) driver.Status {
		if st.Role == driver.RoleWorker && st.State == driver.Running {
			st.State, st.StartedAt, st.Message = driver.Pending, time.Time{}, unplacedMessage
		}
		return st
	}}
}

const unplacedMessage = "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."

// TestStartTimeoutSaysWhatWaits: a job whose workers the runtime keeps
// pending (a pod no node can take) fails at its start timeout saying which
// instance waits and what the runtime says of it. It said only "not every
// instance started", the scheduler's words left in the instance's record.
func TestStartTimeoutSaysWhatWaits(t *testing.T) {
	e := newEnv(t)
	limit := 2
	e.insert(QueuesCollection, &events.Queue{Meta: events.Meta{ID: "q-tight", Version: 1}, Name: "tight",
		Scheduling: events.QueueScheduling{StartTimeoutSeconds: &limit}})
	e.configure = func(_ *Config, drivers map[string]driver.Factory) {
		drivers[driver.TypeLocal] = func(raw json.RawMessage, opts driver.Options) (driver.Driver, error) {
			d, err := local.New(raw, opts)
			if err != nil {
				return nil, err
			}
			return unplaced(d), nil
		}
	}
	e.start()
	e.admit("job-unplaced", 2, "sleep 60", nil, func(j *events.Job) { j.QueueID, j.QueueName = "q-tight", "tight" })
	j := e.wait("job-unplaced", "failed", final)
	c := jobdoc.FindCondition(&j, condFailed)
	want := "did not start within 2s (the queue's start_timeout_seconds): not every instance started: worker 0 is pending: " + unplacedMessage
	if j.Status != events.JobFailed || c == nil || c.Reason != jobdoc.ReasonStartFailed || !strings.Contains(c.Message, want) {
		t.Errorf("job %s, Failed %+v; want StartFailed saying %q", j.Status, c, want)
	}
}
