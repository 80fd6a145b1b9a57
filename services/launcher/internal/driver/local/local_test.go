package local_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/drivertest"
	"github.com/avxrm/rm/services/launcher/internal/driver/local"
)

// dataDir is one data directory per test: a second driver in the same
// test re-adopts the first one's instances.
var dataDir = drivertest.PerTest(func(t *testing.T) string { return t.TempDir() })

func newDriver(t *testing.T) driver.Driver {
	d, err := local.NewDriver(driver.LocalConfig{}, driver.Options{DataDir: dataDir(t)},
		local.WithGracePeriod(2*time.Second), local.WithPollInterval(50*time.Millisecond))
	if err != nil {
		t.Fatalf("NewDriver() error = %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// behave runs a shell script: print, sleep, exit.
func behave(_ *testing.T, s *driver.Spec, b drivertest.Behaviour) {
	s.Command = []string{"/bin/sh", "-c"}
	s.Args = []string{fmt.Sprintf("echo %q; sleep %.3f; exit %d", b.Print, b.RunFor.Seconds(), b.Exit)}
}

func TestConformance(t *testing.T) {
	drivertest.Run(t, newDriver, drivertest.Features{
		Behave: behave, Logs: true, RealProcesses: true, ExitCodes: true, Reattach: true,
		Timeout: 20 * time.Second,
	})
}

func TestFactoryNeedsADirectory(t *testing.T) {
	if _, err := local.New(nil, driver.Options{}); err == nil {
		t.Error("New() without work_dir nor data dir succeeded")
	}
	if _, err := local.New([]byte(`{"work_dir": "relative"}`), driver.Options{}); err == nil {
		t.Error("New() with a relative work_dir succeeded")
	}
	dir := t.TempDir()
	d, err := local.New([]byte(fmt.Sprintf(`{"work_dir": %q}`, dir)), driver.Options{})
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	d.Close()
}

func waitFinal(t *testing.T, ch <-chan driver.Status, ref driver.Ref) driver.Status {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case st := <-ch:
			if st.Ref == ref && st.State.Final() {
				return st
			}
		case <-timeout:
			t.Fatalf("no final status for %s", ref)
		}
	}
}

// TestEnvironmentAndWorkingDir checks the instance sees only its env plus
// PATH and HOME, and runs where the policy says.
func TestEnvironmentAndWorkingDir(t *testing.T) {
	ctx := context.Background()
	d := newDriver(t)
	ch, _ := d.Watch(ctx)
	job := drivertest.JobID(t)
	own := t.TempDir()
	t.Setenv("RM_LEAK_CHECK", "must-not-leak")
	cases := map[string]struct {
		workingDir string
		wantDir    func(instDir string) string
	}{
		"absolute existing dir": {own, func(string) string { return own }},
		"missing dir":           {"/does/not/exist", func(i string) string { return filepath.Join(i, "work") }},
		"relative dir":          {"rel", func(i string) string { return filepath.Join(i, "work") }},
	}
	i := 0
	for name, tc := range cases {
		ref := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: i}
		i++
		err := d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), WorkingDir: tc.workingDir,
			Command: []string{"/bin/sh", "-c", "pwd; env | sort"}, Env: map[string]string{"SEED": "42"}})
		if err != nil {
			t.Fatalf("%s: Start() error = %v", name, err)
		}
		waitFinal(t, ch, ref)
		out := readLogs(t, d, ref)
		instDir := filepath.Join(dataDir(t), "local", job, "worker-"+strconv.Itoa(ref.Index))
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if lines[0] != tc.wantDir(instDir) {
			t.Errorf("%s: working dir = %q, want %q", name, lines[0], tc.wantDir(instDir))
		}
		for _, l := range lines[1:] {
			k, _, _ := strings.Cut(l, "=")
			switch k {
			case "SEED", "PATH", "HOME", "PWD", "SHLVL", "_", "OLDPWD", local.InstanceVar:
			default:
				t.Errorf("%s: unexpected variable %q in the instance environment", name, l)
			}
		}
		if !strings.Contains(out, "SEED=42") {
			t.Errorf("%s: SEED missing from %q", name, out)
		}
	}
}

func readLogs(t *testing.T, d driver.Driver, ref driver.Ref) string {
	t.Helper()
	rc, err := d.Logs(context.Background(), ref)
	if err != nil {
		t.Fatalf("Logs() error = %v", err)
	}
	defer rc.Close()
	b := new(strings.Builder)
	if _, err := fmt.Fprint(b, mustRead(t, rc)); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func mustRead(t *testing.T, f interface{ Read([]byte) (int, error) }) string {
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := f.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			return sb.String()
		}
	}
}

// TestStopKillsWholeGroup checks that Stop reaches grandchildren and
// escalates to SIGKILL when SIGTERM is ignored, and that Cleanup keeps only
// the log.
func TestStopKillsWholeGroup(t *testing.T) {
	ctx := context.Background()
	d := quickStopDriver(t)
	ch, _ := d.Watch(ctx)
	ref := driver.Ref{JobID: drivertest.JobID(t), Role: driver.RoleController}
	// The command ignores SIGTERM and leaves a grandchild that does too.
	script := `trap '' TERM; (trap '' TERM; sleep 600) & echo $! > grandchild; echo started; wait`
	if err := d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Command: []string{"/bin/sh", "-c", script}}); err != nil {
		t.Fatal(err)
	}
	instDir := filepath.Join(d.Root(), ref.JobID, "controller-0")
	grandchild := waitPID(t, filepath.Join(instDir, "work", "grandchild"))
	began := time.Now()
	if err := d.Stop(ctx, ref); err != nil {
		t.Fatalf("Stop() error = %v", err)
	}
	if took := time.Since(began); took < 300*time.Millisecond {
		t.Errorf("Stop() returned after %s, before the grace period", took)
	}
	st := waitFinal(t, ch, ref)
	if st.State != driver.Failed || st.Message != "stopped" {
		t.Errorf("status after Stop = %+v, want Failed, stopped", st)
	}
	// SIGKILL is delivered asynchronously; give the kernel a moment.
	for i := 0; i < 100 && processExists(grandchild); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if processExists(grandchild) {
		t.Errorf("grandchild %d still alive after Stop", grandchild)
	}
	if err := d.Cleanup(ctx, ref.JobID); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(instDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "output.log" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("instance dir after Cleanup has %v, want only output.log", names)
	}
	if out := readLogs(t, d, ref); !strings.Contains(out, "started") {
		t.Errorf("logs after Cleanup = %q, want the output kept", out)
	}
}

// TestStrayProcessesAreKilled: a process the command started in a session
// of its own (setsid, a daemon) is outside the instance's process group; it
// is killed all the same when the instance is stopped and when it ends by
// itself, by the driver with cgroups and by the one that finds strays by
// their environment. Before, it outlived the job, cancelled or not.
func TestStrayProcessesAreKilled(t *testing.T) {
	for _, cgroups := range []bool{true, false} {
		t.Run(fmt.Sprintf("cgroups=%v", cgroups), func(t *testing.T) {
			d := quickStopDriver(t, local.WithCgroups(cgroups))
			checkStraysKilled(t, d, `setsid sleep 600 & echo $! > stray`)
		})
	}
}

// checkStraysKilled starts two instances on d whose script starts a stray
// that writes its pid to the file stray, and checks that it is killed once
// Stop returns for one and once the other ends by itself.
func checkStraysKilled(t *testing.T, d *local.Driver, stray string) {
	t.Helper()
	ctx := context.Background()
	ch, _ := d.Watch(ctx)
	job := drivertest.JobID(t)
	t.Cleanup(func() { d.Cleanup(context.Background(), job) })
	for name, tc := range map[string]struct {
		script string
		stop   bool
	}{
		"stopped":         {script: stray + `; wait`, stop: true},
		"ended by itself": {script: stray + `; sleep 0.3`},
	} {
		ref := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: len(name)}
		if err := d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Command: []string{"/bin/sh", "-c", tc.script}}); err != nil {
			t.Fatal(err)
		}
		stray := waitPID(t, filepath.Join(d.Root(), job, "worker-"+strconv.Itoa(ref.Index), "work", "stray"))
		t.Cleanup(func() { syscall.Kill(stray, syscall.SIGKILL) })
		if !processExists(stray) {
			t.Fatalf("%s: stray process %d gone before the instance ended; the test shows nothing", name, stray)
		}
		if tc.stop {
			if err := d.Stop(ctx, ref); err != nil {
				t.Fatalf("%s: Stop() error = %v", name, err)
			}
		}
		waitFinal(t, ch, ref)
		if tc.stop && processExists(stray) {
			t.Errorf("%s: stray process %d still alive once Stop returned", name, stray)
		}
		// Killed with its cgroup at once, or in strayLoop's next pass, at
		// most a second away (strayGap).
		for i := 0; i < 1000 && processExists(stray); i++ {
			time.Sleep(10 * time.Millisecond)
		}
		if processExists(stray) {
			t.Errorf("%s: stray process %d still alive after the instance ended", name, stray)
		}
	}
}

// TestStrayGap: passes over /proc take at most a fiftieth of a CPU, and a
// stray outlives its instance by at most a second.
func TestStrayGap(t *testing.T) {
	for took, want := range map[time.Duration]time.Duration{
		0:                      0,
		2 * time.Millisecond:   100 * time.Millisecond,
		20 * time.Millisecond:  time.Second,
		300 * time.Millisecond: time.Second,
	} {
		if got := local.StrayGap(took); got != want {
			t.Errorf("StrayGap(%v) = %v, want %v", took, got, want)
		}
	}
}

// TestStopIsNotHeldByTheStrayGap: a Stop waits for its instance's strays to
// be killed, but not for the gap strayLoop leaves after a pass, here an
// hour long: before, a cancellation would have waited for it. (Strays found
// by their environment: with cgroups there are no passes.)
func TestStopIsNotHeldByTheStrayGap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := local.NewDriver(driver.LocalConfig{}, driver.Options{DataDir: t.TempDir()},
		local.WithGracePeriod(300*time.Millisecond), local.WithStrayGap(time.Hour), local.WithCgroups(false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ch, _ := d.Watch(ctx)
	job := drivertest.JobID(t)
	t.Cleanup(func() { d.Cleanup(context.Background(), job) })
	first := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: 0}
	if err := d.Start(ctx, driver.Spec{Ref: first, Name: first.Name(), Command: []string{"true"}}); err != nil {
		t.Fatal(err)
	}
	waitFinal(t, ch, first)
	for local.StrayPasses(d) == 0 { // the pass for its end; the gap begins
		time.Sleep(10 * time.Millisecond)
	}
	ref := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: 1}
	if err := d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Command: []string{"/bin/sh", "-c", `setsid sleep 600 & echo $! > stray; wait`}}); err != nil {
		t.Fatal(err)
	}
	stray := waitPID(t, filepath.Join(d.Root(), job, "worker-1", "work", "stray"))
	t.Cleanup(func() { syscall.Kill(stray, syscall.SIGKILL) })
	if err := d.Stop(ctx, ref); err != nil {
		t.Fatalf("Stop() = %v: it waited for the gap", err)
	}
	if processExists(stray) {
		stat, _ := os.ReadFile("/proc/" + strconv.Itoa(stray) + "/stat")
		t.Errorf("stray process %d still alive once Stop returned: %s", stray, stat)
	}
}

// TestCloseKillsStraysWaitingForAPass: the strays of an instance that
// ended during strayLoop's gap are killed when the driver closes. (Strays
// found by their environment: with cgroups there is no gap.)
func TestCloseKillsStraysWaitingForAPass(t *testing.T) {
	ctx := context.Background()
	d, err := local.NewDriver(driver.LocalConfig{}, driver.Options{DataDir: t.TempDir()}, local.WithStrayGap(time.Hour), local.WithCgroups(false))
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := d.Watch(ctx)
	job := drivertest.JobID(t)
	first := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: 0}
	if err := d.Start(ctx, driver.Spec{Ref: first, Name: first.Name(), Command: []string{"true"}}); err != nil {
		t.Fatal(err)
	}
	waitFinal(t, ch, first)
	for local.StrayPasses(d) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	ref := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: 1}
	if err := d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Command: []string{"/bin/sh", "-c", `setsid sleep 600 & echo $! > stray; sleep 0.2`}}); err != nil {
		t.Fatal(err)
	}
	stray := waitPID(t, filepath.Join(d.Root(), job, "worker-1", "work", "stray"))
	t.Cleanup(func() { syscall.Kill(stray, syscall.SIGKILL) })
	waitFinal(t, ch, ref)
	// The end is published before its strays are handed to the loop: wait
	// for them to wait for its next pass.
	for deadline := time.Now().Add(10 * time.Second); local.StraysQueued(d) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the instance's strays never waited for a pass")
		}
	}
	if !processExists(stray) {
		t.Fatalf("stray process %d killed during the gap; the test shows nothing", stray)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if processExists(stray) {
		t.Errorf("stray process %d still alive once Close returned", stray)
	}
}

// quickStopDriver is a driver whose Stop sends SIGKILL 300 ms after SIGTERM.
func quickStopDriver(t *testing.T, options ...local.Option) *local.Driver {
	d, err := local.NewDriver(driver.LocalConfig{}, driver.Options{DataDir: t.TempDir()},
		append([]local.Option{local.WithGracePeriod(300 * time.Millisecond)}, options...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// waitPID waits for an instance's command to write a pid to path.
func waitPID(t *testing.T, path string) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(path)
		if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid > 0 {
			return pid
		}
	}
	t.Fatalf("no pid in %s", path)
	return 0
}

// processExists reports whether pid is a live process: not a zombie
// (those of our own children are reaped by the driver), and not on its way
// out (PF_EXITING: killed, it runs no more of its own code; on a busy
// machine a killed process may take milliseconds to become a zombie).
func processExists(pid int) bool {
	state, flags, ok := local.ProcStat(pid)
	const pfExiting = 0x4
	return ok && state != 'Z' && state != 'X' && flags&pfExiting == 0
}

// TestReadoptAfterLauncherCrash simulates a launcher that died: the
// instance directory and the still-running process exist, but no driver
// ever saw them in this process. Its exit code is read from the exit file.
func TestReadoptAfterLauncherCrash(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d1, err := local.NewDriver(driver.LocalConfig{}, driver.Options{DataDir: dir}, local.WithPollInterval(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	job := drivertest.JobID(t)
	long := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: 0}
	done := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: 1}
	ch1, _ := d1.Watch(ctx)
	for _, r := range []driver.Ref{long, done} {
		script := "exit 7"
		if r == long {
			script = "sleep 1; exit 5"
		}
		if err := d1.Start(ctx, driver.Spec{Ref: r, Name: r.Name(), Command: []string{"/bin/sh", "-c", script}}); err != nil {
			t.Fatal(err)
		}
	}
	waitFinal(t, ch1, done)
	d1.Close()

	d2, err := local.NewDriver(driver.LocalConfig{}, driver.Options{DataDir: dir}, local.WithPollInterval(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	defer d2.Cleanup(ctx, job)
	ch2, _ := d2.Watch(ctx)
	sts, _ := d2.List(ctx)
	got := map[driver.Ref]driver.Status{}
	for _, st := range sts {
		got[st.Ref] = st
	}
	if st := got[done]; st.State != driver.Failed || st.ExitCode == nil || *st.ExitCode != 7 || st.Reason != driver.ReasonExited {
		t.Errorf("re-adopted ended instance = %+v, want Failed 7 on its own", st)
	}
	if st := got[long]; st.State != driver.Running {
		t.Errorf("re-adopted running instance = %+v, want Running", st)
	}
	if st := waitFinal(t, ch2, long); st.State != driver.Failed || st.ExitCode == nil || *st.ExitCode != 5 || st.Reason != driver.ReasonExited {
		t.Errorf("re-adopted instance ended %+v, want Failed 5 on its own", st)
	}
}

// TestReadoptKilledWrapper: a wrapper killed with SIGKILL leaves no exit
// file; the new driver reports Failed without a code.
func TestReadoptKilledWrapper(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d1, err := local.NewDriver(driver.LocalConfig{}, driver.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ref := driver.Ref{JobID: drivertest.JobID(t), Role: driver.RoleWorker}
	ch1, _ := d1.Watch(ctx)
	if err := d1.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Command: []string{"sleep", "600"}}); err != nil {
		t.Fatal(err)
	}
	d1.Close()
	instDir := filepath.Join(dir, "local", ref.JobID, "worker-0")
	pid := recordedPID(instDir)
	for i := 0; pid <= 0 && i < 200; i++ {
		time.Sleep(20 * time.Millisecond)
		pid = recordedPID(instDir)
	}
	if pid <= 0 {
		t.Fatal("the wrapper recorded no pid")
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = ch1
	deadline := time.Now().Add(10 * time.Second)
	for processExists(pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	d2, err := local.NewDriver(driver.LocalConfig{}, driver.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	sts, _ := d2.List(ctx)
	if len(sts) != 1 || sts[0].State != driver.Failed || sts[0].ExitCode != nil {
		t.Errorf("List() = %+v, want one Failed instance without exit code", sts)
	}
	if err := d2.Cleanup(ctx, ref.JobID); err != nil {
		t.Fatal(err)
	}
}

// recordedPID is the pid the wrapper wrote into the instance's record; 0
// when there is none yet.
func recordedPID(instDir string) int {
	b, _ := os.ReadFile(filepath.Join(instDir, "record"))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "pid "); ok {
			pid, _ := strconv.Atoi(v)
			return pid
		}
	}
	return 0
}

// TestStartAgainAfterCleanup checks that a ref started again after a
// Cleanup, whose directory still holds the first run's log, reports its own
// end and start, not what files the first run left say.
// A NUL byte cannot reach a process: the start is refused as an invalid
// spec at once (the launcher then fails the job), not retried until the
// start timeout as exec's error would be.
func TestStartRefusesNUL(t *testing.T) {
	ctx := context.Background()
	d := newDriver(t)
	ref := driver.Ref{JobID: drivertest.JobID(t), Role: driver.RoleWorker}
	for name, spec := range map[string]driver.Spec{
		"argument": {Ref: ref, Name: ref.Name(), Command: []string{"/bin/sh", "-c", "a\x00b"}},
		"env":      {Ref: ref, Name: ref.Name(), Command: []string{"/bin/true"}, Env: map[string]string{"SEED": "4\x002"}},
	} {
		err := d.Start(ctx, spec)
		if !errors.Is(err, driver.ErrInvalidSpec) || !strings.Contains(err.Error(), "NUL") {
			t.Errorf("%s: Start() error = %v, want ErrInvalidSpec saying NUL", name, err)
		}
	}
}

func TestStartAgainAfterCleanup(t *testing.T) {
	ctx := context.Background()
	d := newDriver(t)
	ch, _ := d.Watch(ctx)
	ref := driver.Ref{JobID: drivertest.JobID(t), Role: driver.RoleWorker}
	run := func(script string) driver.Status {
		t.Helper()
		if err := d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Command: []string{"/bin/sh", "-c", script}}); err != nil {
			t.Fatalf("Start() error = %v", err)
		}
		return waitFinal(t, ch, ref)
	}
	first := run("exit 3")
	if first.ExitCode == nil || *first.ExitCode != 3 {
		t.Fatalf("first run's exit code = %v, want 3", fmtCode(first.ExitCode))
	}
	if err := d.Cleanup(ctx, ref.JobID); err != nil {
		t.Fatalf("Cleanup() error = %v", err)
	}
	instDir := filepath.Join(dataDir(t), "local", ref.JobID, "worker-0")
	if _, err := os.Stat(filepath.Join(instDir, "output.log")); err != nil {
		t.Fatalf("the first run's log is gone after Cleanup: %v", err)
	}
	// What a launcher killed during the first run could have left behind,
	// in this layout and in the earlier one.
	record := fmt.Sprintf("spec {\"job_id\": %q, \"role\": \"worker\"}\npid 1\nstate {\"pid\": 1}\nexit 3\n", ref.JobID)
	for f, content := range map[string]string{"record": record, "exit": "3\n", "pid": "1\n", "state.json": `{"pid": 1}`, "spec.json": `{"role": "worker"}`} {
		if err := os.WriteFile(filepath.Join(instDir, f), []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	// The second run's wrapper is killed before it can write an exit file:
	// the first run's must not stand in for it.
	second := run("sleep 0.2; kill -KILL $PPID; sleep 5")
	if second.State != driver.Failed || second.ExitCode == nil || *second.ExitCode != 128+9 {
		t.Fatalf("second run = %s (exit code %s), want failed with 137 (SIGKILL)", second.State, fmtCode(second.ExitCode))
	}
	if !second.StartedAt.After(first.FinishedAt) {
		t.Errorf("second run started at %v, not after the first one's end %v", second.StartedAt, first.FinishedAt)
	}
}

func fmtCode(c *int) string {
	if c == nil {
		return "none"
	}
	return strconv.Itoa(*c)
}

// TestStartWaitsForALaunchSlot: a Start waits while every launch slot is
// taken; one whose context ends meanwhile fails, leaves nothing behind,
// and can be made again.
func TestStartWaitsForALaunchSlot(t *testing.T) {
	d, err := local.NewDriver(driver.LocalConfig{}, driver.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ch, err := d.Watch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	spec := func(i int) driver.Spec {
		return driver.Spec{Ref: driver.Ref{JobID: "job-slots", Role: driver.RoleWorker, Index: i},
			Command: []string{"/bin/sh", "-c", "exit 0"}}
	}
	release := local.HoldLaunchSlots(d)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := d.Start(ctx, spec(0)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Start() with every slot taken until its context ended = %v; want context.DeadlineExceeded", err)
	}
	sts, _ := d.List(context.Background())
	if len(sts) != 0 {
		t.Fatalf("after a Start that never got a slot, List() = %v; want nothing", sts)
	}
	if _, err := os.Stat(filepath.Join(d.Root(), "job-slots")); !os.IsNotExist(err) {
		t.Fatalf("after a Start that never got a slot, its job directory: %v; want none", err)
	}

	started := make(chan error, 1)
	go func() { started <- d.Start(context.Background(), spec(1)) }()
	select {
	case err := <-started:
		t.Fatalf("Start() returned (%v) while every launch slot was taken", err)
	case <-time.After(100 * time.Millisecond):
	}
	release()
	if err := <-started; err != nil {
		t.Fatalf("Start() once a slot was free: %v", err)
	}
	if err := d.Start(context.Background(), spec(0)); err != nil {
		t.Fatalf("Start() again of the instance whose start was abandoned: %v", err)
	}
	final := map[driver.Ref]driver.Status{}
	timeout := time.After(20 * time.Second)
	for len(final) < 2 {
		select {
		case st := <-ch:
			if st.State.Final() {
				final[st.Ref] = st
			}
		case <-timeout:
			t.Fatalf("final statuses after 20 s: %v; want both instances'", final)
		}
	}
	for _, st := range final {
		if st.State != driver.Succeeded {
			t.Errorf("%s: %s (%s); want succeeded", st.Ref, st.State, st.Message)
		}
	}
}

// earlierWrapper is the wrapper of the layout before the record, which
// wrote the pid and exit files; instances it runs survive a launcher's
// replacement.
const earlierWrapper = `d=$1; shift
echo $$ > "$d/pid"
trap ':' TERM INT HUP
"$@"
rc=$?
echo "$rc" > "$d/exit"
exit "$rc"`

// earlierDirs makes worker instance directories under dir as an earlier
// driver left them, for the tests of re-adoption after an upgrade.
type earlierDirs struct {
	t   *testing.T
	dir string
}

func (e earlierDirs) instDir(r driver.Ref) string {
	return filepath.Join(e.dir, "local", r.JobID, "worker-"+strconv.Itoa(r.Index))
}

// make makes the instances' directories with their work directories.
func (e earlierDirs) make(refs ...driver.Ref) {
	e.t.Helper()
	for _, r := range refs {
		if err := os.MkdirAll(filepath.Join(e.instDir(r), "work"), 0o750); err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e earlierDirs) write(path, content string) {
	e.t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
		e.t.Fatal(err)
	}
}

// spec is the spec an earlier driver wrote of r: no signals field.
func (e earlierDirs) spec(r driver.Ref) string {
	return fmt.Sprintf(`{"job_id": %q, "role": "worker", "index": %d, "created_at": %q}`, r.JobID, r.Index, time.Now().Format(time.RFC3339Nano))
}

// TestReadoptEarlierLayout: instance directories made by a driver before
// the record (spec.json, state.json, and the wrapper's pid and exit files)
// are re-adopted, an ended instance with its code and a running one
// followed to its end; Cleanup then removes their files.
func TestReadoptEarlierLayout(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	job := drivertest.JobID(t)
	ended := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: 0}
	running := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: 1}
	e := earlierDirs{t: t, dir: dir}
	instDir, write, spec := e.instDir, e.write, e.spec
	e.make(ended, running)
	for _, r := range []driver.Ref{ended, running} {
		write(filepath.Join(instDir(r), "spec.json"), spec(r))
	}
	// The ended one: a process that is gone, its code in the exit file.
	gone := exec.Command("/bin/true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(instDir(ended), "state.json"), fmt.Sprintf(`{"pid": %d, "pgid": %d}`, gone.Process.Pid, gone.Process.Pid))
	write(filepath.Join(instDir(ended), "exit"), "7\n")
	// The running one, under the earlier wrapper.
	cmd := exec.Command("/bin/sh", "-c", earlierWrapper, "sh", instDir(running), "/bin/sh", "-c", "sleep 0.5; exit 4")
	cmd.Dir = filepath.Join(instDir(running), "work")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait() // as init would, once the launcher that started it is gone
	write(filepath.Join(instDir(running), "state.json"), fmt.Sprintf(`{"pid": %d, "pgid": %d, "started_at": %q}`,
		cmd.Process.Pid, cmd.Process.Pid, time.Now().Format(time.RFC3339Nano)))

	d, err := local.NewDriver(driver.LocalConfig{}, driver.Options{DataDir: dir}, local.WithPollInterval(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ch, _ := d.Watch(ctx)
	sts, _ := d.List(ctx)
	got := map[driver.Ref]driver.Status{}
	for _, st := range sts {
		got[st.Ref] = st
	}
	if st := got[ended]; st.State != driver.Failed || fmtCode(st.ExitCode) != "7" {
		t.Errorf("re-adopted ended instance = %s, exit code %s; want failed, 7", st.State, fmtCode(st.ExitCode))
	}
	if st := got[running]; st.State != driver.Running {
		t.Errorf("re-adopted running instance = %s (%s); want running", st.State, st.Message)
	}
	if st := waitFinal(t, ch, running); st.State != driver.Failed || fmtCode(st.ExitCode) != "4" {
		t.Errorf("re-adopted instance ended %s, exit code %s; want failed, 4", st.State, fmtCode(st.ExitCode))
	}
	if err := d.Cleanup(ctx, job); err != nil {
		t.Fatal(err)
	}
	// Neither instance wrote a log, so nothing of them is kept.
	if left, _ := filepath.Glob(filepath.Join(dir, "local", job, "*")); len(left) != 0 {
		t.Errorf("after Cleanup the job's directory holds %v; want nothing", left)
	}
}

// earlierRecordWrapper is the wrapper of the record layout before signal
// lines (avxrm of 2026-12-04): a stop's SIGTERM left no trace in the record.
const earlierRecordWrapper = `d=$1; shift
echo "pid $$" >> "$d/record"
trap ':' TERM INT HUP
"$@"
rc=$?
echo "exit $rc" >> "$d/record"
exit "$rc"`

// TestStopOfAnEarlierDriversInstance: an instance an earlier driver
// started (either layout, its wrapper writing no signal line), re-adopted
// after an upgrade and ended by Stop's SIGTERM, is stopped, not failed on
// its own (driver.ReasonExited); so is one that ended with 143 while no
// driver ran, since the earlier wrapper cannot tell. Before, a cancelled
// job's re-adopted instances were recorded failed with 143.
func TestStopOfAnEarlierDriversInstance(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	job := drivertest.JobID(t)
	legacy := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: 0}
	record := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: 1}
	ended := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: 2}
	e := earlierDirs{t: t, dir: dir}
	instDir, write, spec := e.instDir, e.write, e.spec
	start := func(r driver.Ref, wrapper string) *exec.Cmd {
		t.Helper()
		cmd := exec.Command("/bin/sh", "-c", wrapper, "sh", instDir(r), "/bin/sh", "-c", "echo started; sleep 60")
		cmd.Dir = filepath.Join(instDir(r), "work")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		log, err := os.Create(filepath.Join(instDir(r), "output.log"))
		if err != nil {
			t.Fatal(err)
		}
		defer log.Close()
		cmd.Stdout = log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go cmd.Wait() // as init would, once the launcher that started it is gone
		t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
		return cmd
	}
	e.make(legacy, record, ended)
	write(filepath.Join(instDir(legacy), "spec.json"), spec(legacy))
	cmd := start(legacy, earlierWrapper)
	write(filepath.Join(instDir(legacy), "state.json"), fmt.Sprintf(`{"pid": %d, "pgid": %d, "started_at": %q}`,
		cmd.Process.Pid, cmd.Process.Pid, time.Now().Format(time.RFC3339Nano)))
	write(filepath.Join(instDir(record), "record"), "spec "+spec(record)+"\n")
	start(record, earlierRecordWrapper)
	gone := exec.Command("/bin/true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(instDir(ended), "record"), fmt.Sprintf("spec %s\npid %d\nexit 143\n", spec(ended), gone.Process.Pid))
	for _, r := range []driver.Ref{legacy, record} {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if b, _ := os.ReadFile(filepath.Join(instDir(r), "output.log")); strings.Contains(string(b), "started") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never started", r)
			}
		}
	}

	d, err := local.NewDriver(driver.LocalConfig{}, driver.Options{DataDir: dir},
		local.WithGracePeriod(300*time.Millisecond), local.WithPollInterval(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ch, _ := d.Watch(ctx)
	sts, _ := d.List(ctx)
	i := slices.IndexFunc(sts, func(st driver.Status) bool { return st.Ref == ended })
	if i < 0 {
		t.Fatalf("the instance that ended with 143 is not re-adopted: %v", sts)
	}
	if st := sts[i]; st.State != driver.Failed || fmtCode(st.ExitCode) != "143" || st.Reason != "" {
		t.Errorf("re-adopted instance that ended with 143: %s %s, reason %q; want Failed 143, no reason", st.State, fmtCode(st.ExitCode), st.Reason)
	}
	for _, r := range []driver.Ref{legacy, record} {
		if err := d.Stop(ctx, r); err != nil {
			t.Fatal(err)
		}
		st := waitFinal(t, ch, r)
		if st.State != driver.Failed || fmtCode(st.ExitCode) != "143" || st.Reason != "" || st.Message != "stopped" {
			t.Errorf("re-adopted %s ended by Stop: %s %s, reason %q, message %q; want Failed 143, stopped, no reason", r, st.State, fmtCode(st.ExitCode), st.Reason, st.Message)
		}
	}
}

// TestStartTakesASpareDir: the driver makes instance directories ahead of
// need; a Start renames one into place (the instance directory is the
// spare's inode), the pool is made full again once starts are quiet, a
// Start whose directory exists makes no use of one, and a new driver takes
// up the spares an earlier one left.
func TestStartTakesASpareDir(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := local.NewDriver(driver.LocalConfig{}, driver.Options{DataDir: dir}, local.WithSpareDirs(3))
	if err != nil {
		t.Fatal(err)
	}
	spareDir := filepath.Join(d.Root(), ".spare")
	spares := func() map[uint64]string {
		t.Helper()
		out := map[uint64]string{}
		entries, _ := os.ReadDir(spareDir)
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".tmp") {
				continue
			}
			var st syscall.Stat_t
			if err := syscall.Stat(filepath.Join(spareDir, e.Name()), &st); err == nil {
				out[st.Ino] = e.Name()
			}
		}
		return out
	}
	waitSpares := func(n int) map[uint64]string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			s := spares()
			if len(s) == n || time.Now().After(deadline) {
				if len(s) != n {
					t.Fatalf("spare directories: %v; want %d", s, n)
				}
				return s
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	before := waitSpares(3)

	ch, _ := d.Watch(ctx)
	ref := driver.Ref{JobID: drivertest.JobID(t), Role: driver.RoleWorker}
	if err := d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Command: []string{"/bin/sh", "-c", "echo hi"}}); err != nil {
		t.Fatal(err)
	}
	if st := waitFinal(t, ch, ref); st.State != driver.Succeeded {
		t.Fatalf("instance = %s (%s); want succeeded", st.State, st.Message)
	}
	instDir := filepath.Join(d.Root(), ref.JobID, "worker-0")
	var st syscall.Stat_t
	if err := syscall.Stat(instDir, &st); err != nil {
		t.Fatal(err)
	}
	if _, ok := before[st.Ino]; !ok {
		t.Errorf("instance directory inode %d is none of the spares %v", st.Ino, before)
	}
	if out := readLogs(t, d, ref); out != "hi\n" {
		t.Errorf("log = %q; want %q", out, "hi\n")
	}
	waitSpares(3) // made again

	// Started again after its Cleanup: its directory, with the log, stays.
	if err := d.Cleanup(ctx, ref.JobID); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Command: []string{"/bin/sh", "-c", "echo again"}}); err != nil {
		t.Fatal(err)
	}
	if st := waitFinal(t, ch, ref); st.State != driver.Succeeded {
		t.Fatalf("instance started again = %s (%s); want succeeded", st.State, st.Message)
	}
	var again syscall.Stat_t
	if err := syscall.Stat(instDir, &again); err != nil {
		t.Fatal(err)
	}
	if again.Ino != st.Ino {
		t.Errorf("instance directory replaced (inode %d, was %d); want the one holding the first run's log", again.Ino, st.Ino)
	}
	if out := readLogs(t, d, ref); out != "hi\nagain\n" {
		t.Errorf("log = %q; want both runs' output", out)
	}
	left := waitSpares(3)
	d.Close()

	d2, err := local.NewDriver(driver.LocalConfig{}, driver.Options{DataDir: dir}, local.WithSpareDirs(2))
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	kept := spares()
	if len(kept) != 2 {
		t.Fatalf("spares after a driver holding 2 started: %v; want 2 of %v", kept, left)
	}
	for ino := range kept {
		if _, ok := left[ino]; !ok {
			t.Errorf("spare %d was made anew; want the earlier driver's taken up", ino)
		}
	}
	if sts, _ := d2.List(ctx); len(sts) != 1 || sts[0].Ref != ref {
		t.Errorf("the new driver's instances: %v; want only %s (no spare taken for one)", sts, ref)
	}
}

// TestCommandThatCannotRun: an instance whose command the shell cannot find
// (127) or cannot execute (126) says so and names it, in its status and in
// the status a new driver re-adopts it with; before, only "exited with code
// 127" and the log said "sh: 1: nosuchcmd: not found". A command that
// exits with those codes itself says nothing more.
func TestCommandThatCannotRun(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d1, err := local.NewDriver(driver.LocalConfig{}, driver.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	files := t.TempDir()
	notExec := filepath.Join(files, "data.sh")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\nexit 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(files, "tool"), []byte("#!/bin/sh\nexit 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	type want struct {
		code int
		msg  string
	}
	cases := map[string]struct {
		argv []string
		env  map[string]string
		want want
	}{
		"name not in PATH": {argv: []string{"nosuchcmd-rm-test", "x"},
			want: want{127, `command "nosuchcmd-rm-test" not found: no executable file of that name in PATH`}},
		"name of a file in PATH that is not executable": {argv: []string{"tool"}, env: map[string]string{"PATH": files},
			want: want{127, `command "tool" not found: no executable file of that name in PATH`}},
		"missing relative path": {argv: []string{"./missing.sh"}, want: want{127, `command "./missing.sh" not found`}},
		"missing absolute path": {argv: []string{"/nonexistent/run"}, want: want{127, `command "/nonexistent/run" not found`}},
		"file not executable":   {argv: []string{notExec}, want: want{126, `command "` + notExec + `" is not an executable file`}},
		"directory":             {argv: []string{files}, want: want{126, `command "` + files + `" is not an executable file`}},
		"exits 127 itself":      {argv: []string{"/bin/sh", "-c", "exit 127"}, want: want{127, ""}},
		"exits 126 itself":      {argv: []string{"/bin/sh", "-c", "exit 126"}, want: want{126, ""}},
	}
	job := drivertest.JobID(t)
	ch, _ := d1.Watch(ctx)
	refs := map[driver.Ref]string{}
	for name, tc := range cases {
		ref := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: len(refs)}
		refs[ref] = name
		if err := d1.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Command: tc.argv, Env: tc.env}); err != nil {
			t.Fatalf("%s: Start() error = %v", name, err)
		}
	}
	check := func(how string, st driver.Status) {
		t.Helper()
		name := refs[st.Ref]
		w := cases[name].want
		if st.State != driver.Failed || st.ExitCode == nil || *st.ExitCode != w.code || st.Message != w.msg {
			t.Errorf("%s: %s: %s, exit code %s, message %q; want failed, %d, %q", how, name, st.State, fmtCode(st.ExitCode), st.Message, w.code, w.msg)
		}
	}
	timeout := time.After(20 * time.Second)
	for ended := map[driver.Ref]bool{}; len(ended) < len(refs); {
		select {
		case st := <-ch:
			if st.State.Final() && !ended[st.Ref] {
				ended[st.Ref] = true
				check("ended", st)
			}
		case <-timeout:
			t.Fatalf("%d of %d instances ended", len(ended), len(refs))
		}
	}
	d1.Close()

	d2, err := local.NewDriver(driver.LocalConfig{}, driver.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	defer d2.Cleanup(ctx, job)
	sts, _ := d2.List(ctx)
	if len(sts) != len(refs) {
		t.Fatalf("re-adopted %d instances, want %d", len(sts), len(refs))
	}
	for _, st := range sts {
		check("re-adopted", st)
	}
}

// TestPurgeRemovesTheLogsToo: Cleanup keeps an instance's log; Purge (the
// launcher's, once the job is deleted) stops what runs and removes the
// job's directory, logs and all; again, or for a job it never had, it does
// nothing.
func TestPurgeRemovesTheLogsToo(t *testing.T) {
	ctx := context.Background()
	d := newDriver(t)
	ch, _ := d.Watch(ctx)
	job := drivertest.JobID(t)
	ended, running := driver.Ref{JobID: job, Role: driver.RoleWorker}, driver.Ref{JobID: job, Role: driver.RoleWorker, Index: 1}
	for ref, script := range map[driver.Ref]string{ended: "echo done", running: "sleep 600"} {
		if err := d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Command: []string{"/bin/sh", "-c", script}}); err != nil {
			t.Fatal(err)
		}
	}
	waitFinal(t, ch, ended)
	if err := d.Cleanup(ctx, job); err != nil {
		t.Fatal(err)
	}
	jobDir := filepath.Join(dataDir(t), "local", job)
	if _, err := os.Stat(filepath.Join(jobDir, "worker-0", "output.log")); err != nil {
		t.Fatalf("the log is gone after Cleanup: %v", err)
	}
	if err := d.Start(ctx, driver.Spec{Ref: running, Name: running.Name(), Command: []string{"/bin/sh", "-c", "sleep 600"}}); err != nil {
		t.Fatal(err)
	}
	if err := d.(driver.Purger).Purge(ctx, job); err != nil {
		t.Fatalf("Purge() error = %v", err)
	}
	if _, err := os.Stat(jobDir); !os.IsNotExist(err) {
		t.Errorf("the job's directory after Purge: %v, want it gone", err)
	}
	if list, _ := d.List(ctx); slices.ContainsFunc(list, func(st driver.Status) bool { return st.Ref.JobID == job }) {
		t.Error("the driver still lists an instance of the purged job")
	}
	for _, id := range []string{job, "job-never"} {
		if err := d.(driver.Purger).Purge(ctx, id); err != nil {
			t.Errorf("Purge(%s) again = %v", id, err)
		}
	}
}

// TestStopToldFromAnEndOfItsOwn: an instance that fails on its own reports
// driver.ReasonExited, a Stop after its end changing nothing; one that
// exits non-zero because Stop's SIGTERM reached it is stopped, without.
func TestStopToldFromAnEndOfItsOwn(t *testing.T) {
	ctx := context.Background()
	d := quickStopDriver(t)
	ch, _ := d.Watch(ctx)
	job := drivertest.JobID(t)
	own := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: 0}
	term := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: 1}
	defer d.Cleanup(ctx, job)
	for r, script := range map[driver.Ref]string{own: `exit 3`, term: `trap 'exit 1' TERM; echo started; sleep 60 & wait`} {
		if err := d.Start(ctx, driver.Spec{Ref: r, Name: r.Name(), Command: []string{"/bin/sh", "-c", script}}); err != nil {
			t.Fatal(err)
		}
	}
	st := waitFinal(t, ch, own)
	if err := d.Stop(ctx, own); err != nil {
		t.Fatal(err)
	}
	if st.State != driver.Failed || st.ExitCode == nil || *st.ExitCode != 3 || st.Reason != driver.ReasonExited || st.Message != "" {
		t.Errorf("an instance that exited 3 on its own: %+v; want Failed 3, reason %s, no message", st, driver.ReasonExited)
	}
	sts, _ := d.List(ctx)
	for _, s := range sts {
		if s.Ref == own && (s.Reason != driver.ReasonExited || s.Message != "") {
			t.Errorf("after a Stop that came later: %+v; want it unchanged", s)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(readLogs(t, d, term), "started"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second instance never started")
		}
	}
	if err := d.Stop(ctx, term); err != nil {
		t.Fatal(err)
	}
	st = waitFinal(t, ch, term)
	if st.State != driver.Failed || st.ExitCode == nil || *st.ExitCode != 1 || st.Reason != "" || st.Message != "stopped" {
		t.Errorf("an instance that exited 1 on the stop's SIGTERM: %+v; want Failed 1, stopped, no reason", st)
	}
}

// TestStopSignalsEachProcessOnce: Stop's SIGTERM reaches each process of
// the instance once, by the driver with cgroups and by the one that finds
// strays by their environment. Before, the processes of the group got it
// with the group and again with the cgroup's (or the strays') processes,
// and a program that takes a second SIGTERM as "stop now" ended at once
// instead of using its grace period.
func TestStopSignalsEachProcessOnce(t *testing.T) {
	// It counts the SIGTERMs it gets, shuts down for a second after the
	// first, then exits 0.
	const script = `n=0; trap 'n=$((n+1)); echo TERM $n' TERM; echo started
while [ $n -eq 0 ]; do sleep 0.05 & wait $!; done
i=0; while [ $i -lt 20 ]; do sleep 0.05 & wait $!; i=$((i+1)); done; echo shut down`
	for _, cgroups := range []bool{true, false} {
		t.Run(fmt.Sprintf("cgroups=%v", cgroups), func(t *testing.T) {
			ctx := context.Background()
			d := quickStopDriver(t, local.WithGracePeriod(5*time.Second), local.WithCgroups(cgroups))
			ch, _ := d.Watch(ctx)
			ref := driver.Ref{JobID: drivertest.JobID(t), Role: driver.RoleWorker}
			t.Cleanup(func() { d.Cleanup(context.Background(), ref.JobID) })
			if err := d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Command: []string{"/bin/sh", "-c", script}}); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(10 * time.Second); !strings.Contains(readLogs(t, d, ref), "started"); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the instance never started")
				}
			}
			if err := d.Stop(ctx, ref); err != nil {
				t.Fatal(err)
			}
			st := waitFinal(t, ch, ref)
			// The shell also says "Terminated" of the sleep the SIGTERM ended,
			// when it next waits.
			out := readLogs(t, d, ref)
			if got := strings.ReplaceAll(out, "Terminated\n", ""); got != "started\nTERM 1\nshut down\n" {
				t.Errorf("output = %q, want one SIGTERM and the shutdown after it", out)
			}
			if st.ExitCode == nil || *st.ExitCode != 0 {
				t.Errorf("exit code = %s, want 0: the program shut down within the grace period", fmtCode(st.ExitCode))
			}
		})
	}
}
