package ui

import (
	"testing"
	"time"
)

// A job that ended without the running step: "never ran" only when no
// instance started; one whose first instances failed at once ended before
// every instance was running.
func TestNotRunningNote(t *testing.T) {
	at := time.Now()
	for _, c := range []struct {
		name string
		j    jobView
		want string
	}{
		{"no instance", jobView{}, "never ran"},
		{"all pending, then stopped", jobView{Instances: []instance{{Status: "pending"}, {Status: "stopped"}}}, "never ran"},
		{"one started", jobView{Instances: []instance{{Status: "stopped", StartedAt: &at}, {Status: "pending"}}}, "ended before every instance was running"},
		{"one failed", jobView{Instances: []instance{{Status: "failed"}}}, "ended before every instance was running"},
		{"counted only", jobView{InstanceCounts: map[string]map[string]int{"worker": {"failed": 1, "stopped": 1}}}, "ended before every instance was running"},
	} {
		if got := notRunningNote(&c.j); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
