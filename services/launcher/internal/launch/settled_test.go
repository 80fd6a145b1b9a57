package launch

import (
	"testing"

	"github.com/avxrm/rm/services/launcher/internal/driver"
)

// TestPoolSettled follows a job's instances through two drivers (its
// controller on one, its workers on another): the job is settled only when
// every instance any driver knows has ended, a late non-final status of an
// ended instance does not bring it back, and a job no driver knows is settled.
func TestPoolSettled(t *testing.T) {
	pl := newPool(nil, driver.Options{}, nil, func(driver.Ref) {})
	ctl := &pooled{jobs: map[string]map[driver.Ref]driver.Status{}, live: map[string]int{}}
	wrk := &pooled{jobs: map[string]map[driver.Ref]driver.Status{}, live: map[string]int{}}
	pl.drivers["ctl"], pl.drivers["wrk"] = ctl, wrk
	ref := func(role driver.Role, i int) driver.Ref { return driver.Ref{JobID: "job-1", Role: role, Index: i} }
	put := func(pd *pooled, r driver.Ref, s driver.State) { pd.put(driver.Status{Ref: r, State: s}) }

	steps := []struct {
		name string
		do   func()
		want bool
	}{
		{"no instance known", func() {}, true},
		{"controller pending", func() { put(ctl, ref(driver.RoleController, 0), driver.Pending) }, false},
		{"controller running, worker running", func() {
			put(ctl, ref(driver.RoleController, 0), driver.Running)
			put(wrk, ref(driver.RoleWorker, 0), driver.Running)
			put(wrk, ref(driver.RoleWorker, 1), driver.Running)
		}, false},
		{"one worker ended", func() { put(wrk, ref(driver.RoleWorker, 0), driver.Succeeded) }, false},
		{"the same status again", func() { put(wrk, ref(driver.RoleWorker, 0), driver.Succeeded) }, false},
		{"late running of an ended worker ignored", func() { put(wrk, ref(driver.RoleWorker, 0), driver.Running) }, false},
		{"the other worker failed", func() { put(wrk, ref(driver.RoleWorker, 1), driver.Failed) }, false},
		{"the controller ended", func() { put(ctl, ref(driver.RoleController, 0), driver.Succeeded) }, true},
		{"a retry starts a worker again after the cache was forgotten", func() {
			wrk.forget("job-1")
			put(wrk, ref(driver.RoleWorker, 0), driver.Pending)
		}, false},
	}
	for _, st := range steps {
		st.do()
		if got := pl.settled("job-1"); got != st.want {
			t.Fatalf("%s: settled = %v, want %v", st.name, got, st.want)
		}
	}
	if !pl.settled("job-2") {
		t.Error("a job no driver knows is not settled")
	}
}
