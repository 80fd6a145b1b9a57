package local_test

import (
	"context"
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

// crashLauncher runs a launcher in a process of its own (crashingLauncher)
// that starts job's controller with script, which is to start a stray that
// writes its pid to the file stray; once it has, the launcher is killed with
// SIGKILL. It returns the stray's pid.
func crashLauncher(t *testing.T, dir, job, script string, cgroups bool) int {
	t.Helper()
	launcher := exec.Command(os.Args[0], "-test.run=^$")
	launcher.Env = append(os.Environ(), crashingLauncher+"="+dir, crashingLauncher+"_JOB="+job,
		crashingLauncher+"_SCRIPT="+script, crashingLauncher+"_CGROUPS="+strconv.FormatBool(cgroups))
	launcher.Stderr = os.Stderr
	if err := launcher.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { launcher.Process.Kill(); launcher.Wait() })
	stray := waitPID(t, filepath.Join(dir, "local", job, "controller-0", "work", "stray"))
	t.Cleanup(func() { syscall.Kill(stray, syscall.SIGKILL) })
	launcher.Process.Kill()
	launcher.Wait()
	return stray
}

// TestStraysOfAnInstanceThatEndedWhileNoLauncherRan: an instance that
// ends while its launcher is down leaves its strays; the next driver kills
// them as it starts, from the instance's cgroup, or (without cgroups) by
// their environment.
func TestStraysOfAnInstanceThatEndedWhileNoLauncherRan(t *testing.T) {
	for _, tc := range []struct {
		cgroups bool
		stray   string
	}{
		{true, `env -i setsid /bin/sh -c 'echo $$ > stray; exec sleep 600' < /dev/null > /dev/null 2>&1 &`},
		{false, `setsid /bin/sh -c 'echo $$ > stray; exec sleep 600' < /dev/null > /dev/null 2>&1 &`},
	} {
		t.Run("cgroups="+strconv.FormatBool(tc.cgroups), func(t *testing.T) {
			dir := t.TempDir()
			job := drivertest.JobID(t)
			gate := filepath.Join(t.TempDir(), "go")
			stray := crashLauncher(t, dir, job, tc.stray+`
while [ ! -e `+gate+` ]; do sleep 0.02; done`, tc.cgroups)
			if err := os.WriteFile(gate, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			record := filepath.Join(dir, "local", job, "controller-0", "record")
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if b, _ := os.ReadFile(record); strings.Contains(string(b), "\nexit 0\n") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the instance did not end once let go")
				}
			}
			if !processExists(stray) {
				t.Fatalf("stray %d gone before the next driver started; the test shows nothing", stray)
			}
			d, err := local.NewDriver(driver.LocalConfig{}, driver.Options{DataDir: dir}, local.WithCgroups(tc.cgroups))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			t.Cleanup(func() { d.Cleanup(context.Background(), job) })
			if processExists(stray) {
				t.Errorf("stray %d of an instance that ended while no launcher ran still alive once the next driver started", stray)
			}
		})
	}
}

// cgroupDriver is a quickStopDriver whose instances get cgroups of their
// own; the test fails where this machine cannot give them (the driver
// would then fall back on finding strays by their environment, which the
// other tests cover).
func cgroupDriver(t *testing.T, dataDir string) *local.Driver {
	t.Helper()
	d, err := local.NewDriver(driver.LocalConfig{}, driver.Options{DataDir: dataDir},
		local.WithGracePeriod(300*time.Millisecond), local.WithPollInterval(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	base, err := local.CgroupBase(d.Root())
	if err != nil {
		t.Fatalf("no cgroup v2 hierarchy here (%v): mount one read-write for this test", err)
	}
	if _, err := os.Stat(base); err != nil {
		t.Fatalf("the driver made no cgroup of its own (%v): it needs a cgroup v2 hierarchy it may write and clone3", err)
	}
	return d
}

// TestStraysWithAnEnvironmentOfTheirOwnAreKilled: a process that leaves
// the instance's process group and sheds its environment (env -i setsid,
// as a daemon that cleans its environment does) carries nothing of the
// instance, so the driver that finds strays by their environment missed it
// and it outlived the job. In the instance's cgroup it is killed with the
// rest, when the instance is stopped and when it ends by itself.
func TestStraysWithAnEnvironmentOfTheirOwnAreKilled(t *testing.T) {
	d := cgroupDriver(t, t.TempDir())
	checkStraysKilled(t, d, `env -i setsid /bin/sh -c 'echo $$ > stray; exec sleep 600' < /dev/null > /dev/null 2>&1 &
while [ ! -s stray ]; do sleep 0.01; done`)
}

// TestAnInstanceLivesInItsCgroup: the wrapper and what the command starts
// are in the instance's cgroup, which is named after the instance, stays
// while one of the job's instances runs and is gone once the instance has
// ended; the driver's own cgroup is gone once it is closed with nothing
// running.
func TestAnInstanceLivesInItsCgroup(t *testing.T) {
	ctx := context.Background()
	d := cgroupDriver(t, t.TempDir())
	base, _ := local.CgroupBase(d.Root())
	ch, _ := d.Watch(ctx)
	job := drivertest.JobID(t)
	ref := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: 2}
	if err := d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Command: []string{"/bin/sh", "-c", `sleep 600 & echo $! > child; wait`}}); err != nil {
		t.Fatal(err)
	}
	cg := local.Cgroup(d, ref)
	if want := filepath.Join(base, job, "worker-2"); cg != want {
		t.Fatalf("instance cgroup = %q, want %q", cg, want)
	}
	child := waitPID(t, filepath.Join(d.Root(), job, "worker-2", "work", "child"))
	procs := local.CgroupPIDs(cg)
	if !slices.Contains(procs, child) || len(procs) != 3 {
		t.Errorf("cgroup.procs = %v, want the wrapper, the command and its child %d", procs, child)
	}
	if err := d.Stop(ctx, ref); err != nil {
		t.Fatal(err)
	}
	waitFinal(t, ch, ref)
	if _, err := os.Stat(cg); !os.IsNotExist(err) {
		t.Errorf("instance cgroup after Stop: %v, want it removed", err)
	}
	if err := d.Cleanup(ctx, job); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(cg)); !os.IsNotExist(err) {
		t.Errorf("job cgroup after Cleanup: %v, want it removed", err)
	}
	d.Close()
	if _, err := os.Stat(base); !os.IsNotExist(err) {
		t.Errorf("driver cgroup after Close: %v, want it removed", err)
	}
}

// crashingLauncher, set in the environment of this test binary run again
// (to the data directory, with the job, the script and whether to use
// cgroups in the next three), makes it a launcher that starts one instance
// on a local driver and then waits to be killed.
const crashingLauncher = "AVXRM_LOCAL_TEST_CRASHING_LAUNCHER"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashingLauncher); dir != "" {
		job, script := os.Getenv(crashingLauncher+"_JOB"), os.Getenv(crashingLauncher+"_SCRIPT")
		cgroups := os.Getenv(crashingLauncher+"_CGROUPS") != "false"
		d, err := local.NewDriver(driver.LocalConfig{}, driver.Options{DataDir: dir}, local.WithCgroups(cgroups))
		if err != nil {
			panic(err)
		}
		ref := driver.Ref{JobID: job, Role: driver.RoleController}
		if err := d.Start(context.Background(), driver.Spec{Ref: ref, Name: ref.Name(), Command: []string{"/bin/sh", "-c", script}}); err != nil {
			panic(err)
		}
		select {}
	}
	os.Exit(m.Run())
}

// TestCgroupsOutliveTheLauncher: instances keep running when their
// launcher dies (kill -9); the next driver re-adopts them with their
// cgroups, so what they leave is killed when they end, and it kills what a
// cgroup of an instance whose directory is gone still holds. Also when the
// launcher died before it recorded the start (and the cgroup with it): the
// instance is where the driver puts it.
func TestCgroupsOutliveTheLauncher(t *testing.T) {
	t.Run("start recorded", func(t *testing.T) { checkOutlivesLauncher(t, false) })
	t.Run("start not recorded", func(t *testing.T) { checkOutlivesLauncher(t, true) })
}

func checkOutlivesLauncher(t *testing.T, unrecorded bool) {
	ctx := context.Background()
	dir := t.TempDir()
	job := drivertest.JobID(t)
	ref := driver.Ref{JobID: job, Role: driver.RoleController}
	gate := filepath.Join(t.TempDir(), "go")
	script := `env -i setsid /bin/sh -c 'echo $$ > stray; exec sleep 600' < /dev/null > /dev/null 2>&1 &
while [ ! -e ` + gate + ` ]; do sleep 0.02; done`
	root := filepath.Join(dir, "local")
	stray := crashLauncher(t, dir, job, script, true)
	if unrecorded {
		record := filepath.Join(root, job, "controller-0", "record")
		b, err := os.ReadFile(record)
		if err != nil {
			t.Fatal(err)
		}
		var kept []string
		for _, line := range strings.SplitAfter(string(b), "\n") {
			if !strings.HasPrefix(line, "state ") {
				kept = append(kept, line)
			}
		}
		if len(kept) != strings.Count(string(b), "\n") {
			t.Fatalf("record %q has no state line to take out", b)
		}
		if err := os.WriteFile(record, []byte(strings.Join(kept, "")), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	base, err := local.CgroupBase(root)
	if err != nil {
		t.Fatal(err)
	}
	cg := filepath.Join(base, job, "controller-0")
	if procs := local.CgroupPIDs(cg); !slices.Contains(procs, stray) {
		t.Fatalf("cgroup.procs of the instance = %v, want its stray %d in it", procs, stray)
	}

	// A cgroup of an instance whose directory is gone, with a process in it.
	orphanCg := filepath.Join(filepath.Dir(cg), "worker-9")
	if err := os.Mkdir(orphanCg, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(orphanCg)
	if err != nil {
		t.Fatal(err)
	}
	orphan := exec.Command("sleep", "600")
	orphan.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() { orphan.Process.Kill() })
	reaped := make(chan struct{})
	go func() { orphan.Wait(); close(reaped) }()

	d := cgroupDriver(t, dir)
	t.Cleanup(func() { d.Cleanup(context.Background(), job) })
	select {
	case <-reaped:
	case <-time.After(5 * time.Second):
		t.Errorf("process in the cgroup of an instance without a directory still alive after the next driver started")
	}
	if _, err := os.Stat(orphanCg); !os.IsNotExist(err) {
		t.Errorf("cgroup of an instance without a directory: %v, want it removed", err)
	}
	if got := local.Cgroup(d, ref); got != cg {
		t.Fatalf("re-adopted instance's cgroup = %q, want %q", got, cg)
	}
	if !processExists(stray) {
		t.Fatalf("stray %d of a running instance killed by the next driver", stray)
	}
	ch, _ := d.Watch(ctx)
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFinal(t, ch, ref)
	for i := 0; i < 500 && processExists(stray); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if processExists(stray) {
		t.Errorf("stray %d of a re-adopted instance still alive after it ended", stray)
	}
}

// TestCgroupsOfAGoneWorkDirAreRemoved: a launcher killed with an instance
// running, whose work_dir is then removed (a temporary one), leaves the
// instance's cgroup, empty once it ends, where no driver of that work_dir
// will look again. The next driver started under the same cgroup removes
// it, once empty; it leaves those of a work_dir that still exists, whose
// driver may come back.
func TestCgroupsOfAGoneWorkDirAreRemoved(t *testing.T) {
	gone, kept := t.TempDir(), t.TempDir()
	gate := filepath.Join(t.TempDir(), "go")
	script := `echo $$ > stray; while [ ! -e ` + gate + ` ]; do sleep 0.02; done`
	var bases []string
	for _, dir := range []string{gone, kept} {
		job := drivertest.JobID(t)
		crashLauncher(t, dir, job, script, true)
		base, err := local.CgroupBase(filepath.Join(dir, "local"))
		if err != nil {
			t.Fatal(err)
		}
		if len(local.CgroupPIDs(filepath.Join(base, job, "controller-0"))) == 0 {
			t.Fatalf("instance of the killed launcher on %s not in its cgroup", dir)
		}
		bases = append(bases, base)
	}
	t.Cleanup(func() { // what the kept work_dir's driver does when it comes back
		d, err := local.NewDriver(driver.LocalConfig{}, driver.Options{DataDir: kept})
		if err == nil {
			d.Close()
		}
	})
	if err := os.RemoveAll(gone); err != nil {
		t.Fatal(err)
	}

	cgroupDriver(t, t.TempDir())
	for _, base := range bases {
		if _, err := os.Stat(base); err != nil {
			t.Fatalf("cgroup %s with an instance running: %v, want it left", base, err)
		}
	}

	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, base := range bases {
		for deadline := time.Now().Add(10 * time.Second); local.Populated(base); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the instance in %s did not end once let go", base)
			}
		}
	}
	cgroupDriver(t, t.TempDir())
	if _, err := os.Stat(bases[0]); !os.IsNotExist(err) {
		t.Errorf("cgroup of a work_dir that is gone, once empty: %v, want it removed", err)
	}
	if _, err := os.Stat(bases[1]); err != nil {
		t.Errorf("cgroup of a work_dir that exists: %v, want it left for its driver", err)
	}
}

// TestAJobsCgroupGoesWithItsLastInstance: a job's cgroup stays while one of
// its instances has one and goes once the last has ended, without a
// Cleanup: a job that ended is kept (with its logs) until it is deleted,
// and before, its empty cgroup stayed as long, one for each job that had
// run on the driver (200 after 200 jobs) until the driver's next start.
func TestAJobsCgroupGoesWithItsLastInstance(t *testing.T) {
	ctx := context.Background()
	d := cgroupDriver(t, t.TempDir())
	ch, _ := d.Watch(ctx)
	job := drivertest.JobID(t)
	t.Cleanup(func() { d.Cleanup(context.Background(), job) })
	first := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: 0}
	last := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: 1}
	for _, r := range []driver.Ref{first, last} {
		if err := d.Start(ctx, driver.Spec{Ref: r, Name: r.Name(), Command: []string{"sleep", "600"}}); err != nil {
			t.Fatal(err)
		}
	}
	jobCgroup := filepath.Dir(local.Cgroup(d, first))
	gone := func(path string) bool {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(path); os.IsNotExist(err) {
				return true
			}
		}
		return false
	}
	if err := d.Stop(ctx, first); err != nil {
		t.Fatal(err)
	}
	waitFinal(t, ch, first)
	if !gone(local.Cgroup(d, first)) {
		t.Fatal("the first instance's cgroup stayed after it ended")
	}
	if _, err := os.Stat(jobCgroup); err != nil {
		t.Fatalf("job cgroup while an instance of it runs: %v, want it there", err)
	}
	if err := d.Stop(ctx, last); err != nil {
		t.Fatal(err)
	}
	waitFinal(t, ch, last)
	if !gone(jobCgroup) {
		t.Error("the job's cgroup stayed after its last instance ended")
	}
	// A job's instance started after that makes it again.
	again := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: 2}
	if err := d.Start(ctx, driver.Spec{Ref: again, Name: again.Name(), Command: []string{"true"}}); err != nil {
		t.Fatal(err)
	}
	if cg := local.Cgroup(d, again); cg != filepath.Join(jobCgroup, "worker-2") {
		t.Errorf("cgroup of an instance started after = %q, want one in the job's cgroup, made again", cg)
	}
	waitFinal(t, ch, again)
}
