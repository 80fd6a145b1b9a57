package main_test

// End-to-end tests of the avxrm command line: the binary is built once,
// `avxrm up` runs from it on free ports with its data in a temp dir, and
// every command runs as a separate process against it, as a user would.

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/allinone"
	"github.com/avxrm/rm/cmd/avxrm/internal/devidp"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/sdk/go/avxrm/oidctest"
	"github.com/creack/pty"
)

var binary string

func TestMain(m *testing.M) { allinone.RunTests(m, &binary) }

// server is where the commands go: an all-in-one run from the built binary.
type server struct {
	url  string
	home string // HOME and XDG_CONFIG_HOME of the commands, so no login cache leaks in
}

func startServer(t *testing.T) *server {
	t.Helper()
	return &server{url: allinone.Start(t, binary, t.TempDir(), "127.0.0.1:0").URL, home: t.TempDir()}
}

func (s *server) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), "RM_SERVER="+s.url, "HOME="+s.home, "XDG_CONFIG_HOME="+s.home, "RM_TOKEN=")
	return cmd
}

// background starts avxrm; the returned buffer collects its stdout and
// stderr while it runs. The command ends with ctx.
func (s *server) background(t *testing.T, ctx context.Context, args ...string) (*exec.Cmd, *eventstest.SyncBuffer) {
	t.Helper()
	cmd := s.command(ctx, args...)
	out := &eventstest.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}

// run runs avxrm and returns its stdout, stderr and exit code.
func (s *server) run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := s.command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("avxrm %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// must runs avxrm and fails the test unless it exits 0.
func (s *server) must(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := s.run(t, args...)
	if code != 0 {
		t.Fatalf("avxrm %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// The local test application: it prints "tick 1..$TICKS" $TICK seconds
// (0.5 by default) apart, fails with exit code 2 when it is worker
// $FAIL_INDEX, else sleeps $SLEEP seconds (1 by default).
const script = `echo "hello from $RM_ROLE $RM_INSTANCE_INDEX"
i=0; while [ "$i" -lt "${TICKS:-0}" ]; do i=$((i+1)); echo "tick $i"; sleep "${TICK:-0.5}"; done
if [ "$RM_ROLE" = worker ] && [ "$RM_INSTANCE_INDEX" = "${FAIL_INDEX:-none}" ]; then exit 2; fi
exec sleep "${SLEEP:-1}"`

// seed creates queue Default (limit 10) and the application sim:1.0 with
// the CLI, the application from a YAML file.
func seed(t *testing.T, s *server) {
	t.Helper()
	s.must(t, "queues", "create", "Default", "--limit", "5")
	s.must(t, "queues", "set", "Default", "--limit", "10")
	f := filepath.Join(t.TempDir(), "app.yaml")
	cmdJSON, _ := json.Marshal([]string{"/bin/sh", "-c", script})
	if err := os.WriteFile(f, []byte("name: sim\nversion: \"1.0\"\nimage: local\ncommand: "+string(cmdJSON)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.must(t, "apps", "create", "-f", f)
	var q map[string]any
	if err := json.Unmarshal([]byte(s.must(t, "queues", "get", "Default", "-o", "json")), &q); err != nil {
		t.Fatal(err)
	}
	if q["maximum_allowed_worker_instances"] != float64(10) {
		t.Fatalf("queue after set --limit 10: %v", q)
	}
}

// The worked example: a job of 10 takes the queue, a job of 8 says why it
// waits, then runs; both --wait commands exit 0.
func TestCLIWorkedExample(t *testing.T) {
	s := startServer(t)
	seed(t, s)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// It holds the queue 8 s: long enough, on a loaded machine, for the
	// second job to be seen pending by two more commands (4 s was not, in a
	// make test beside other work on 2026-12-05).
	first, firstOut := s.background(t, ctx, "submit", "--queue", "Default", "--app", "sim:1.0", "--workers", "10", "--env", "SLEEP=8", "--wait")
	waitFor(t, 60*time.Second, "the first job running", func() bool { return strings.Contains(firstOut.String(), " running ") })

	second, secondOut := s.background(t, ctx, "submit", "--queue", "Default", "--app", "sim:1.0", "--workers", "8", "--wait")
	waitFor(t, 60*time.Second, "the second job pending", func() bool { return strings.Contains(secondOut.String(), " pending") })
	// While it waits: its place and expected start, in the queue's list and
	// in describe.
	pending := s.must(t, "queues", "pending", "Default")
	id := strings.Fields(secondOut.String())[0]
	if !regexp.MustCompile(`(?m)^POS .* START .*\n1 +` + id + ` .* 8 +0 +(in \d+s|now|unknown) `).MatchString(pending) {
		t.Errorf("queues pending Default:\n%s", pending)
	}
	desc := s.must(t, "jobs", "describe", id)
	for _, want := range []string{`Position:\s+1 among the jobs waiting on Default`, `Expected:\s+(admitted at \S+ \((in \d+s|now)\)|unknown)`} {
		if !regexp.MustCompile(want).MatchString(desc) {
			t.Errorf("describe of the pending job lacks %q:\n%s", want, desc)
		}
	}
	if err := second.Wait(); err != nil {
		t.Errorf("second submit --wait: %v\n%s", err, secondOut.String())
	}
	out := secondOut.String()
	if !strings.Contains(out, "pending: queue Default allows 10 worker instances, 10 in use, job needs 8") {
		t.Errorf("second submit did not print its pending reason:\n%s", out)
	}
	if !strings.Contains(out, "succeeded") {
		t.Errorf("second submit did not print its end:\n%s", out)
	}
	if err := first.Wait(); err != nil {
		t.Errorf("first submit --wait: %v\n%s", err, firstOut.String())
	}
	// Not a terminal: one line per change, each starting with the job's id.
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(l, "job-") || strings.Contains(l, "\r") {
			t.Errorf("line %q of the non-terminal output", l)
		}
	}

	var jobs []map[string]any
	if err := json.Unmarshal([]byte(s.must(t, "jobs", "ls", "-A", "-o", "json")), &jobs); err != nil {
		t.Fatalf("jobs ls -o json: %v", err)
	}
	if len(jobs) != 2 || jobs[0]["status"] != "succeeded" || jobs[1]["status"] != "succeeded" {
		t.Errorf("jobs ls -A -o json: %v", jobs)
	}
	if table := s.must(t, "jobs", "ls", "-A"); !strings.HasPrefix(table, "ID ") || strings.Count(table, "succeeded") != 2 {
		t.Errorf("jobs ls -A:\n%s", table)
	}
	if active := s.must(t, "jobs", "ls"); strings.Count(active, "\n") != 1 {
		t.Errorf("jobs ls without -A lists ended jobs:\n%s", active)
	}
	desc = s.must(t, "jobs", "describe", jobs[1]["id"].(string))
	for _, want := range []string{`Status:\s+succeeded`, `Admitted\s+True`, `worker\s+8 succeeded`, `rm.job.pending`, `rm.job.succeeded`} {
		if !regexp.MustCompile(want).MatchString(desc) {
			t.Errorf("describe lacks %q:\n%s", want, desc)
		}
	}
}

// A failing worker: --wait exits 1 and prints the failure condition.
func TestCLIFailingJobExits1(t *testing.T) {
	s := startServer(t)
	seed(t, s)
	out, errs, code := s.run(t, "submit", "--queue", "Default", "--app", "sim:1.0", "--workers", "2", "--env", "FAIL_INDEX=1", "--wait")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(out+errs, "worker 1 exited with code 2") {
		t.Errorf("the failure is not printed:\n%s%s", out, errs)
	}
	// The failing worker's last lines come with it, in the follow and in
	// describe.
	id := strings.SplitN(out, "\n", 2)[0]
	tail := "Last lines of worker 1 (avxrm logs " + id + " --role worker --index 1):\n  hello from worker 1\n"
	if !strings.Contains(errs, tail) {
		t.Errorf("the failing worker's output is not printed; want %q in\n%s", tail, errs)
	}
	if d := s.must(t, "jobs", "describe", id); !strings.Contains(d, tail) {
		t.Errorf("describe does not show the failing worker's output; want %q in\n%s", tail, d)
	}
	// An array whose jobs failed names its first failure, with that
	// worker's last lines, and how to run the failed jobs again.
	out, errs, code = s.run(t, "submit", "--queue", "Default", "--app", "sim:1.0", "--workers", "2", "--env", "FAIL_INDEX=1", "--array", "2", "--wait")
	arr := strings.SplitN(out, "\n", 2)[0]
	for _, want := range []string{"First failure: index 0, job job-", ": worker 1 exited with code 2\nLast lines of worker 1 (avxrm logs job-",
		"\n  hello from worker 1\n", "2 of 2 jobs failed (indexes 0, 1); run them again with: avxrm jobs resubmit --array " + arr + " --status failed\n"} {
		if code != 1 || !strings.Contains(errs, want) {
			t.Errorf("a failed array: exit %d, want 1 and %q in\n%s", code, want, errs)
		}
	}
	// Errors are one line from the problem body, exit 1.
	out, errs, code = s.run(t, "jobs", "get", "job-does-not-exist")
	if code != 1 || out != "" || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "404") {
		t.Errorf("missing job: exit %d stdout %q stderr %q", code, out, errs)
	}
	_, errs, code = s.run(t, "submit", "--queue", "Default", "--app", "sim:1.0", "--workers", "11")
	if code != 1 || !strings.Contains(errs, "--workers: queue Default allows at most 10") || strings.Count(errs, "\n") != 1 {
		t.Errorf("too many workers: exit %d stderr %q", code, errs)
	}
	// A cancelled job exits 3.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	follow, fout := s.background(t, ctx, "submit", "--queue", "Default", "--app", "sim:1.0", "--workers", "1", "--env", "SLEEP=60", "--wait")
	waitFor(t, 30*time.Second, "the job running", func() bool { return strings.Contains(fout.String(), " running ") })
	followed := strings.SplitN(fout.String(), "\n", 2)[0]
	s.must(t, "jobs", "cancel", followed)
	err := follow.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Errorf("cancelled job: %v, want exit 3\n%s", err, fout.String())
	}
}

// logs -f streams an instance's output until it ends.
func TestCLILogsFollow(t *testing.T) {
	s := startServer(t)
	seed(t, s)
	// Ticks 1.5 s apart: logs -f asks every half second plus two requests'
	// time, and with the all-in-one built with -race (as make test runs it)
	// on a busy machine, four ticks half a second apart once all came in
	// its first read.
	id := strings.TrimSpace(s.must(t, "submit", "--queue", "Default", "--app", "sim:1.0", "--workers", "1", "--env", "TICKS=4", "--env", "TICK=1.5", "--env", "SLEEP=0"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd, out := s.background(t, ctx, "logs", "-f", id, "--role", "worker", "--index", "0")
	// The first tick shows before the instance has ended.
	waitFor(t, 30*time.Second, "the first tick", func() bool { return strings.Contains(out.String(), "tick 1") })
	if strings.Contains(out.String(), "tick 4") {
		t.Error("logs -f printed the whole log at once, not as it came")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("logs -f: %v\n%s", err, out.String())
	}
	if want := "hello from worker 0\ntick 1\ntick 2\ntick 3\ntick 4\n"; out.String() != want {
		t.Errorf("logs -f printed %q, want %q", out.String(), want)
	}
	// --tail: the last lines only, with -f too once the instance has ended.
	for _, args := range [][]string{{"--tail", "2"}, {"--tail", "2", "-f"}} {
		if got := s.must(t, append([]string{"logs", id, "--role", "worker", "--index", "0"}, args...)...); got != "tick 3\ntick 4\n" {
			t.Errorf("logs %v printed %q, want the last two lines", args, got)
		}
	}
	if _, errs, code := s.run(t, "logs", id, "--tail", "-1"); code != 1 || !strings.Contains(errs, "--tail -1") {
		t.Errorf("logs --tail -1: exit %d, %q", code, errs)
	}
}

// export waits for the zip, downloads and verifies it; the test checks the
// zip against its manifest again.
func TestCLIExport(t *testing.T) {
	s := startServer(t)
	seed(t, s)
	id := strings.TrimSpace(s.must(t, "submit", "--queue", "Default", "--app", "sim:1.0", "--workers", "1", "--env", "SLEEP=0"))
	// Uploads with the CLI, as a worker would: from a file, and from stdin.
	dir := t.TempDir()
	for name, body := range map[string]string{
		"scenarios/s-001/scenario.xosc": "<OpenSCENARIO/>", "scenarios/s-007/scenario.xosc": "<OpenSCENARIO seven/>",
		"scenarios/s-009/scenario.xosc": "nine", "assets/roads/a.xodr": "road", "assets/common.txt": "common",
	} {
		f := filepath.Join(dir, filepath.Base(name))
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"artifacts", "put", id, name, f}
		if name == "assets/roads/a.xodr" {
			args = append(args, "--declaration", "road-network")
		}
		sum := sha256.Sum256([]byte(body))
		if out := s.must(t, args...); !strings.Contains(out, name) || !strings.Contains(out, hex.EncodeToString(sum[:])) {
			t.Errorf("artifacts put %s printed:\n%s", name, out)
		}
	}
	put := s.command(context.Background(), "artifacts", "put", id, "scenarios/s-010/scenario.xosc", "-", "-o", "json")
	put.Stdin = strings.NewReader("ten, from stdin")
	if out, err := put.Output(); err != nil || !strings.Contains(string(out), `"size": 15`) {
		t.Errorf("artifacts put from stdin: %v\n%s", err, out)
	}
	ls := s.must(t, "artifacts", "ls", id)
	if strings.Count(ls, "\n") != 7 || !strings.Contains(ls, "scenarios/s-007/scenario.xosc") || !regexp.MustCompile(`assets/roads/a\.xodr +road-network`).MatchString(ls) {
		t.Errorf("artifacts ls:\n%s", ls)
	}
	// Downloads: into a file named after the artifact, and to stdout.
	get := s.command(context.Background(), "artifacts", "get", id, "assets/roads/a.xodr", "--declaration", "road-network")
	get.Dir = t.TempDir()
	if out, err := get.Output(); err != nil || !strings.HasPrefix(string(out), "a.xodr: 4 bytes, sha256 ") {
		t.Errorf("artifacts get into a file: %v %q", err, out)
	} else if got, _ := os.ReadFile(filepath.Join(get.Dir, "a.xodr")); string(got) != "road" {
		t.Errorf("artifacts get wrote %q, want the upload", got)
	}
	if out := s.must(t, "artifacts", "get", id, "scenarios/s-010/scenario.xosc", "-O", "-"); out != "ten, from stdin" {
		t.Errorf("artifacts get -O -: %q", out)
	}
	if _, errs, code := s.run(t, "artifacts", "get", id, "scenarios/s-404/scenario.xosc", "-O", "-"); code != 1 || !strings.Contains(errs, "404") {
		t.Errorf("artifacts get of a file nobody uploaded: exit %d, %q; want 1 and the 404", code, errs)
	}
	zipPath := filepath.Join(t.TempDir(), "out.zip")
	out := s.must(t, "export", id, "--samples", "s-001,s-007", "--include", "scenario,asset", "--declaration", "road-network", "-O", zipPath)
	if !strings.Contains(out, "3 files verified") {
		t.Errorf("export said %q", out)
	}
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var manifest struct {
		Files []struct {
			Path, SHA256 string
			Size         int64
		}
	}
	sums := map[string]string{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(rc)
		rc.Close()
		if f.Name == "manifest.json" {
			if err := json.Unmarshal(raw, &manifest); err != nil {
				t.Fatal(err)
			}
			continue
		}
		h := sha256.Sum256(raw)
		sums[f.Name] = hex.EncodeToString(h[:])
	}
	if len(manifest.Files) != 3 || len(sums) != 3 {
		t.Fatalf("manifest %+v, zip %v", manifest, sums)
	}
	for _, e := range manifest.Files {
		if sums[e.Path] != e.SHA256 {
			t.Errorf("%s: sha256 %s, manifest %s", e.Path, sums[e.Path], e.SHA256)
		}
	}
	if _, err := os.Stat(zipPath + ".part"); !os.IsNotExist(err) {
		t.Errorf("the partial download is left behind: %v", err)
	}
}

// On a terminal the status line is redrawn in place; off a terminal each
// change is a line of its own.
func TestCLILiveStatusLineOnATerminal(t *testing.T) {
	s := startServer(t)
	seed(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := s.command(ctx, "submit", "--queue", "Default", "--app", "sim:1.0", "--workers", "3", "--env", "SLEEP=2", "--wait")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 160})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var raw bytes.Buffer
	_, _ = io.Copy(&raw, tty) // until the command exits and the pty closes (EIO)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("submit --wait on a pty: %v\n%q", err, raw.String())
	}
	out := strings.ReplaceAll(raw.String(), "\r\n", "\n") // the pty's newline translation
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want the id line and one live line, got %d lines: %q", len(lines), out)
	}
	live := lines[1]
	redraws := strings.Count(live, "\r\x1b[K")
	if redraws < 2 || !strings.HasPrefix(live, "\r\x1b[K") {
		t.Errorf("live line redrawn %d times: %q", redraws, live)
	}
	for _, st := range []string{" running", " succeeded"} {
		if !strings.Contains(live, st) {
			t.Errorf("live line never showed%s: %q", st, live)
		}
	}
	if !strings.HasSuffix(live, "[####################]") {
		t.Errorf("the last state is not the full bar: %q", live)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// `avxrm up --help` and `avxrm store --help` exit 0, and the client
// commands offer completion and examples.
func TestCLIHelpAndCompletion(t *testing.T) {
	for _, args := range [][]string{{"up", "--help"}, {"store", "--help"}, {"--help"}, {"submit", "--help"}, {"completion", "bash"}, {"config-table"}} {
		out, err := exec.Command(binary, args...).CombinedOutput()
		if err != nil {
			t.Errorf("avxrm %v: %v\n%s", args, err, out)
		}
		if (args[0] == "submit" || args[0] == "up" || args[0] == "store") && !strings.Contains(string(out), "Examples:") {
			t.Errorf("%s --help has no examples:\n%s", args[0], out)
		}
		// up's and store's flags are their own (the flag package's), not the
		// client commands', listed as every other command lists its flags.
		own := map[string]string{"up": "\n      --data-dir string ", "store": "\n      --addr string "}[args[0]]
		if own != "" && (!strings.Contains(string(out), own) || strings.Contains(string(out), "--server")) {
			t.Errorf("%s --help does not list its own flags alone, as --name:\n%s", args[0], out)
		}
	}
	for _, cmd := range []string{"up", "store"} {
		out, err := exec.Command(binary, cmd, "--bogus").CombinedOutput()
		if want := "avxrm: flag provided but not defined: -bogus ('avxrm " + cmd + " --help' lists the flags)\n"; err == nil || string(out) != want {
			t.Errorf("%s --bogus: %v %q, want %q", cmd, err, out, want)
		}
	}
	out, err := exec.Command(binary, "logs").CombinedOutput()
	if want := "avxrm: accepts 1 arg(s), received 0; usage: avxrm logs <job>"; err == nil || !strings.HasPrefix(string(out), want) {
		t.Errorf("logs without its job: %v %q, want %q…", err, out, want)
	}
	out, err = exec.Command(binary, "nonsense").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.HasPrefix(string(out), "avxrm: unknown command") {
		t.Errorf("unknown command: %v %q", err, out)
	}
}

// version prints this binary's build and the server's (its GET /version),
// which are the same here: one binary runs both. Under make test the binary
// carries the tree's `git describe` (AVXRM_BIN_VERSION), stamped by the Makefile.
func TestCLIVersion(t *testing.T) {
	s := startServer(t)
	var both struct{ Client, Server map[string]string }
	if err := json.Unmarshal([]byte(s.must(t, "version", "-o", "json")), &both); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(s.url + "/version")
	if err != nil {
		t.Fatal(err)
	}
	var served map[string]string
	err = json.NewDecoder(resp.Body).Decode(&served)
	resp.Body.Close()
	if err != nil || !maps.Equal(both.Server, served) || !maps.Equal(both.Client, served) || served["version"] == "" {
		t.Fatalf("version -o json: %+v; GET /version: %v (%v); want the same build three times", both, served, err)
	}
	if want := os.Getenv("AVXRM_BIN_VERSION"); want != "" && served["version"] != want {
		t.Errorf("the binary says version %q, the Makefile stamped %q", served["version"], want)
	}
	line := fmt.Sprintf("%s (%s, %s)", served["version"], served["go_version"], served["platform"])
	if got, want := s.must(t, "version"), "Client: avxrm "+line+"\nServer: "+line+" at "+s.url+"\n"; got != want {
		t.Errorf("version:\n%s\nwant:\n%s", got, want)
	}
	if got, want := s.must(t, "--version"), "avxrm "+line+"\n"; got != want {
		t.Errorf("--version: %q, want %q", got, want)
	}
	out, errs, code := s.run(t, "version", "--server", "http://127.0.0.1:1")
	if code != 1 || out != "Client: avxrm "+line+"\n" || !strings.Contains(errs, "cannot reach the server") {
		t.Errorf("version of an unreachable server: exit %d, %q, %q; want 1, the client's line and why", code, out, errs)
	}
}

// whoami against a server with auth off: an administrator on every queue;
// --queue narrows it, and names a queue that does not exist.
func TestCLIWhoami(t *testing.T) {
	s := startServer(t)
	seed(t, s)
	out := s.must(t, "whoami")
	if !strings.HasPrefix(out, "Auth is off at "+s.url+": every request acts as an administrator.\n") ||
		!regexp.MustCompile(`(?m)^Default +yes +yes$`).MatchString(out) {
		t.Errorf("whoami:\n%s", out)
	}
	var w struct {
		AuthenticatedBy string `json:"authenticated_by"`
		Access          string
		Queues          []struct{ Name string }
	}
	if err := json.Unmarshal([]byte(s.must(t, "whoami", "--queue", "Default", "-o", "json")), &w); err != nil ||
		w.AuthenticatedBy != "none" || w.Access != "admin" || len(w.Queues) != 1 || w.Queues[0].Name != "Default" {
		t.Errorf("whoami --queue Default -o json: %+v (%v)", w, err)
	}
	if _, errs, code := s.run(t, "whoami", "--queue", "nothing"); code != 1 || errs != "avxrm: 404 queue \"nothing\" not found\n" {
		t.Errorf("whoami --queue nothing: exit %d, %q", code, errs)
	}
}

// login stores a token from the issuer's password grant; later commands send
// it, refreshing it (and the cache) when it is about to expire; logout
// forgets it.
func TestCLILoginRefreshLogout(t *testing.T) {
	is := oidctest.NewIssuer(t, 5) // within oauth2's early-expiry margin: every use refreshes
	var mu sync.Mutex
	var auth []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/.well-known/oauth-protected-resource" { // RFC 9728, as the API serves it with auth on
			_, _ = fmt.Fprintf(w, `{"resource":"%s/api/resources/v1","authorization_servers":[%q]}`, "http://"+r.Host, is.URL)
			return
		}
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		_, _ = w.Write([]byte(`{"items":[]}`))
	}))
	defer api.Close()
	s := &server{url: api.URL, home: t.TempDir()}

	// No --issuer: the server names it.
	cmd := s.command(context.Background(), "login", "--client-id", oidctest.ClientID,
		"--username", oidctest.Username, "--password-stdin")
	cmd.Stdin = strings.NewReader(oidctest.Password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "issuer "+is.URL+" (named by the server)") {
		t.Fatalf("login: %v\n%s", err, out)
	}
	cache := filepath.Join(s.home, "avxrm", "token.json")
	if fi, err := os.Stat(cache); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token cache: %v", err)
	}
	s.must(t, "queues", "ls")
	raw, _ := os.ReadFile(cache)
	if !strings.Contains(string(raw), `"refresh_token": "rt-2"`) {
		t.Errorf("the refreshed token was not stored:\n%s", raw)
	}
	s.must(t, "logout")
	s.must(t, "queues", "ls")
	if fmt.Sprint(auth) != "[Bearer at-2 ]" {
		t.Errorf("Authorization sent: %q, want the refreshed token, then none after logout", auth)
	}
	if got := fmt.Sprint(is.Grants()); got != "[password refresh_token]" {
		t.Errorf("grants: %s", got)
	}
	cmd = s.command(context.Background(), "login", "--issuer", is.URL, "--username", "alice", "--password-stdin")
	cmd.Stdin = strings.NewReader("wrong\n")
	if out, err := cmd.CombinedOutput(); err == nil || strings.Count(string(out), "\n") != 1 {
		t.Errorf("a wrong password: %v %q", err, out)
	}
	// A server that names no issuer (auth off: 404) is told apart.
	off := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json") // as the API answers with auth off
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"title":"Not Found","status":404,"detail":"auth is off: this server takes requests without a token"}`))
	}))
	defer off.Close()
	s.url = off.URL
	if _, errs, code := s.run(t, "login", "--username", "alice", "--password-stdin"); code != 1 || !strings.Contains(errs, "names no issuer: auth is off there, no token or login is needed") {
		t.Errorf("login at a server without auth: exit %d, %q", code, errs)
	}
}

// The stored login's token goes only to servers that take its issuer's
// tokens (RFC 9728 metadata): --server or $RM_SERVER pointed elsewhere (a
// typo, a project's .envrc) must not receive it.
func TestCLIStoredTokenGoesOnlyToServersOfItsIssuer(t *testing.T) {
	is := oidctest.NewIssuer(t, 3600)
	api := func(issuer string, got *[]string) *httptest.Server {
		var mu sync.Mutex
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			if r.URL.Path == "/.well-known/oauth-protected-resource" {
				_, _ = fmt.Fprintf(w, `{"resource":"%s/api/resources/v1","authorization_servers":[%q]}`, "http://"+r.Host, issuer)
				return
			}
			mu.Lock()
			*got = append(*got, r.Header.Get("Authorization"))
			mu.Unlock()
			_, _ = w.Write([]byte(`{"items":[]}`))
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	var home, same, other []string
	s := &server{url: api(is.URL, &home).URL, home: t.TempDir()}
	cmd := s.command(context.Background(), "login", "--username", oidctest.Username, "--password-stdin")
	cmd.Stdin = strings.NewReader(oidctest.Password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("login: %v\n%s", err, out)
	}
	s.must(t, "queues", "ls")
	sameURL, otherURL := api(is.URL, &same).URL, api("https://sso.elsewhere.example/realms/x", &other).URL
	s.must(t, "queues", "ls", "--server", sameURL)
	s.must(t, "queues", "ls", "--server", otherURL)
	if fmt.Sprint(home, same) != "[Bearer at-1] [Bearer at-1]" || fmt.Sprint(other) != "[]" {
		t.Errorf("Authorization sent: %q to the login's server, %q to another of its issuer, %q to a server of another issuer; want the token, the token, none",
			home, same, other)
	}
}

// Commands started together when the stored access token has expired
// refresh it one after another: the issuer rotates refresh tokens, and a
// command that used a spent one would be told to log in again.
func TestCLIParallelCommandsShareARefresh(t *testing.T) {
	is := oidctest.NewIssuer(t, 5) // within oauth2's early-expiry margin: every use refreshes
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/.well-known/oauth-protected-resource" { // RFC 9728, as the API serves it with auth on
			_, _ = fmt.Fprintf(w, `{"resource":"%s/api/resources/v1","authorization_servers":[%q]}`, "http://"+r.Host, is.URL)
			return
		}
		_, _ = w.Write([]byte(`{"items":[]}`))
	}))
	defer api.Close()
	s := &server{url: api.URL, home: t.TempDir()}
	cmd := s.command(context.Background(), "login", "--issuer", is.URL, "--username", oidctest.Username, "--password-stdin")
	cmd.Stdin = strings.NewReader(oidctest.Password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("login: %v\n%s", err, out)
	}
	const n = 6
	var wg sync.WaitGroup
	errs := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, stderr, code := s.run(t, "queues", "ls"); code != 0 {
				errs[i] = stderr
			}
		}()
	}
	wg.Wait()
	for i, e := range errs {
		if e != "" {
			t.Errorf("command %d of %d started together: %s", i+1, n, e)
		}
	}
	if got := is.Grants(); len(got) != n+1 || slices.Contains(got[1:], "password") {
		t.Errorf("grants: %v, want the login's password grant and one refresh per command", got)
	}
	s.must(t, "queues", "ls") // the stored refresh token is the latest
}

// logout asks the issuer to revoke the stored refresh token, so that a copy
// of the token file is no use afterwards.
func TestCLILogoutRevokesTheRefreshToken(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	idp, err := devidp.Start(ctx, devidp.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	u, _ := idp.User("user")
	s := &server{url: "http://127.0.0.1:1", home: t.TempDir()}
	cmd := s.command(ctx, "login", "--issuer", idp.Issuer, "--username", u.Username, "--password-stdin")
	cmd.Stdin = strings.NewReader(u.Password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("login: %v\n%s", err, out)
	}
	var tc struct {
		Token struct {
			RefreshToken string `json:"refresh_token"`
		}
	}
	raw, _ := os.ReadFile(filepath.Join(s.home, "avxrm", "token.json"))
	if err := json.Unmarshal(raw, &tc); err != nil || tc.Token.RefreshToken == "" {
		t.Fatalf("stored token: %v %s", err, raw)
	}
	if out, errs, code := s.run(t, "logout"); code != 0 || out != "logged out\n" || errs != "" {
		t.Fatalf("logout: exit %d, %q, %q", code, out, errs)
	}
	res, err := http.PostForm(idp.TokenURL, map[string][]string{"grant_type": {"refresh_token"}, "client_id": {idp.ClientID}, "refresh_token": {tc.Token.RefreshToken}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode == http.StatusOK {
		t.Errorf("the refresh token still gives tokens after logout")
	}
	// Nobody logged in: logout says so and asks nothing.
	if out, _, code := s.run(t, "logout"); code != 0 || out != "not logged in\n" {
		t.Errorf("logout again: exit %d, %q", code, out)
	}
}

// watch redraws its table on a terminal on each job event, prints one line
// per change elsewhere, and ends quietly on Ctrl-C, with exit code 130.
func TestCLIWatch(t *testing.T) {
	s := startServer(t)
	seed(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	onTTY := s.command(ctx, "watch", "--queue", "Default")
	tty, err := pty.StartWithSize(onTTY, &pty.Winsize{Rows: 24, Cols: 160})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var screen eventstest.SyncBuffer
	go func() { _, _ = io.Copy(&screen, tty) }()
	plain, lines := s.background(t, ctx, "watch")
	waitFor(t, 30*time.Second, "the first drawing", func() bool { return strings.Contains(screen.String(), "ID ") })
	time.Sleep(500 * time.Millisecond) // both are connected to the stream

	id := strings.TrimSpace(s.must(t, "submit", "--queue", "Default", "--app", "sim:1.0", "--workers", "2", "--wait"))
	id = strings.SplitN(id, "\n", 2)[0]
	waitFor(t, 30*time.Second, "the end on both", func() bool {
		return strings.Contains(screen.String(), "succeeded") && strings.Contains(lines.String(), id+" succeeded")
	})
	for _, c := range []*exec.Cmd{onTTY, plain} {
		_ = c.Process.Signal(os.Interrupt)
		if err := c.Wait(); c.ProcessState.ExitCode() != 130 {
			t.Errorf("watch after Ctrl-C: %v, want exit code 130", err)
		}
	}
	if n := strings.Count(screen.String(), "\x1b[H\x1b[2J"); n < 3 {
		t.Errorf("the table was drawn %d times on the terminal: %q", n, screen.String())
	}
	var changes []string
	for _, l := range strings.Split(strings.TrimSpace(lines.String()), "\n") {
		if !strings.HasPrefix(l, id+" ") || strings.ContainsAny(l, "\r\x1b") {
			t.Errorf("line %q of the plain output", l)
		}
		changes = append(changes, strings.Fields(l)[1])
	}
	if len(changes) < 3 || changes[len(changes)-1] != "succeeded" {
		t.Errorf("plain watch output, one line per change: %q", lines.String())
	}
}

// A deployment's replicas: their states, restarts and how the last one
// ended, and the current replica's log, followed across a restart.
func TestCLIDeploymentReplicasAndLogs(t *testing.T) {
	s := startServer(t)
	s.must(t, "queues", "create", "Default", "--limit", "4")
	// Replica 0 runs on; replica 1 exits with code 3 after a second, and is
	// started again after the back-off (1 s, then 2 s, …).
	run := `echo "replica $RM_INSTANCE_INDEX up"; if [ "$RM_INSTANCE_INDEX" = 1 ]; then sleep 1; exit 3; fi; exec sleep 300`
	cmdJSON, _ := json.Marshal([]string{"/bin/sh", "-c", run})
	s.must(t, "apps", "create", "svc", "--set-string", "version=1", "--set", "image=local", "--set", "command="+string(cmdJSON))
	s.must(t, "deployments", "create", "viz", "--set", "application_id=svc:1", "--set", "queue_id=Default", "--set", "replicas=2")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	follow, out := s.background(t, ctx, "deployments", "logs", "viz", "--replica", "1", "-f")
	var reps []map[string]any
	waitFor(t, time.Minute, "replica 1 restarted twice", func() bool {
		reps = nil
		if err := json.Unmarshal([]byte(s.must(t, "deployments", "replicas", "viz", "-o", "json")), &reps); err != nil {
			t.Fatal(err)
		}
		return len(reps) == 2 && reps[1]["restarts"].(float64) >= 2
	})
	if reps[0]["state"] != "running" || reps[0]["restarts"] != float64(0) || reps[0]["started_at"] == nil {
		t.Errorf("replica 0: %v, want running, never restarted", reps[0])
	}
	if r := reps[1]; r["last_exit_code"] != float64(3) || r["last_message"] != "exited with code 3" || r["last_ended_at"] == nil {
		t.Errorf("replica 1: %v, want its last end: exit code 3", r)
	}
	table := s.must(t, "deployments", "replicas", "viz")
	if !regexp.MustCompile(`(?m)^1 +\w+ +[2-9] .*exited with code 3 \(`).MatchString(table) {
		t.Errorf("deployments replicas:\n%s", table)
	}
	if got := s.must(t, "deployments", "logs", "viz"); got != "replica 0 up\n" {
		t.Errorf("replica 0's log: %q", got)
	}
	if ls := s.must(t, "deployments", "ls"); !regexp.MustCompile(`(?m)^viz .* 2 +[0-2] +[2-9]\d* *$`).MatchString(ls) {
		t.Errorf("deployments ls, want 2 replicas and their restarts:\n%s", ls)
	}
	waitFor(t, 30*time.Second, "logs -f to follow replica 1 across a restart", func() bool {
		return strings.Count(out.String(), "replica 1 up\n") >= 2 && strings.Contains(out.String(), "avxrm: replica 1 restarted")
	})
	cancel()
	_ = follow.Wait()
	if _, errs, code := s.run(t, "deployments", "logs", "viz", "--replica", "2"); code != 1 || !strings.Contains(errs, "404 replica slot 2 of deployment \"viz\" (it has 2)") {
		t.Errorf("logs of a slot the deployment does not have: exit %d, %q", code, errs)
	}
}
