package cli

import (
	"strings"
	"testing"
)

// The get and rm examples of a resource command name a resource as its set
// example does: `avxrm deployments rm viz`, `avxrm apps get sim:1.0`.
// Before, every kind's said Default, a queue's name (`avxrm apps rm
// Default`, `avxrm deployments get Default -o json`).
func TestResourceExamplesNameTheirKind(t *testing.T) {
	for _, k := range kinds {
		_, _, setHelp := run(t, "", k.use, "set", "--help")
		named := "avxrm " + k.use + " set " + k.key + " "
		if !strings.Contains(setHelp, named) {
			t.Errorf("%s set --help has no example of %q:\n%s", k.use, named, setHelp)
		}
		for _, sub := range []string{"get", "rm"} {
			_, _, help := run(t, "", k.use, sub, "--help")
			want := "avxrm " + k.use + " " + sub + " " + k.key
			if !strings.Contains(help, want+"\n") && !strings.Contains(help, want+" ") {
				t.Errorf("%s %s --help: want the example %q, got:\n%s", k.use, sub, want, help)
			}
		}
	}
}
