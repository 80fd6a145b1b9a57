package main_test

import (
	"strings"
	"testing"
)

// A job's args follow --, its command is --command: they reach the
// process; a stray argument before -- is refused.
func TestCLISubmitCommandAndArgs(t *testing.T) {
	s := startServer(t)
	seed(t, s)
	out := s.must(t, "submit", "--queue", "Default", "--app", "sim:1.0", "--command", "/bin/echo", "--wait", "--", "from", "the job", "--seed")
	id := strings.Fields(out)[0]
	if got := s.must(t, "logs", id, "--role", "worker", "--index", "0"); got != "from the job --seed\n" {
		t.Errorf("worker 0 printed %q, want the job's command and args", got)
	}
	if _, errs, code := s.run(t, "submit", "--queue", "Default", "--app", "sim:1.0", "stray"); code == 0 || !strings.Contains(errs, "after --") {
		t.Errorf("a stray argument: exit %d, %s", code, errs)
	}
	if got := s.must(t, "jobs", "ls", "-A", "--owner", "nobody", "-o", "json"); strings.Contains(got, id) {
		t.Errorf("jobs ls --owner nobody lists %s (submitted while auth is off): %s", id, got)
	}
}
