package cli

import (
	"strings"
	"testing"
)

// Values that ask for nothing sensible are refused, not taken silently:
// a negative timeout, a negative tail (--tail 0 is none of the log: with
// -f, only what follows).
func TestBadValuesRefused(t *testing.T) {
	srv := fakeServer(t, nil)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"jobs", "wait", "job-a", "--timeout", "-1s"}, "--timeout -1s: want a duration of 0 (wait as long as it takes) or more"},
		{[]string{"logs", "job-a", "--tail", "-5"}, "--tail -5: want a number of lines, 0 or more"},
		{[]string{"deployments", "logs", "viz", "--tail", "-1"}, "--tail -1: want a number of lines, 0 or more"},
	} {
		if _, _, err := runCLI(t, srv, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}

// A --queue or --array that names nothing is the server's 404, not "no
// job matches": a typo must not look like nothing to do.
func TestUnknownFilterTargets(t *testing.T) {
	srv := fakeServer(t, map[string]fakeAnswer{
		"GET /queues/Default": {200, `{"id":"q-1","name":"Default"}`},
		"GET /jobs":           {200, `{"items":[]}`},
	})
	for _, args := range [][]string{
		{"jobs", "rm", "--queue", "Defualt"}, {"jobs", "cancel", "--queue", "Defualt"}, {"jobs", "wait", "--queue", "Defualt"},
		{"jobs", "cleanup", "--queue", "Defualt"}, {"jobs", "resubmit", "--queue", "Defualt"}, {"jobs", "ls", "--queue", "Defualt"},
		{"jobs", "cancel", "--array", "arr-nosuch"}, {"jobs", "ls", "--queue", "Default", "--array", "arr-nosuch"},
	} {
		if _, _, err := runCLI(t, srv, args...); err == nil || !strings.Contains(err.Error(), "404") {
			t.Errorf("%v: %v, want the server's 404", args, err)
		}
	}
	if out, errs, err := runCLI(t, srv, "jobs", "cancel", "--queue", "Default"); err != nil || out != "" || errs != "no job matches\n" {
		t.Errorf("cancel --queue Default with no job: %v, %q, %q", err, out, errs)
	}
}

// A job named twice is acted on once, in the order first named.
func TestBulkIdsOnce(t *testing.T) {
	srv := fakeServer(t, map[string]fakeAnswer{"POST /jobs/job-a/cancel": {202, `{}`}})
	out, errs, err := runCLI(t, srv, "jobs", "cancel", "job-a", "job-b", "job-a")
	if want := "job-a cancel requested\n"; out != want || !strings.Contains(errs, "job-b: 404") || err == nil || !strings.Contains(err.Error(), "1 of 2 jobs failed") {
		t.Errorf("cancel job-a job-b job-a: %q, %q, %v; want %q and job-b failed", out, errs, err, want)
	}
	help, _, _ := runCLI(t, srv, "arrays", "wait", "--help")
	if !strings.Contains(help, "0 if all succeeded, 1 if any failed") || !strings.Contains(help, "3 if\nany was cancelled") {
		t.Errorf("arrays wait --help does not give the exit codes:\n%s", help)
	}
}
