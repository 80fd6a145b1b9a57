package main_test

import (
	"regexp"
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
	// A flag's bad value is named with what it takes, not the parser's words.
	if _, errs, code := s.run(t, "submit", "--queue", "Default", "--app", "sim:1.0", "--workers", "abc"); code != 1 || errs != "avxrm: --workers \"abc\": want a whole number\n" {
		t.Errorf("--workers abc: exit %d, %q", code, errs)
	}
	// Tables show the queue and application an app-runtime-config names by name.
	s.must(t, "runtime-configs", "create", "Default", "sim:1.0", "--set", "image=local", "--set", "working_directory=/tmp")
	if got := s.must(t, "runtime-configs", "ls"); !regexp.MustCompile(`(?m)^Default +sim 1\.0 +local +/tmp *$`).MatchString(got) {
		t.Errorf("runtime-configs ls:\n%s", got)
	}
}
