package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
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

// submit -f, the limits and retries, dependencies and arrays: a job body
// from a file with flags over it, --time-limit, --retries, --after-ok
// (a failed dependency cancels the job, and --wait says why), and
// --array with --wait following the array's counts.
func TestCLISubmitFileLimitsDependenciesArrays(t *testing.T) {
	s := startServer(t)
	seed(t, s)
	dir := t.TempDir()
	file := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(file, []byte("queue_id: Default\napplication: {name: sim, version: \"1.0\"}\nworker_instances: 3\nlabels: {from: file}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	id := strings.Fields(s.must(t, "submit", "-f", file, "--workers", "2", "--wait"))[0]
	var j struct {
		WorkerInstances int               `json:"worker_instances"`
		Labels          map[string]string `json:"labels"`
		Attempt         int               `json:"attempt"`
	}
	if err := json.Unmarshal([]byte(s.must(t, "jobs", "get", id, "-o", "json")), &j); err != nil || j.WorkerInstances != 2 || j.Labels["from"] != "file" {
		t.Errorf("the job from the file with --workers 2: %+v (%v)", j, err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("queue_id: Default\nworkers: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := s.run(t, "submit", "-f", bad); code != 1 || !strings.Contains(errs, `unknown field "workers"`) {
		t.Errorf("a file with an unknown field: exit %d, %q", code, errs)
	}

	// A time limit and retries reach the job; --wait says how it ended.
	if _, errs, code := s.run(t, "submit", "--queue", "Default", "--app", "sim:1.0", "--env", "SLEEP=30", "--time-limit", "1s", "--wait"); code != 1 || !strings.Contains(errs, "ran longer than its limit of 1s") {
		t.Errorf("--time-limit 1s: exit %d, %q", code, errs)
	}
	out, errs, code := s.run(t, "submit", "--queue", "Default", "--app", "sim:1.0", "--env", "FAIL_INDEX=0", "--retries", "1", "--retry-on", "failed", "--wait")
	if code != 1 || !strings.Contains(errs, "worker 0 exited with code 2") {
		t.Errorf("--retries 1 of a failing job: exit %d, %q", code, errs)
	}
	if err := json.Unmarshal([]byte(s.must(t, "jobs", "get", strings.Fields(out)[0], "-o", "json")), &j); err != nil || j.Attempt != 2 {
		t.Errorf("--retries 1: attempt %d (%v), want 2", j.Attempt, err)
	}

	// A dependency that fails cancels its dependent, which --wait explains.
	dep := strings.TrimSpace(s.must(t, "submit", "--queue", "Default", "--app", "sim:1.0", "--env", "FAIL_INDEX=0"))
	_, errs, code = s.run(t, "submit", "--queue", "Default", "--app", "sim:1.0", "--after-ok", dep, "--wait")
	if want := "was cancelled: dependency can no longer succeed: " + dep + " failed"; code != 3 || !strings.Contains(errs, want) {
		t.Errorf("--after-ok a failing job: exit %d, %q, want 3 and %q", code, errs, want)
	}

	// An array of 4, 2 at a time, followed to its end.
	out = s.must(t, "submit", "-f", file, "--workers", "1", "--array", "4", "--max-parallel", "2", "--wait")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	arr := lines[0]
	if !strings.HasPrefix(arr, "arr-") || !strings.HasSuffix(lines[len(lines)-1], "4 jobs: 4 succeeded") {
		t.Errorf("submit --array 4 --wait:\n%s", out)
	}
	var jobs []struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal([]byte(s.must(t, "jobs", "ls", "-A", "--array", arr, "-o", "json")), &jobs); err != nil || len(jobs) != 4 {
		t.Fatalf("jobs ls --array: %+v (%v)", jobs, err)
	}
	for i, j := range jobs {
		if j.Name != fmt.Sprintf("%s-%d", arr, i) {
			t.Errorf("the array's job %d is named %q", i, j.Name)
		}
	}
	if d := s.must(t, "jobs", "describe", jobs[0].ID); !strings.Contains(d, "Array:     "+arr+", index 0\n") {
		t.Errorf("describe of the array's job 0 does not name the array:\n%s", d)
	}
	// An array given no name is named by its id, which the table shows once.
	if got := s.must(t, "arrays", "ls"); !regexp.MustCompile(`(?m)^- +` + arr + ` +Default +4 +2 +4 succeeded `).MatchString(got) {
		t.Errorf("arrays ls:\n%s", got)
	}
	if got := s.must(t, "arrays", "wait", arr); got != arr+" 4 jobs: 4 succeeded\n" {
		t.Errorf("arrays wait of an ended array: %q", got)
	}
}

// cancel, cleanup and rm take several jobs, or filters that select them
// (never both, not neither); every job is tried, a line printed for each,
// and the command fails if any request did.
func TestCLIBulkJobActions(t *testing.T) {
	s := startServer(t)
	seed(t, s)
	submit := func(campaign string) string {
		return strings.TrimSpace(s.must(t, "submit", "--queue", "Default", "--app", "sim:1.0", "--env", "SLEEP=60",
			"--label", "campaign="+campaign))
	}
	night := []string{submit("night"), submit("night"), submit("night")}
	day := submit("day")

	out := s.must(t, "jobs", "cancel", "--label", "campaign=night")
	for _, id := range night {
		if !strings.Contains(out, id+" cancel requested\n") {
			t.Errorf("cancel --label campaign=night did not cancel %s:\n%s", id, out)
		}
	}
	if strings.Contains(out, day) {
		t.Errorf("cancel --label campaign=night cancelled %s of campaign day:\n%s", day, out)
	}
	for _, args := range [][]string{{"jobs", "cancel"}, {"jobs", "cancel", day, "--queue", "Default"}} {
		if _, errs, code := s.run(t, args...); code != 1 || !strings.Contains(errs, "name the jobs") {
			t.Errorf("%v: exit %d, %q; want 1 and what it takes", args, code, errs)
		}
	}
	// One job that is not there: the others are still done, and it is named.
	out, errs, code := s.run(t, "jobs", "cancel", day, "job-does-not-exist")
	if code != 1 || out != day+" cancel requested\n" || !strings.Contains(errs, "job-does-not-exist: 404") ||
		!strings.Contains(errs, "cancel: 1 of 2 jobs failed") {
		t.Errorf("cancel of a job and a missing one: exit %d, %q, %q", code, out, errs)
	}
	if out, errs, code := s.run(t, "jobs", "cancel", "--label", "campaign=none"); code != 0 || out != "" || errs != "no job matches\n" {
		t.Errorf("cancel selecting nothing: exit %d, %q, %q", code, out, errs)
	}
	// rm selects ended jobs too.
	waitFor(t, time.Minute, "the night's jobs cancelled", func() bool {
		return strings.Count(s.must(t, "jobs", "ls", "-A", "--label", "campaign=night", "--status", "cancelled"), "\n") == 4
	})
	if out := s.must(t, "jobs", "rm", "--label", "campaign=night"); strings.Count(out, " deleted\n") != 3 {
		t.Errorf("rm --label campaign=night:\n%s", out)
	}
	if got := s.must(t, "jobs", "ls", "-A", "--label", "campaign=night", "-o", "json"); strings.TrimSpace(got) != "[]" {
		t.Errorf("the night's jobs after rm: %s", got)
	}
	// resubmit: a new job with the old one's submission; the old one stays.
	named := strings.TrimSpace(s.must(t, "submit", "--queue", "Default", "--app", "sim:1.0", "--env", "SLEEP=60",
		"--label", "campaign=dusk", "--name", "dusk-1", "--priority", "5", "--time-limit", "10m"))
	s.must(t, "jobs", "cancel", named) // day was cancelled above
	waitFor(t, time.Minute, "both cancelled", func() bool {
		return strings.Count(s.must(t, "jobs", "ls", "-A", "--status", "cancelled"), "\n") == 3
	})
	out = s.must(t, "jobs", "resubmit", "--status", "cancelled")
	again := regexp.MustCompile(`(?m)^(job-\w+) resubmitted as (job-\w+)$`).FindAllStringSubmatch(out, -1)
	if len(again) != 2 {
		t.Fatalf("resubmit --status cancelled:\n%s", out)
	}
	for _, m := range again {
		var was, now map[string]any
		_ = json.Unmarshal([]byte(s.must(t, "jobs", "get", m[1], "-o", "json")), &was)
		_ = json.Unmarshal([]byte(s.must(t, "jobs", "get", m[2], "-o", "json")), &now)
		// Its labels and one more: the job it reruns.
		if labels, _ := now["labels"].(map[string]any); labels["rm.avxrm.io/resubmitted-from"] != m[1] {
			t.Errorf("%s resubmitted as %s: labels %v, want rm.avxrm.io/resubmitted-from=%s", m[1], m[2], labels, m[1])
		} else {
			delete(labels, "rm.avxrm.io/resubmitted-from")
		}
		for _, k := range []string{"queue_id", "application", "worker_instances", "environment_variables", "labels", "priority", "max_run_seconds"} {
			if fmt.Sprint(was[k]) != fmt.Sprint(now[k]) {
				t.Errorf("%s resubmitted as %s: %s %v, was %v", m[1], m[2], k, now[k], was[k])
			}
		}
		wantName := m[2] // a name that was the job's id is the new job's id
		if m[1] == named {
			wantName = "dusk-1"
		}
		if now["name"] != wantName || was["status"] != "cancelled" {
			t.Errorf("%s resubmitted as %s named %v (want %s); the old one %v", m[1], m[2], now["name"], wantName, was["status"])
		}
	}
}

// jobs wait: one job as submit --wait follows it; several, or those the
// filters select, a line each as it ends and the worst end as the exit
// code; --timeout names what has not ended.
func TestCLIJobsWait(t *testing.T) {
	s := startServer(t)
	seed(t, s)
	submit := func(args ...string) string {
		return strings.TrimSpace(s.must(t, append([]string{"submit", "--queue", "Default", "--app", "sim:1.0"}, args...)...))
	}
	ok := submit("--label", "w=a")
	bad := submit("--env", "FAIL_INDEX=0", "--label", "w=a")
	slow := submit("--env", "SLEEP=60", "--label", "w=b")

	if out, errs, code := s.run(t, "jobs", "wait", ok); code != 0 || !strings.Contains(out, ok+" succeeded") {
		t.Errorf("wait %s: exit %d, %q, %q", ok, code, out, errs)
	}
	out, errs, code := s.run(t, "jobs", "wait", "--label", "w=a")
	if code != 1 || !strings.Contains(out, ok+" succeeded\n") || !strings.Contains(out, bad+" failed: worker 0 exited with code 2") ||
		errs != "avxrm: 2 jobs: 1 succeeded, 1 failed, 0 cancelled\n" {
		t.Errorf("wait --label w=a: exit %d, %q, %q", code, out, errs)
	}
	out, errs, code = s.run(t, "jobs", "wait", ok, slow, "--timeout", "2s")
	if code != 1 || out != ok+" succeeded\n" || errs != "avxrm: timed out after 2s: 1 of 2 jobs have not ended: "+slow+"\n" {
		t.Errorf("wait with a job still running, --timeout 2s: exit %d, %q, %q", code, out, errs)
	}
	if _, errs, code := s.run(t, "jobs", "wait", slow, "--timeout", "1s"); code != 1 || !strings.HasSuffix(errs, "avxrm: job "+slow+": timed out after 1s; it has not ended\n") {
		t.Errorf("wait for one running job, --timeout 1s: exit %d, %q", code, errs)
	}
	s.must(t, "jobs", "cancel", slow)
	if _, errs, code := s.run(t, "jobs", "wait", "--label", "w=b"); code != 3 || !strings.Contains(errs, "job "+slow+" was cancelled") {
		t.Errorf("wait for a cancelled job: exit %d, %q", code, errs)
	}
	out, errs, code = s.run(t, "jobs", "wait", ok, slow)
	if code != 3 || errs != "avxrm: 2 jobs: 1 succeeded, 0 failed, 1 cancelled\n" || !strings.Contains(out, slow+" cancelled") {
		t.Errorf("wait for a succeeded and a cancelled job: exit %d, %q, %q", code, out, errs)
	}
	if _, errs, code := s.run(t, "jobs", "wait"); code != 1 || !strings.Contains(errs, "name the jobs") {
		t.Errorf("wait for nothing: exit %d, %q", code, errs)
	}
}

// With -o json, submit --wait, jobs wait and arrays wait show their
// progress on stderr and print one document on stdout: the job, the jobs
// or the array as they ended; the exit code still says how they ended.
func TestCLIWaitJSON(t *testing.T) {
	s := startServer(t)
	seed(t, s)
	type job struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	out, errs, code := s.run(t, "submit", "--queue", "Default", "--app", "sim:1.0", "--env", "FAIL_INDEX=0", "--wait", "-o", "json")
	var failed job
	// Its progress goes to stderr, from the state the first read finds: on
	// a quick server that may already be past submitted.
	if err := json.Unmarshal([]byte(out), &failed); err != nil || code != 1 || failed.Status != "failed" ||
		!regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(failed.ID)+` (submitted|pending|admitted|running|failed)\b`).MatchString(errs) {
		t.Errorf("submit --wait -o json of a failing job: exit %d, %v, stdout %q, stderr %q", code, err, out, errs)
	}
	ok := strings.TrimSpace(s.must(t, "submit", "--queue", "Default", "--app", "sim:1.0"))
	out, errs, code = s.run(t, "jobs", "wait", ok, "-o", "json")
	var one job
	if err := json.Unmarshal([]byte(out), &one); err != nil || code != 0 || one.ID != ok || one.Status != "succeeded" {
		t.Errorf("jobs wait -o json: exit %d, %v, stdout %q, stderr %q", code, err, out, errs)
	}
	out, errs, code = s.run(t, "jobs", "wait", ok, failed.ID, "-o", "json")
	var both []job
	if err := json.Unmarshal([]byte(out), &both); err != nil || code != 1 || len(both) != 2 || both[0].ID != ok || both[1].Status != "failed" ||
		!strings.Contains(errs, ok+" succeeded\n") {
		t.Errorf("jobs wait -o json of two: exit %d, %v, stdout %q, stderr %q", code, err, out, errs)
	}
	out, errs, code = s.run(t, "submit", "--queue", "Default", "--app", "sim:1.0", "--array", "2", "--wait", "-o", "yaml")
	var arr struct {
		ID     string           `json:"id"`
		Counts map[string]int64 `json:"counts"`
	}
	if err := yaml.Unmarshal([]byte(out), &arr); err != nil || code != 0 || arr.Counts["succeeded"] != 2 || !strings.Contains(errs, arr.ID+" 2 jobs:") {
		t.Errorf("submit --array 2 --wait -o yaml: exit %d, %v, stdout %q, stderr %q", code, err, out, errs)
	}
	out, _, code = s.run(t, "arrays", "wait", arr.ID, "-o", "json")
	if err := json.Unmarshal([]byte(out), &arr); err != nil || code != 0 || arr.Counts["succeeded"] != 2 {
		t.Errorf("arrays wait -o json: exit %d, %v, stdout %q", code, err, out)
	}
}

// --app takes an application's bare name (with one version) or id, which
// the server resolves; a mistyped --queue of a bulk command is the
// server's 404, not "no job matches"; a 422 names the flags given.
func TestCLINamesResolvedAndChecked(t *testing.T) {
	s := startServer(t)
	seed(t, s)
	id := strings.TrimSpace(s.must(t, "submit", "--queue", "Default", "--app", "sim"))
	if got := s.must(t, "jobs", "get", id, "-o", "json"); !strings.Contains(got, `"version": "1.0"`) {
		t.Errorf("submit --app sim: the job's application is not sim 1.0:\n%s", got)
	}
	if _, errs, code := s.run(t, "submit", "--queue", "Default", "--app", id); code != 1 || !strings.Contains(errs, "422") || !strings.Contains(errs, "--app: ") {
		t.Errorf("submit --app <a job's id>: exit %d, %q", code, errs)
	}
	if _, errs, code := s.run(t, "submit", "--queue", "Default", "--app", "sim", "--workers", "0"); code != 1 || !strings.Contains(errs, "--workers: expected number >= 1") {
		t.Errorf("submit --workers 0: exit %d, %q", code, errs)
	}
	for _, args := range [][]string{{"jobs", "rm", "--queue", "Defualt"}, {"jobs", "ls", "--queue", "Defualt"}, {"jobs", "cancel", "--array", "arr-nosuch"}} {
		if out, errs, code := s.run(t, args...); code != 1 || out != "" || !strings.Contains(errs, "404") {
			t.Errorf("%v: exit %d, %q, %q; want the server's 404", args, code, out, errs)
		}
	}
}

// A job that names an image of its own while its queue's runtime config of
// its application gives another runs the config's (API.md's order): submit
// says so on stderr, rather than leave the job's record naming an image
// that never ran. Without a config, or with the same image, it says nothing.
func TestCLISubmitSaysWhenItsImageIsNotUsed(t *testing.T) {
	s := startServer(t)
	seed(t, s)
	note := "is not used"
	if _, errs, code := s.run(t, "submit", "--queue", "Default", "--app", "sim:1.0", "--image", "registry/sim:9"); code != 0 || strings.Contains(errs, note) {
		t.Errorf("--image with no runtime config: exit %d, stderr %q; want 0 and no note", code, errs)
	}
	s.must(t, "runtime-configs", "create", "Default", "sim:1.0", "--set", "image=registry/sim:2", "--set", "working_directory=/tmp")
	out, errs, code := s.run(t, "submit", "--queue", "Default", "--app", "sim:1.0", "--image", "registry/sim:9")
	want := "note: the job runs the image registry/sim:2, which queue Default's runtime config of its application gives; " +
		"that comes before the image the job names (registry/sim:9), so it is not used\n"
	if code != 0 || !strings.HasPrefix(out, "job-") || errs != want {
		t.Errorf("--image beside a runtime config's: exit %d, stdout %q, stderr %q; want the job's id and %q", code, out, errs, want)
	}
	for _, args := range [][]string{{"--image", "registry/sim:2"}, {}} {
		args = append([]string{"submit", "--queue", "Default", "--app", "sim:1.0"}, args...)
		if _, errs, code := s.run(t, args...); code != 0 || strings.Contains(errs, note) {
			t.Errorf("%v: exit %d, stderr %q; want 0 and no note", args, code, errs)
		}
	}
}
