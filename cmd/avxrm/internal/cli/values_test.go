package cli

import (
	"strings"
	"testing"
)

// Values that ask for nothing sensible are refused, not taken silently:
// a negative timeout, a tail of no lines.
func TestBadValuesRefused(t *testing.T) {
	srv := fakeServer(t, nil)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"jobs", "wait", "job-a", "--timeout", "-1s"}, "--timeout -1s: want a duration of 0 (wait as long as it takes) or more"},
		{[]string{"logs", "job-a", "--tail", "0"}, "--tail 0: want a number of lines, 1 or more"},
		{[]string{"logs", "job-a", "--tail", "-5"}, "--tail -5: want a number of lines, 1 or more"},
		{[]string{"deployments", "logs", "viz", "--tail", "0"}, "--tail 0: want a number of lines, 1 or more"},
	} {
		if _, _, err := runCLI(t, srv, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}
