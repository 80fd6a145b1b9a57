package launch

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/launcher/internal/driver"
)

// startOrder is a local driver that records, for each worker start, whether
// the job's controller had already been started. With hold, the
// controller's start waits (up to holdFor) for a worker's start to begin.
type startOrder struct {
	driver.Driver
	hold bool

	mu            sync.Mutex
	ctlDone       bool
	workerBegun   chan struct{}
	once          sync.Once
	workersBefore int // worker starts that began before the controller was started
	ctlSawAWorker bool
	ctlWaited     time.Duration
}

const holdFor = 10 * time.Second

func (o *startOrder) Start(ctx context.Context, s driver.Spec) error {
	if s.Role == driver.RoleController {
		if o.hold {
			t0 := time.Now()
			saw := false
			select {
			case <-o.workerBegun:
				saw = true
			case <-time.After(holdFor):
			}
			o.mu.Lock()
			o.ctlSawAWorker, o.ctlWaited = saw, time.Since(t0)
			o.mu.Unlock()
		}
		err := o.Driver.Start(ctx, s)
		o.mu.Lock()
		o.ctlDone = true
		o.mu.Unlock()
		return err
	}
	o.mu.Lock()
	if !o.ctlDone {
		o.workersBefore++
	}
	o.mu.Unlock()
	o.once.Do(func() { close(o.workerBegun) })
	return o.Driver.Start(ctx, s)
}

// unorderedStartOrder is a startOrder the launcher may start in any order.
type unorderedStartOrder struct{ *startOrder }

func (unorderedStartOrder) UnorderedStarts() {}

// runOrdered admits a job of 3 workers on a launcher whose local driver is
// wrapped by o (marked driver.Unordered if unordered), and waits for it to
// succeed.
func runOrdered(t *testing.T, o *startOrder, unordered bool) {
	t.Helper()
	e := newEnv(t)
	o.workerBegun = make(chan struct{})
	e.configure = func(_ *Config, drivers map[string]driver.Factory) {
		local := drivers["local"]
		drivers["local"] = func(config json.RawMessage, opts driver.Options) (driver.Driver, error) {
			d, err := local(config, opts)
			if err != nil {
				return nil, err
			}
			o.Driver = d
			if unordered {
				return unorderedStartOrder{o}, nil
			}
			return o, nil
		}
	}
	e.start()
	e.admit("job-order", 3, `true`, nil)
	if j := e.wait("job-order", "final", final); j.Status != events.JobSucceeded {
		t.Fatalf("job %s %+v", j.Status, j.Conditions)
	}
}

// TestUnorderedDriverStartsControllerWithWorkers: on a driver that says the
// order does not matter (the local and simulated ones), the workers'
// starts do not wait for the controller's: the controller's start, held
// until a worker's start begins, is let go by one.
func TestUnorderedDriverStartsControllerWithWorkers(t *testing.T) {
	o := &startOrder{hold: true}
	runOrdered(t, o, true)
	if !o.ctlSawAWorker {
		t.Errorf("the controller's start waited %s and no worker's start began meanwhile: the workers waited for it", o.ctlWaited.Round(time.Millisecond))
	}
}

// TestOrderedDriverStartsControllerFirst: any other driver (kubernetes's
// workers are owned by the controller pod) gets the controller's start
// before any worker's.
func TestOrderedDriverStartsControllerFirst(t *testing.T) {
	o := &startOrder{}
	runOrdered(t, o, false)
	if o.workersBefore != 0 {
		t.Errorf("%d worker starts began before the controller was started", o.workersBefore)
	}
}
