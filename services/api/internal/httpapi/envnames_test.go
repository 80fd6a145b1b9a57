package httpapi

import (
	"maps"
	"slices"
	"testing"

	"github.com/avxrm/rm/pkg/events"
)

// Every variable the launcher always sets is refused with what it holds,
// and no other is: a name added to events.EnvAlways needs its words here.
func TestLauncherEnvIsEnvAlways(t *testing.T) {
	got, want := slices.Sorted(maps.Keys(launcherEnv)), slices.Sorted(slices.Values(events.EnvAlways))
	if !slices.Equal(got, want) {
		t.Errorf("launcherEnv describes %v; events.EnvAlways is %v", got, want)
	}
	for _, name := range events.EnvAlways {
		if errs := validateEnv("environment_variables", map[string]string{name: "x"}); len(errs) != 1 || errs[0].Field != "environment_variables."+name {
			t.Errorf("%s: %v, want one error on environment_variables.%s", name, errs, name)
		}
	}
	for _, name := range []string{events.EnvAPIURL, events.EnvJobToken, "RM_SIM_RUN_SECONDS", "SEED"} {
		if errs := validateEnv("environment_variables", map[string]string{name: "x"}); len(errs) != 0 {
			t.Errorf("%s: %v, want it allowed", name, errs)
		}
	}
}
