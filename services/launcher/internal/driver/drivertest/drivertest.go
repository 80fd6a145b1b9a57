// Package drivertest is the conformance suite every driver passes: each
// driver's tests call Run with a constructor and the features the driver
// has. The suite only uses the driver.Driver contract; how an instance is
// made to print, run for a while and exit with a given code is the
// driver's part (Features.Behave).
package drivertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/services/launcher/internal/driver"
)

// Behaviour is what an instance under test does.
type Behaviour struct {
	Print  string        // a line written to stdout first
	RunFor time.Duration // then it runs this long
	Exit   int           // then exits with this code
}

// Features describes a driver to the suite.
type Features struct {
	// Behave fills s (image, command, env, run seconds...) so that the
	// instance does b. Required.
	Behave func(t *testing.T, s *driver.Spec, b Behaviour)
	// Logs: Logs returns what the instance printed.
	Logs bool
	// RealProcesses: instances are real processes or containers, and Stop
	// returns only once the instance has ended.
	RealProcesses bool
	// ExitCodes: the exact exit code is reported, not just non-zero.
	ExitCodes bool
	// Reattach: a second driver made by newDriver within the same test
	// uses the same backend and adopts the first one's instances.
	Reattach bool
	// Timeout bounds every wait (default 30s).
	Timeout time.Duration
}

// Run runs the conformance suite. newDriver returns a driver and registers
// its Close with t.Cleanup; called twice within one test it must return a
// driver on the same backend (see PerTest).
func Run(t *testing.T, newDriver func(t *testing.T) driver.Driver, f Features) {
	if f.Behave == nil {
		t.Fatal("drivertest: Features.Behave is required")
	}
	if f.Timeout == 0 {
		f.Timeout = 30 * time.Second
	}
	s := &suite{f: f, newDriver: newDriver}
	cases := map[string]func(t *testing.T){
		"Succeeds":             s.testSucceeds,
		"FailsWithExitCode":    s.testFails,
		"StartIsIdempotent":    s.testStartIdempotent,
		"StopEndsRunning":      s.testStop,
		"CleanupRemovesJob":    s.testCleanup,
		"ListReportsInstances": s.testList,
		"WatchFansOutAndEnds":  s.testWatchFanOut,
		"LogsHaveOutput":       s.testLogs,
		"ReattachAfterRestart": s.testReattach,
		"ReapRemovesEnded":     s.testReap,
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tc(t)
		})
	}
}

// PerTest memoizes create per test, so that a newDriver built on it sees
// the same backend (data dir, fake cluster) when called twice in one test.
func PerTest[T any](create func(t *testing.T) T) func(t *testing.T) T {
	var mu sync.Mutex
	made := map[*testing.T]T{}
	return func(t *testing.T) T {
		mu.Lock()
		defer mu.Unlock()
		if v, ok := made[t]; ok {
			return v
		}
		v := create(t)
		made[t] = v
		t.Cleanup(func() {
			mu.Lock()
			defer mu.Unlock()
			delete(made, t)
		})
		return v
	}
}

type suite struct {
	f         Features
	newDriver func(t *testing.T) driver.Driver
}

// JobID returns a fresh job id, unique across concurrent test runs that
// share a backend (a Docker engine).
func JobID(t testing.TB) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "job-test-" + hex.EncodeToString(b)
}

func (s *suite) spec(t *testing.T, ref driver.Ref, b Behaviour) driver.Spec {
	sp := driver.Spec{
		Ref:   ref,
		Name:  ref.Name(),
		Queue: "q-conformance",
		Env: map[string]string{
			"RM_JOB_ID":         ref.JobID,
			"RM_ROLE":           string(ref.Role),
			"RM_INSTANCE_INDEX": "0",
		},
		Labels: map[string]string{"suite": "drivertest"},
	}
	s.f.Behave(t, &sp, b)
	return sp
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 4*s.f.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// cleanupJob removes the job's instances when the test ends, whatever happened.
func (s *suite) cleanupJob(t *testing.T, d driver.Driver, jobID string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.f.Timeout)
		defer cancel()
		if err := d.Cleanup(ctx, jobID); err != nil {
			t.Errorf("Cleanup(%s) at test end: %v", jobID, err)
		}
	})
}

// watcher is a Watch channel plus everything read from it, so that
// waiting for one instance does not lose another's statuses.
type watcher struct {
	ch   <-chan driver.Status
	seen []driver.Status
}

func (s *suite) watch(t *testing.T, ctx context.Context, d driver.Driver) *watcher {
	t.Helper()
	ch, err := d.Watch(ctx)
	if err != nil {
		t.Fatalf("Watch() error = %v", err)
	}
	return &watcher{ch: ch}
}

// waitFor returns the first status of ref, seen or to come, that satisfies ok.
func (s *suite) waitFor(t *testing.T, w *watcher, ref driver.Ref, what string, ok func(driver.Status) bool) driver.Status {
	t.Helper()
	var mine []driver.Status
	for _, st := range w.seen {
		if st.Ref == ref {
			if ok(st) {
				return st
			}
			mine = append(mine, st)
		}
	}
	timer := time.NewTimer(s.f.Timeout)
	defer timer.Stop()
	for {
		select {
		case st, open := <-w.ch:
			if !open {
				t.Fatalf("Watch channel closed while waiting for %s of %s (seen %v)", what, ref, states(mine))
			}
			w.seen = append(w.seen, st)
			if st.Ref != ref {
				continue
			}
			if ok(st) {
				return st
			}
			mine = append(mine, st)
		case <-timer.C:
			t.Fatalf("timeout after %s waiting for %s of %s (seen %v)", s.f.Timeout, what, ref, states(mine))
		}
	}
}

func states(sts []driver.Status) []string {
	out := make([]string, len(sts))
	for i, st := range sts {
		out[i] = string(st.State)
		if st.Message != "" {
			out[i] += "(" + st.Message + ")"
		}
	}
	return out
}

func isState(want driver.State) func(driver.Status) bool {
	return func(st driver.Status) bool { return st.State == want }
}

func isFinal(st driver.Status) bool { return st.State.Final() }

func (s *suite) start(t *testing.T, ctx context.Context, d driver.Driver, sp driver.Spec) {
	t.Helper()
	if err := d.Start(ctx, sp); err != nil {
		t.Fatalf("Start(%s) error = %v", sp.Ref, err)
	}
}

func (s *suite) testSucceeds(t *testing.T) {
	ctx := s.ctx(t)
	d := s.newDriver(t)
	ref := driver.Ref{JobID: JobID(t), Role: driver.RoleWorker, Index: 0}
	s.cleanupJob(t, d, ref.JobID)
	ch := s.watch(t, ctx, d)
	s.start(t, ctx, d, s.spec(t, ref, Behaviour{Print: "hello", RunFor: 700 * time.Millisecond, Exit: 0}))

	running := s.waitFor(t, ch, ref, "Running", isState(driver.Running))
	if running.StartedAt.IsZero() {
		t.Errorf("Running status has no StartedAt: %+v", running)
	}
	final := s.waitFor(t, ch, ref, "a final state", isFinal)
	if final.State != driver.Succeeded {
		t.Fatalf("final state = %s (%s), want Succeeded", final.State, final.Message)
	}
	if final.ExitCode == nil || *final.ExitCode != 0 {
		t.Errorf("ExitCode = %v, want 0", fmtCode(final.ExitCode))
	}
	if final.FinishedAt.IsZero() || final.FinishedAt.Before(final.StartedAt) {
		t.Errorf("FinishedAt = %v, StartedAt = %v: want FinishedAt >= StartedAt", final.FinishedAt, final.StartedAt)
	}
}

func (s *suite) testFails(t *testing.T) {
	ctx := s.ctx(t)
	d := s.newDriver(t)
	ref := driver.Ref{JobID: JobID(t), Role: driver.RoleWorker, Index: 3}
	s.cleanupJob(t, d, ref.JobID)
	ch := s.watch(t, ctx, d)
	s.start(t, ctx, d, s.spec(t, ref, Behaviour{Print: "failing", RunFor: 200 * time.Millisecond, Exit: 3}))
	final := s.waitFor(t, ch, ref, "a final state", isFinal)
	if final.State != driver.Failed {
		t.Fatalf("final state = %s, want Failed", final.State)
	}
	switch {
	case final.ExitCode == nil:
		t.Errorf("ExitCode = nil, want 3")
	case s.f.ExitCodes && *final.ExitCode != 3:
		t.Errorf("ExitCode = %d, want 3", *final.ExitCode)
	case *final.ExitCode == 0:
		t.Errorf("ExitCode = 0, want non-zero")
	}
}

func (s *suite) testStartIdempotent(t *testing.T) {
	ctx := s.ctx(t)
	d := s.newDriver(t)
	ref := driver.Ref{JobID: JobID(t), Role: driver.RoleController, Index: 0}
	s.cleanupJob(t, d, ref.JobID)
	ch := s.watch(t, ctx, d)
	sp := s.spec(t, ref, Behaviour{RunFor: 1500 * time.Millisecond})

	// Concurrent duplicates, as a redelivered admission event could cause.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = d.Start(ctx, sp)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Start #%d error = %v", i, err)
		}
	}
	s.waitFor(t, ch, ref, "Running", isState(driver.Running))
	s.start(t, ctx, d, sp)
	if n := count(t, ctx, d, ref); n != 1 {
		t.Errorf("List() has %d instances of %s after 4 Starts, want 1", n, ref)
	}
	final := s.waitFor(t, ch, ref, "a final state", isFinal)
	if final.State != driver.Succeeded {
		t.Errorf("final state = %s (%s), want Succeeded", final.State, final.Message)
	}
	// Starting an instance that ended is a no-op too: it is not re-run.
	s.start(t, ctx, d, sp)
	sts := list(t, ctx, d)
	if n := countIn(sts, ref); n != 1 {
		t.Fatalf("List() has %d instances of %s after it ended, want 1", n, ref)
	}
	for _, st := range sts {
		if st.Ref == ref && st.State != driver.Succeeded {
			t.Errorf("Start after the end changed the state to %s", st.State)
		}
	}
}

func (s *suite) testStop(t *testing.T) {
	ctx := s.ctx(t)
	d := s.newDriver(t)
	ref := driver.Ref{JobID: JobID(t), Role: driver.RoleWorker, Index: 1}
	s.cleanupJob(t, d, ref.JobID)
	ch := s.watch(t, ctx, d)
	s.start(t, ctx, d, s.spec(t, ref, Behaviour{RunFor: 10 * time.Minute}))
	s.waitFor(t, ch, ref, "Running", isState(driver.Running))

	began := time.Now()
	if err := d.Stop(ctx, ref); err != nil {
		t.Fatalf("Stop() error = %v", err)
	}
	if s.f.RealProcesses {
		for _, st := range list(t, ctx, d) {
			if st.Ref == ref && !st.State.Final() {
				t.Errorf("List() right after Stop() returned: %s is %s, want ended", ref, st.State)
			}
		}
	}
	final := s.waitFor(t, ch, ref, "a final state", isFinal)
	if final.State != driver.Failed {
		t.Errorf("state after Stop = %s, want Failed", final.State)
	}
	if took := time.Since(began); took > s.f.Timeout {
		t.Errorf("Stop took %s", took)
	}
	if err := d.Stop(ctx, ref); err != nil {
		t.Errorf("second Stop() error = %v, want nil", err)
	}
	unknown := driver.Ref{JobID: JobID(t), Role: driver.RoleWorker}
	if err := d.Stop(ctx, unknown); err != nil {
		t.Errorf("Stop(unknown) error = %v, want nil", err)
	}
}

func (s *suite) testCleanup(t *testing.T) {
	ctx := s.ctx(t)
	d := s.newDriver(t)
	job, other := JobID(t), JobID(t)
	s.cleanupJob(t, d, job)
	s.cleanupJob(t, d, other)
	ch := s.watch(t, ctx, d)
	long := driver.Ref{JobID: job, Role: driver.RoleController}
	short := driver.Ref{JobID: job, Role: driver.RoleWorker}
	kept := driver.Ref{JobID: other, Role: driver.RoleWorker}
	s.start(t, ctx, d, s.spec(t, long, Behaviour{RunFor: 10 * time.Minute}))
	s.start(t, ctx, d, s.spec(t, short, Behaviour{RunFor: 0}))
	s.start(t, ctx, d, s.spec(t, kept, Behaviour{RunFor: 10 * time.Minute}))
	s.waitFor(t, ch, long, "Running", isState(driver.Running))
	s.waitFor(t, ch, short, "a final state", isFinal)
	s.waitFor(t, ch, kept, "Running", isState(driver.Running))

	if err := d.Cleanup(ctx, job); err != nil {
		t.Fatalf("Cleanup() error = %v", err)
	}
	sts := list(t, ctx, d)
	for _, st := range sts {
		if st.JobID == job {
			t.Errorf("List() after Cleanup still has %s (%s)", st.Ref, st.State)
		}
	}
	if countIn(sts, kept) != 1 {
		t.Errorf("Cleanup of %s removed %s of another job", job, kept)
	}
	if err := d.Cleanup(ctx, job); err != nil {
		t.Errorf("second Cleanup() error = %v, want nil", err)
	}
	if err := d.Cleanup(ctx, JobID(t)); err != nil {
		t.Errorf("Cleanup(unknown job) error = %v, want nil", err)
	}
}

func (s *suite) testList(t *testing.T) {
	ctx := s.ctx(t)
	d := s.newDriver(t)
	job := JobID(t)
	s.cleanupJob(t, d, job)
	refs := []driver.Ref{{JobID: job, Role: driver.RoleController}, {JobID: job, Role: driver.RoleWorker, Index: 0}, {JobID: job, Role: driver.RoleWorker, Index: 1}}
	for _, r := range refs {
		s.start(t, ctx, d, s.spec(t, r, Behaviour{RunFor: 10 * time.Minute}))
	}
	sts := list(t, ctx, d)
	for _, r := range refs {
		if n := countIn(sts, r); n != 1 {
			t.Errorf("List() has %d instances of %s, want 1", n, r)
		}
	}
	for _, st := range sts {
		if st.JobID == job && st.State != driver.Pending && st.State != driver.Running {
			t.Errorf("%s state = %s, want Pending or Running", st.Ref, st.State)
		}
	}
}

func (s *suite) testWatchFanOut(t *testing.T) {
	ctx := s.ctx(t)
	d := s.newDriver(t)
	ref := driver.Ref{JobID: JobID(t), Role: driver.RoleWorker}
	s.cleanupJob(t, d, ref.JobID)
	wctx, cancel := context.WithCancel(ctx)
	a, b := s.watch(t, wctx, d), s.watch(t, ctx, d)
	s.start(t, ctx, d, s.spec(t, ref, Behaviour{RunFor: 300 * time.Millisecond, Exit: 0}))
	s.waitFor(t, a, ref, "a final state", isFinal)
	s.waitFor(t, b, ref, "a final state", isFinal)

	// A later watcher first gets the current state of existing instances.
	c := s.watch(t, ctx, d)
	if st := s.waitFor(t, c, ref, "the current state", func(driver.Status) bool { return true }); st.State != driver.Succeeded {
		t.Errorf("new watcher got %s, want Succeeded", st.State)
	}

	cancel()
	timer := time.NewTimer(s.f.Timeout)
	defer timer.Stop()
	for {
		select {
		case _, open := <-a.ch:
			if !open {
				return
			}
		case <-timer.C:
			t.Fatal("Watch channel not closed after its context ended")
		}
	}
}

func (s *suite) testLogs(t *testing.T) {
	ctx := s.ctx(t)
	d := s.newDriver(t)
	ref := driver.Ref{JobID: JobID(t), Role: driver.RoleWorker}
	s.cleanupJob(t, d, ref.JobID)
	ch := s.watch(t, ctx, d)
	marker := "marker-" + ref.JobID
	s.start(t, ctx, d, s.spec(t, ref, Behaviour{Print: marker, RunFor: 100 * time.Millisecond}))
	s.waitFor(t, ch, ref, "a final state", isFinal)
	rc, err := d.Logs(ctx, ref)
	if !s.f.Logs {
		if err == nil {
			rc.Close()
		} else if !errors.Is(err, driver.ErrNotSupported) {
			t.Errorf("Logs() error = %v, want nil or ErrNotSupported", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("Logs() error = %v", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read logs: %v", err)
	}
	if !strings.Contains(string(b), marker) {
		t.Errorf("Logs() = %q, want it to contain %q", b, marker)
	}
}

func (s *suite) testReattach(t *testing.T) {
	if !s.f.Reattach {
		// Nothing survives such a driver: a new one starts empty.
		ctx := s.ctx(t)
		d1 := s.newDriver(t)
		ref := driver.Ref{JobID: JobID(t), Role: driver.RoleWorker}
		s.start(t, ctx, d1, s.spec(t, ref, Behaviour{RunFor: time.Minute}))
		if err := d1.Close(); err != nil {
			t.Fatalf("Close() error = %v", err)
		}
		return
	}
	ctx := s.ctx(t)
	d1 := s.newDriver(t)
	ref := driver.Ref{JobID: JobID(t), Role: driver.RoleWorker, Index: 2}
	ch1 := s.watch(t, ctx, d1)
	s.start(t, ctx, d1, s.spec(t, ref, Behaviour{Print: "survivor", RunFor: 2500 * time.Millisecond, Exit: 0}))
	s.waitFor(t, ch1, ref, "Running", isState(driver.Running))
	if err := d1.Close(); err != nil {
		t.Fatalf("Close() error = %v", err)
	}
	if err := d1.Close(); err != nil {
		t.Errorf("second Close() error = %v, want nil", err)
	}

	d2 := s.newDriver(t)
	s.cleanupJob(t, d2, ref.JobID)
	ch2 := s.watch(t, ctx, d2)
	sts := list(t, ctx, d2)
	found := false
	for _, st := range sts {
		if st.Ref == ref {
			found = true
			if st.State.Final() {
				t.Errorf("re-attached instance is %s already; the test expects it still running", st.State)
			}
		}
	}
	if !found {
		t.Fatalf("List() of a new driver does not have the running %s: %v", ref, sts)
	}
	final := s.waitFor(t, ch2, ref, "a final state", isFinal)
	if final.State != driver.Succeeded || final.ExitCode == nil || *final.ExitCode != 0 {
		t.Errorf("re-attached instance ended %s with exit code %s (%s), want Succeeded 0", final.State, fmtCode(final.ExitCode), final.Message)
	}
}

func list(t *testing.T, ctx context.Context, d driver.Driver) []driver.Status {
	t.Helper()
	sts, err := d.List(ctx)
	if err != nil {
		t.Fatalf("List() error = %v", err)
	}
	return sts
}

func count(t *testing.T, ctx context.Context, d driver.Driver, ref driver.Ref) int {
	t.Helper()
	return countIn(list(t, ctx, d), ref)
}

func countIn(sts []driver.Status, ref driver.Ref) int {
	n := 0
	for _, st := range sts {
		if st.Ref == ref {
			n++
		}
	}
	return n
}

func fmtCode(c *int) string {
	if c == nil {
		return "nil"
	}
	return strconv.Itoa(*c)
}
