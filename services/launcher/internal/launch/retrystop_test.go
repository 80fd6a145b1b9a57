package launch

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/launcher/internal/driver"
)

// stopIgnored is a driver whose Stop does nothing and says so: its
// instances never report the end a stop asks for.
type stopIgnored struct{ driver.Driver }

func (stopIgnored) Stop(context.Context, driver.Ref) error { return nil }

// TestRetryGivesUpOnInstancesThatNeverStop: worker 0 fails on attempt 1,
// the controller keeps running and the driver never stops it. The retry
// waits RetryStopTimeout for its end, then treats it as lost, records so in
// the attempt, cleans the job up and puts it back for attempt 2 instead of
// waiting for ever.
func TestRetryGivesUpOnInstancesThatNeverStop(t *testing.T) {
	e := newEnv(t)
	const timeout = 2 * time.Second
	e.configure = func(cfg *Config, drivers map[string]driver.Factory) {
		cfg.RetryStopTimeout = timeout
		local := drivers["local"]
		drivers["local"] = func(config json.RawMessage, opts driver.Options) (driver.Driver, error) {
			d, err := local(config, opts)
			return stopIgnored{d}, err
		}
	}
	e.start()
	e.admit("job-stuck", 1, `if [ "$RM_ROLE" = worker ]; then exit 3; fi; sleep 60`, nil,
		func(j *events.Job) { j.MaxRetries = 1 })
	j := e.wait("job-stuck", "back for attempt 2", func(j events.Job) bool {
		return j.Status == events.JobSubmitted && j.Attempt == 2
	})
	if len(j.Attempts) != 1 || !strings.Contains(j.Attempts[0].Message, "controller 0) did not report stopped within 2s: treated as lost") {
		t.Errorf("attempts %+v, want attempt 1's record to say the controller was treated as lost", j.Attempts)
	}
	// The worker exits as soon as it starts: the attempt lasted the wait.
	// It may exit before the job was recorded running (then the attempt has
	// no start), so the wait is measured from the admission, which precedes
	// the failure.
	a := j.Attempts[0]
	from := a.AdmittedAt
	if a.StartedAt != nil {
		from = a.StartedAt
	}
	if from == nil || a.FinishedAt.Sub(*from) < timeout {
		t.Errorf("attempt 1 %+v gave up before the stop timeout of %s", a, timeout)
	} else {
		t.Logf("attempt 1 ended %s after it started", a.FinishedAt.Sub(*from).Round(time.Millisecond))
	}
}
