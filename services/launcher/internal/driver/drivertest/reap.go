package drivertest

import (
	"testing"
	"time"

	"github.com/avxrm/rm/services/launcher/internal/driver"
)

// testReap: a driver.Reaper leaves a running instance alone and removes an
// ended one, after which Watch reports its final status again with
// Removed set and List no longer returns it. A driver that is no Reaper
// keeps ended instances until Cleanup, which the other cases show.
func (s *suite) testReap(t *testing.T) {
	ctx := s.ctx(t)
	d := s.newDriver(t)
	r, ok := d.(driver.Reaper)
	if !ok {
		return
	}
	job := JobID(t)
	s.cleanupJob(t, d, job)
	ch := s.watch(t, ctx, d)
	ended := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: 0}
	running := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: 1}
	s.start(t, ctx, d, s.spec(t, ended, Behaviour{RunFor: 200 * time.Millisecond, Exit: 3}))
	s.start(t, ctx, d, s.spec(t, running, Behaviour{RunFor: 10 * time.Minute}))

	s.waitFor(t, ch, running, "Running", isState(driver.Running))
	if err := r.Reap(ctx, running); err != nil {
		t.Fatalf("Reap() of a running instance error = %v", err)
	}
	final := s.waitFor(t, ch, ended, "a final state", isFinal)
	if err := r.Reap(ctx, ended); err != nil {
		t.Fatalf("Reap() error = %v", err)
	}
	gone := s.waitFor(t, ch, ended, "Removed", func(st driver.Status) bool { return st.Removed })
	if gone.State != final.State || fmtCode(gone.ExitCode) != fmtCode(final.ExitCode) {
		t.Errorf("removed status %s exit %s, want the final one: %s exit %s",
			gone.State, fmtCode(gone.ExitCode), final.State, fmtCode(final.ExitCode))
	}
	sts := list(t, ctx, d)
	if n := countIn(sts, ended); n != 0 {
		t.Errorf("List() has the reaped %s", ended)
	}
	for _, st := range sts {
		if st.Ref == running && st.State != driver.Running {
			t.Errorf("%s after a Reap of it: %s, want Running", running, st.State)
		}
	}
	if countIn(sts, running) != 1 {
		t.Errorf("List() lost the running %s after a Reap of it", running)
	}
	if err := r.Reap(ctx, ended); err != nil {
		t.Errorf("second Reap() error = %v, want nil", err)
	}
}
