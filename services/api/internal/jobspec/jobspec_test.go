package jobspec

import (
	"errors"
	"testing"

	"github.com/avxrm/rm/pkg/events"
	"github.com/google/go-cmp/cmp"
)

func TestResolve(t *testing.T) {
	small := &events.ResourceLimits{CPU: "1"}
	big := &events.ResourceLimits{CPU: "8"}
	q := &events.Queue{Name: "Default", ResourceLimits: small, EnvironmentVariables: map[string]string{"A": "queue", "B": "queue"}}
	app := &Application{ID: "app-1", Image: "app:1", Command: []string{"run"}, Args: []string{"--app"},
		EnvironmentVariables: map[string]string{"B": "app", "C": "app"}}
	arc := &RuntimeConfig{Image: "arc:1", WorkingDirectory: "/w", Args: []string{"--arc"}, ResourceLimits: big,
		EnvironmentVariables: map[string]string{"C": "arc", "D": "arc"}}
	cases := map[string]struct {
		app  *Application
		arc  *RuntimeConfig
		sub  Submission
		want events.RuntimeSpec
		err  error
	}{
		"application only": {app: app, want: events.RuntimeSpec{Image: "app:1", Command: []string{"run"}, Args: []string{"--app"},
			ResourceLimits: small, EnvironmentVariables: map[string]string{"A": "queue", "B": "app", "C": "app"}}},
		"app-runtime-config wins over application and inline image": {app: app, arc: arc,
			sub: Submission{InlineImage: "inline:1", Env: map[string]string{"D": "job"}},
			want: events.RuntimeSpec{Image: "arc:1", Command: []string{"run"}, Args: []string{"--arc"}, WorkingDirectory: "/w",
				ResourceLimits: big, EnvironmentVariables: map[string]string{"A": "queue", "B": "app", "C": "arc", "D": "job"}}},
		"inline image wins over the application's": {app: app, sub: Submission{InlineImage: "inline:1", AppEnv: map[string]string{"C": "inline"}},
			want: events.RuntimeSpec{Image: "inline:1", Command: []string{"run"}, Args: []string{"--app"},
				ResourceLimits: small, EnvironmentVariables: map[string]string{"A": "queue", "B": "app", "C": "inline"}}},
		"inline application, nothing registered": {sub: Submission{InlineImage: "inline:1"},
			want: events.RuntimeSpec{Image: "inline:1", ResourceLimits: small, EnvironmentVariables: map[string]string{"A": "queue", "B": "queue"}}},
		"the job's args replace the runtime's": {app: app, arc: arc, sub: Submission{Args: []string{"--seed", "42"}},
			want: events.RuntimeSpec{Image: "arc:1", Command: []string{"run"}, Args: []string{"--seed", "42"}, WorkingDirectory: "/w",
				ResourceLimits: big, EnvironmentVariables: map[string]string{"A": "queue", "B": "app", "C": "arc", "D": "arc"}}},
		"the job's command replaces the runtime's command and args": {app: app, arc: arc, sub: Submission{Command: []string{"/opt/sim/run"}},
			want: events.RuntimeSpec{Image: "arc:1", Command: []string{"/opt/sim/run"}, WorkingDirectory: "/w",
				ResourceLimits: big, EnvironmentVariables: map[string]string{"A": "queue", "B": "app", "C": "arc", "D": "arc"}}},
		"the job's command and args": {sub: Submission{InlineImage: "inline:1", Command: []string{"sleep"}, Args: []string{"1"}},
			want: events.RuntimeSpec{Image: "inline:1", Command: []string{"sleep"}, Args: []string{"1"}, ResourceLimits: small,
				EnvironmentVariables: map[string]string{"A": "queue", "B": "queue"}}},
		"no image anywhere": {app: &Application{ID: "app-2"}, err: ErrNoImage},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := Resolve(q, tc.app, tc.arc, tc.sub)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Resolve() error = %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Resolve() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
