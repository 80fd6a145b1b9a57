package local_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/local"
)

// BenchmarkStartGang starts a job's instances as the launcher does on this
// driver (the controller together with 20 workers, 16 at a time) and
// reports the time from the first Start to the first one's return
// (first-ms) and to the last one's (ms/gang), to the first instance's
// command running (first-cmd-ms) and to the last one's (cmd-ms), and this
// process's CPU for it: the local driver's share of a job's
// admission-to-running. Each command writes to a FIFO when it begins, with
// the shell's builtins, and a reader here takes the time. With each
// instance in a cgroup of its own (made at its start), and without.
func BenchmarkStartGang(b *testing.B) {
	for _, cgroups := range []bool{true, false} {
		b.Run("cgroups="+strconv.FormatBool(cgroups), func(b *testing.B) { startGang(b, local.WithCgroups(cgroups)) })
	}
}

func startGang(b *testing.B, options ...local.Option) {
	dir := b.TempDir()
	d, err := local.NewDriver(driver.LocalConfig{}, driver.Options{DataDir: dir}, options...)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	fifo := filepath.Join(dir, "began")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		b.Fatal(err)
	}
	// Opened for reading and writing, so that it never reads an end.
	f, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	began := make(chan time.Time, 64)
	go func() {
		buf := make([]byte, 1)
		for {
			if _, err := f.Read(buf); err != nil {
				return
			}
			began <- time.Now()
		}
	}()
	time.Sleep(100 * time.Millisecond) // the driver makes its first spare directories
	ctx := context.Background()
	env := map[string]string{"FIFO": fifo}
	for i := range 20 {
		env["RM_VAR_"+strconv.Itoa(i)] = "value"
	}
	var wall, cpu, first, firstCmd, lastCmd time.Duration
	for n := range b.N {
		job := "job-" + strconv.Itoa(n)
		spec := func(role driver.Role, i int) driver.Spec {
			return driver.Spec{Ref: driver.Ref{JobID: job, Role: role, Index: i},
				Command: []string{"/bin/sh", "-c", `printf x > "$FIFO"; sleep 0.2`}, Env: env}
		}
		c0, w0 := processCPU(), time.Now()
		errs := make(chan error, 21)
		sem := make(chan struct{}, 16)
		var once sync.Once
		for i := range 21 {
			sem <- struct{}{}
			go func() {
				r, idx := driver.RoleWorker, i-1
				if i == 0 {
					r, idx = driver.RoleController, 0
				}
				err := d.Start(ctx, spec(r, idx))
				once.Do(func() { first += time.Since(w0) })
				errs <- err
				<-sem
			}()
		}
		for range 21 {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
		wall += time.Since(w0)
		cpu += processCPU() - c0
		for i := range 21 {
			at := <-began
			if i == 0 {
				firstCmd += at.Sub(w0)
			}
			if i == 20 {
				lastCmd += at.Sub(w0)
			}
		}
		// Not timed: the instances end and are removed.
		time.Sleep(300 * time.Millisecond)
		if err := d.Cleanup(ctx, job); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(wall.Microseconds())/1000/float64(b.N), "ms/gang")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/gang")
	b.ReportMetric(float64(first.Microseconds())/1000/float64(b.N), "first-ms")
	b.ReportMetric(float64(firstCmd.Microseconds())/1000/float64(b.N), "first-cmd-ms")
	b.ReportMetric(float64(lastCmd.Microseconds())/1000/float64(b.N), "cmd-ms")
}

// processCPU is the user and system time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStartGangsTogether starts three jobs of 21 instances (a
// controller and 20 workers) at the same instant, each as the launcher does
// (16 Starts at a time), and reports the time from then until each job's
// last Start returned: the mean of the three (gang-ms), which every worker
// of a job spends held and not yet working, the last (all-ms), and their
// ratio (gang/all), which this machine's speed at starting processes moves
// less: 2/3 when the jobs start one after the other, 1 when they all
// finish starting together.
func BenchmarkStartGangsTogether(b *testing.B) {
	const gangs, size, parallel = 3, 21, 16
	dir := b.TempDir()
	d, err := local.NewDriver(driver.LocalConfig{}, driver.Options{DataDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	env := map[string]string{}
	for i := range 20 {
		env["RM_VAR_"+strconv.Itoa(i)] = "value"
	}
	var each, all time.Duration
	for n := range b.N {
		w0 := time.Now()
		done := make(chan time.Duration, gangs)
		for g := range gangs {
			job := "job-" + strconv.Itoa(n) + "-" + strconv.Itoa(g)
			go func() {
				sem := make(chan struct{}, parallel)
				var wg sync.WaitGroup
				for i := range size {
					sem <- struct{}{}
					wg.Add(1)
					go func() {
						defer wg.Done()
						defer func() { <-sem }()
						r, idx := driver.RoleWorker, i-1
						if i == 0 {
							r, idx = driver.RoleController, 0
						}
						err := d.Start(ctx, driver.Spec{Ref: driver.Ref{JobID: job, Role: r, Index: idx},
							Command: []string{"/bin/sh", "-c", "sleep 0.2"}, Env: env})
						if err != nil {
							b.Error(err)
						}
					}()
				}
				wg.Wait()
				done <- time.Since(w0)
			}()
		}
		var last time.Duration
		for range gangs {
			t := <-done
			each += t
			last = max(last, t)
		}
		all += last
		// Not timed: the instances end and are removed.
		time.Sleep(400 * time.Millisecond)
		for g := range gangs {
			if err := d.Cleanup(ctx, "job-"+strconv.Itoa(n)+"-"+strconv.Itoa(g)); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(each.Microseconds())/1000/float64(b.N*gangs), "gang-ms")
	b.ReportMetric(float64(all.Microseconds())/1000/float64(b.N), "all-ms")
	b.ReportMetric(float64(each)/float64(all)/gangs, "gang/all")
}

// BenchmarkStrayPassesPerJob runs trivial jobs (a controller and one
// worker that run `true`, started together, as the launcher does on this
// driver), jobs at a time together as the trivial load's clients submit
// them, and reports how many passes over /proc strayLoop made per job
// (passes/job): it makes one for all the instances that ended since its
// last one, and leaves a gap after each (strayGap). The jobs are cleaned up
// after the timed part, as the trivial load does not clean them up (a Stop
// or Cleanup waits for its instances' strays and so cuts the gap short).
// With cgroups there are no passes, so the driver here has none.
func BenchmarkStrayPassesPerJob(b *testing.B) {
	for _, jobs := range []int{1, 4} {
		b.Run("together="+strconv.Itoa(jobs), func(b *testing.B) {
			d, err := local.NewDriver(driver.LocalConfig{}, driver.Options{DataDir: b.TempDir()}, local.WithCgroups(false))
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			ctx := context.Background()
			ch, err := d.Watch(ctx)
			if err != nil {
				b.Fatal(err)
			}
			before, n := local.StrayPasses(d), 0
			var jobIDs []string
			for b.Loop() {
				var refs []driver.Ref
				for j := range jobs {
					job := "job-" + strconv.Itoa(n) + "-" + strconv.Itoa(j)
					refs = append(refs, driver.Ref{JobID: job, Role: driver.RoleController}, driver.Ref{JobID: job, Role: driver.RoleWorker})
				}
				n++
				var wg sync.WaitGroup
				for _, r := range refs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if err := d.Start(ctx, driver.Spec{Ref: r, Command: []string{"true"}}); err != nil {
							b.Error(err)
						}
					}()
				}
				wg.Wait()
				for ended := 0; ended < len(refs); {
					if st := <-ch; st.State.Final() {
						ended++
					}
				}
				jobIDs = append(jobIDs, refs[0].JobID)
			}
			b.ReportMetric(float64(local.StrayPasses(d)-before)/float64(n*jobs), "passes/job")
			b.StopTimer()
			for _, id := range jobIDs { // as a job's deletion would, later
				if err := d.Cleanup(ctx, id); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
