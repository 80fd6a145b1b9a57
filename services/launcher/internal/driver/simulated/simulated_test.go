package simulated_test

import (
	"context"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/drivertest"
	"github.com/avxrm/rm/services/launcher/internal/driver/simulated"
)

func newDriver(t *testing.T) driver.Driver {
	d := simulated.NewDriver(driver.SimulatedConfig{RunSeconds: 1}, driver.Options{})
	t.Cleanup(func() { d.Close() })
	return d
}

func TestConformance(t *testing.T) {
	drivertest.Run(t, newDriver, drivertest.Features{
		Behave: func(_ *testing.T, s *driver.Spec, b drivertest.Behaviour) {
			secs := b.RunFor.Seconds()
			s.RunSeconds = &secs
			s.Command, s.Args = []string{"echo"}, []string{b.Print} // the log records both
			s.Env[simulated.EnvExitCode] = strconv.Itoa(b.Exit)
		},
		Logs:      true, // the synthetic log shows the command and its args
		ExitCodes: true,
		Timeout:   10 * time.Second,
	})
}

// fakeClock fires AfterFunc callbacks only when advanced.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ft := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, ft)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !ft.stopped
		ft.stopped = true
		return was
	}
}

// Advance moves time and runs due callbacks synchronously, in order.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	rest := c.timers[:0]
	for _, ft := range c.timers {
		switch {
		case ft.stopped:
		case !ft.at.After(c.now):
			ft.stopped = true
			due = append(due, ft)
		default:
			rest = append(rest, ft)
		}
	}
	c.timers = rest
	c.mu.Unlock()
	sort.Slice(due, func(i, j int) bool { return due[i].at.Before(due[j].at) })
	for _, ft := range due {
		ft.f()
	}
}

func TestRunSecondsAndOverride(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	d := simulated.NewDriver(driver.SimulatedConfig{RunSeconds: 60}, driver.Options{}, simulated.WithClock(t, clock))
	defer d.Close()
	dflt := driver.Ref{JobID: "job-a", Role: driver.RoleWorker}
	short := driver.Ref{JobID: "job-a", Role: driver.RoleWorker, Index: 1}
	ten := 10.0
	if err := d.Start(ctx, driver.Spec{Ref: dflt}); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx, driver.Spec{Ref: short, RunSeconds: &ten}); err != nil {
		t.Fatal(err)
	}
	state := func(r driver.Ref) driver.Status {
		sts, _ := d.List(ctx)
		for _, st := range sts {
			if st.Ref == r {
				return st
			}
		}
		t.Fatalf("%s not listed", r)
		return driver.Status{}
	}
	clock.Advance(9 * time.Second)
	if got := state(short).State; got != driver.Running {
		t.Errorf("after 9s the 10s instance is %s, want Running", got)
	}
	clock.Advance(time.Second)
	if got := state(short); got.State != driver.Succeeded || got.FinishedAt != clock.Now() || got.FinishedAt.Sub(got.StartedAt) != 10*time.Second {
		t.Errorf("after 10s the 10s instance is %+v, want Succeeded after exactly 10s", got)
	}
	if got := state(dflt).State; got != driver.Running {
		t.Errorf("after 10s the 60s instance is %s, want Running", got)
	}
	clock.Advance(50 * time.Second)
	if got := state(dflt).State; got != driver.Succeeded {
		t.Errorf("after 60s the 60s instance is %s, want Succeeded", got)
	}
	neg := -1.0
	if err := d.Start(ctx, driver.Spec{Ref: driver.Ref{JobID: "job-b"}, RunSeconds: &neg}); err == nil {
		t.Error("Start() with negative run seconds succeeded")
	}
}

// TestFailureRate checks that failures follow failure_rate and that a seed
// makes them reproducible.
func TestFailureRate(t *testing.T) {
	ctx := context.Background()
	run := func(seed uint64) (failed []int) {
		clock := &fakeClock{}
		d := simulated.NewDriver(driver.SimulatedConfig{RunSeconds: 1, FailureRate: 0.25}, driver.Options{},
			simulated.WithClock(t, clock), simulated.WithSeed(seed))
		defer d.Close()
		const n = 4000
		for i := range n {
			if err := d.Start(ctx, driver.Spec{Ref: driver.Ref{JobID: "job", Role: driver.RoleWorker, Index: i}}); err != nil {
				t.Fatal(err)
			}
		}
		clock.Advance(time.Second)
		sts, _ := d.List(ctx)
		for _, st := range sts {
			switch {
			case st.State == driver.Failed && st.ExitCode != nil && *st.ExitCode == 1:
				failed = append(failed, st.Index)
			case st.State == driver.Succeeded && st.ExitCode != nil && *st.ExitCode == 0:
			default:
				t.Fatalf("unexpected status %+v", st)
			}
		}
		sort.Ints(failed)
		return failed
	}
	a, b := run(7), run(7)
	if got := float64(len(a)) / 4000; got < 0.22 || got > 0.28 {
		t.Errorf("failure fraction = %.3f, want about 0.25", got)
	}
	if len(a) != len(b) {
		t.Fatalf("same seed gave %d and %d failures", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed failed different instances")
		}
	}
}

// TestTenThousandInstances measures the real-clock cost of 10,000
// concurrent instances: all are started, run for 1s and are watched to
// their end.
func TestTenThousandInstances(t *testing.T) {
	const n = 10000
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d := simulated.NewDriver(driver.SimulatedConfig{RunSeconds: 1, FailureRate: 0.1}, driver.Options{}, simulated.WithSeed(1))
	defer d.Close()
	ch, _ := d.Watch(ctx)

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()
	began := time.Now()
	for i := range n {
		if err := d.Start(ctx, driver.Spec{Ref: driver.Ref{JobID: "job-big", Role: driver.RoleWorker, Index: i}}); err != nil {
			t.Fatal(err)
		}
	}
	startTook := time.Since(began)
	runtime.ReadMemStats(&after)
	extraGoroutines := runtime.NumGoroutine() - goroutines
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)

	running, final, failed := 0, 0, 0
	for final < n {
		select {
		case st := <-ch:
			switch {
			case st.State == driver.Running:
				running++
			case st.State.Final():
				final++
				if st.State == driver.Failed {
					failed++
				}
			}
		case <-ctx.Done():
			t.Fatalf("only %d of %d instances ended", final, n)
		}
	}
	all := time.Since(began)
	t.Logf("%d instances: Start all %s, all ended and watched %s (run_seconds 1), heap +%d KiB while running (%d B/instance), goroutines +%d, %d failed",
		n, startTook, all, heap/1024, heap/n, extraGoroutines, failed)
	if running != n {
		t.Errorf("Watch reported %d Running, want %d", running, n)
	}
	if all > 10*time.Second {
		t.Errorf("10,000 one-second instances took %s", all)
	}
	if extraGoroutines > 100 {
		t.Errorf("%d goroutines for %d running instances: not cheap", extraGoroutines, n)
	}
	if err := d.Cleanup(ctx, "job-big"); err != nil {
		t.Fatal(err)
	}
	if sts, _ := d.List(ctx); len(sts) != 0 {
		t.Errorf("List() after Cleanup has %d instances", len(sts))
	}
}

// TestOwnFailureIsTold: an instance that fails by the failure rate is
// published with driver.ReasonExited (the launcher keeps it failed while
// it stops its job's others); one that Stop ends is not.
func TestOwnFailureIsTold(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{}
	d := simulated.NewDriver(driver.SimulatedConfig{RunSeconds: 1, FailureRate: 1}, driver.Options{}, simulated.WithClock(t, clock))
	defer d.Close()
	ch, _ := d.Watch(ctx)
	own := driver.Ref{JobID: "job", Role: driver.RoleWorker, Index: 0}
	stopped := driver.Ref{JobID: "job", Role: driver.RoleWorker, Index: 1}
	for _, r := range []driver.Ref{own, stopped} {
		if err := d.Start(ctx, driver.Spec{Ref: r}); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Stop(ctx, stopped); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	final := map[driver.Ref]driver.Status{}
	for timeout := time.After(10 * time.Second); len(final) < 2; {
		select {
		case st := <-ch:
			if st.State.Final() {
				final[st.Ref] = st
			}
		case <-timeout:
			t.Fatalf("final statuses %v, want both", final)
		}
	}
	if st := final[own]; st.State != driver.Failed || st.Reason != driver.ReasonExited {
		t.Errorf("own failure published as %+v, want Failed, %s", st, driver.ReasonExited)
	}
	if st := final[stopped]; st.State != driver.Failed || st.Reason != "" {
		t.Errorf("stopped published as %+v, want Failed without a reason", st)
	}
}
