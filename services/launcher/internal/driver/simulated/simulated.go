// Package simulated is a driver that runs nothing: an instance is Running
// from Start, and after run_seconds (config; Spec.RunSeconds overrides) it
// succeeds, or fails with exit code 1 with probability failure_rate. It lets
// the whole system (scheduling, events, capacity) be exercised at scale
// without a runtime.
//
// Cost: one runtime timer (time.AfterFunc) per running instance and no
// goroutine until it fires, so 10,000 concurrent instances are cheap.
//
// Restart policy: state lives in memory only. A new driver knows no
// instance; the launcher's reconciliation treats the old ones as lost.
//
// For demos and acceptance tests, an instance whose environment sets
// RM_SIM_EXIT_CODE=<n> ends with exit code n regardless of failure_rate.
//
// It imports only the driver contract.
package simulated

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/internal/hub"
)

var _ driver.Driver = (*Driver)(nil)

// EnvExitCode, when set in an instance's environment, forces its exit code.
const EnvExitCode = "RM_SIM_EXIT_CODE"

// Clock is the time source; tests inject a fake one.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d; stop cancels the call
	// and reports whether it did.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// Option customizes a Driver.
type Option func(*Driver)

// WithClock replaces the wall clock, for tests.
func WithClock(_ testing.TB, c Clock) Option { return func(d *Driver) { d.clock = c } }

// WithSeed makes the failure draws reproducible. Without it they are seeded
// from the time.
func WithSeed(seed uint64) Option {
	return func(d *Driver) { d.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }
}

// Driver is the simulated driver.
type Driver struct {
	cfg   driver.SimulatedConfig
	log   *slog.Logger
	clock Clock

	mu     sync.Mutex // guards everything below and orders hub publications
	rng    *rand.Rand
	insts  map[driver.Ref]*instance
	hub    hub.Hub
	closed bool
}

type instance struct {
	st      driver.Status
	command []string
	runFor  time.Duration
	stop    func() bool
}

// New is the driver.Factory of the simulated driver.
func New(config json.RawMessage, opts driver.Options) (driver.Driver, error) {
	cfg, err := driver.ParseSimulatedConfig(config)
	if err != nil {
		return nil, fmt.Errorf("simulated: %w", err)
	}
	return NewDriver(cfg, opts), nil
}

// NewDriver builds a driver from a parsed config.
func NewDriver(cfg driver.SimulatedConfig, opts driver.Options, options ...Option) *Driver {
	d := &Driver{
		cfg:   cfg,
		log:   opts.Log().With("driver", "simulated"),
		clock: realClock{},
		insts: make(map[driver.Ref]*instance),
	}
	seed := uint64(time.Now().UnixNano())
	d.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for _, o := range options {
		o(d)
	}
	return d
}

// UnorderedStarts: a simulated instance needs no other one to exist first
// (driver.Unordered).
func (d *Driver) UnorderedStarts() {}

var _ driver.Unordered = (*Driver)(nil)

// Start makes the instance Running and schedules its end.
func (d *Driver) Start(_ context.Context, s driver.Spec) error {
	runSeconds := d.cfg.RunSeconds
	if s.RunSeconds != nil {
		runSeconds = *s.RunSeconds
	}
	if math.IsNaN(runSeconds) || runSeconds < 0 || runSeconds > math.MaxInt64/float64(time.Second) {
		return fmt.Errorf("simulated: start %s: %w: run seconds %v out of range", s.Ref, driver.ErrInvalidSpec, runSeconds)
	}
	forced, hasForced := 0, false
	if v, ok := s.Env[EnvExitCode]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 255 {
			return fmt.Errorf("simulated: start %s: %w: %s=%q is not an exit code", s.Ref, driver.ErrInvalidSpec, EnvExitCode, v)
		}
		forced, hasForced = n, true
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("simulated: start %s: driver closed", s.Ref)
	}
	if _, ok := d.insts[s.Ref]; ok {
		return nil
	}
	exit := 0
	switch {
	case hasForced:
		exit = forced
	case d.cfg.FailureRate > 0 && d.rng.Float64() < d.cfg.FailureRate:
		exit = 1
	}
	inst := &instance{
		st:      driver.Status{Ref: s.Ref, State: driver.Running, StartedAt: d.clock.Now()},
		command: append(append([]string(nil), s.Command...), s.Args...),
		runFor:  time.Duration(runSeconds * float64(time.Second)),
	}
	d.insts[s.Ref] = inst
	d.hub.Publish(inst.st)
	ref := s.Ref
	inst.stop = d.clock.AfterFunc(inst.runFor, func() { d.finish(ref, inst, exit, "") })
	return nil
}

// finish ends inst unless it already ended or was replaced.
func (d *Driver) finish(ref driver.Ref, inst *instance, exit int, message string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.insts[ref] != inst || inst.st.State.Final() {
		return
	}
	if exit != 0 {
		// Before any Stop: a failure of its own (Stop ends it as above).
		inst.st.Reason = driver.ReasonExited
	}
	d.endLocked(inst, &exit, message)
}

func (d *Driver) endLocked(inst *instance, exit *int, message string) {
	inst.st.State = driver.Succeeded
	if exit == nil || *exit != 0 {
		inst.st.State = driver.Failed
	}
	inst.st.ExitCode = exit
	inst.st.Message = message
	inst.st.FinishedAt = d.clock.Now()
	d.hub.Publish(inst.st)
}

// Stop ends a running instance as Failed with no exit code.
func (d *Driver) Stop(_ context.Context, r driver.Ref) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	inst, ok := d.insts[r]
	if !ok || inst.st.State.Final() {
		return nil
	}
	inst.stop()
	d.endLocked(inst, nil, "stopped")
	return nil
}

// Cleanup stops and forgets every instance of the job.
func (d *Driver) Cleanup(_ context.Context, jobID string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for ref, inst := range d.insts {
		if ref.JobID != jobID {
			continue
		}
		if !inst.st.State.Final() {
			inst.stop()
			d.endLocked(inst, nil, "stopped by cleanup")
		}
		delete(d.insts, ref)
	}
	return nil
}

// List returns every instance not cleaned up.
func (d *Driver) List(context.Context) ([]driver.Status, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.snapshotLocked(), nil
}

func (d *Driver) snapshotLocked() []driver.Status {
	out := make([]driver.Status, 0, len(d.insts))
	for _, inst := range d.insts {
		out = append(out, inst.st)
	}
	return out
}

// Watch reports the current instances, then every change.
func (d *Driver) Watch(ctx context.Context) (<-chan driver.Status, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hub.Subscribe(ctx, d.snapshotLocked()), nil
}

// Logs returns a synthetic log: what would have run and how it ended.
func (d *Driver) Logs(_ context.Context, r driver.Ref) (io.ReadCloser, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	inst, ok := d.insts[r]
	if !ok {
		return nil, fmt.Errorf("simulated: logs of %s: %w", r, driver.ErrNotFound)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "simulated instance %s started at %s\n", r, inst.st.StartedAt.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(&b, "command: %s\n", strings.Join(inst.command, " "))
	fmt.Fprintf(&b, "running for %s\n", inst.runFor)
	if inst.st.State.Final() {
		code := "none"
		if inst.st.ExitCode != nil {
			code = strconv.Itoa(*inst.st.ExitCode)
		}
		fmt.Fprintf(&b, "%s at %s, exit code %s %s\n", inst.st.State, inst.st.FinishedAt.UTC().Format(time.RFC3339Nano), code, inst.st.Message)
	}
	return io.NopCloser(strings.NewReader(b.String())), nil
}

// Close cancels every pending end and ends all Watch channels. Nothing
// survives it.
func (d *Driver) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	for _, inst := range d.insts {
		inst.stop()
	}
	d.hub.Close()
	return nil
}
