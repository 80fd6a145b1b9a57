package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"
)

// slurmConf is tuned for throughput: no accounting, no cgroups, the main
// scheduler run on every event (no batching delay), finished jobs forgotten
// after 2 s, and a minute for slurmctld's and slurmd's messages (the
// default 10 s failed batch launches on a slow machine: slurmd timed out
// under the 2,000 submissions and Slurm held the job). One node claims 100 CPUs (config_overrides lets slurmd believe
// the configuration rather than the hardware); partition "ten" caps the CPUs
// a job set may use on it at 10, which is the queue limit of the hand-over.
var slurmConf = template.Must(template.New("slurm.conf").Parse(`ClusterName=bench
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={{.CtldPort}}
SlurmdPort={{.DPort}}
AuthType=auth/munge
AuthInfo=socket={{.Dir}}/munge.sock
CredType=cred/munge
StateSaveLocation={{.Dir}}/ctld
SlurmdSpoolDir={{.Dir}}/d
SlurmctldPidFile={{.Dir}}/slurmctld.pid
SlurmdPidFile={{.Dir}}/slurmd.pid
SlurmctldLogFile={{.Dir}}/slurmctld.log
SlurmdLogFile={{.Dir}}/slurmd.log
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MaxJobCount=100000
MinJobAge=2
ReturnToService=2
SlurmdParameters=config_overrides
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
MessageTimeout=60
NodeName=localhost NodeAddr=127.0.0.1 CPUs=100 State=UNKNOWN
PartitionName=hundred Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=ten Nodes=localhost MaxCPUsPerNode=10 MaxTime=INFINITE State=UP
`))

type slurm struct {
	dir   string
	env   []string
	procs []*exec.Cmd
}

func runSlurm(ctx context.Context, dir string, o options, sizes []int) (result, error) {
	var r result
	s, err := startSlurm(ctx, dir)
	if err != nil {
		return r, err
	}
	defer s.stop()
	fmt.Fprintln(os.Stderr, "slurm: up; trivial jobs")
	if r.trivialLocal, err = s.trivial(ctx, o.jobs, o.clients); err != nil {
		return r, fmt.Errorf("trivial: %w", err)
	}
	fmt.Fprintln(os.Stderr, "slurm: hand-over")
	if r.handover, err = s.handover(ctx, o.handovers); err != nil {
		return r, fmt.Errorf("hand-over: %w", err)
	}
	fmt.Fprintln(os.Stderr, "slurm: mixed workload")
	if r.utilization, err = s.mixed(ctx, sizes); err != nil {
		return r, fmt.Errorf("mixed: %w", err)
	}
	return r, nil
}

func startSlurm(ctx context.Context, dir string) (*slurm, error) {
	for _, bin := range []string{"munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%s is not installed (make bench-compare installs Slurm from Debian's packages)", bin)
		}
	}
	for _, d := range []string{"ctld", "d", "stamps"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	var conf bytes.Buffer
	if err := slurmConf.Execute(&conf, map[string]any{"Dir": dir, "CtldPort": ports[0], "DPort": ports[1]}); err != nil {
		return nil, err
	}
	confPath := filepath.Join(dir, "slurm.conf")
	if err := os.WriteFile(confPath, conf.Bytes(), 0o644); err != nil {
		return nil, err
	}
	s := &slurm{dir: dir, env: append(os.Environ(), "SLURM_CONF="+confPath)}
	key := filepath.Join(dir, "munge.key")
	if err := s.cmd(ctx, "mungekey", "--create", "--keyfile", key); err != nil {
		return nil, err
	}
	if err := s.cmd(ctx, "munged", "--force", "--socket", filepath.Join(dir, "munge.sock"), "--key-file", key,
		"--pid-file", filepath.Join(dir, "munged.pid"), "--log-file", filepath.Join(dir, "munged.log"),
		"--seed-file", filepath.Join(dir, "munge.seed")); err != nil {
		return nil, err
	}
	for _, args := range [][]string{{"slurmctld", "-D", "-i", "-f", confPath}, {"slurmd", "-D", "-f", confPath, "-N", "localhost"}} {
		c := exec.Command(args[0], args[1:]...)
		c.Env = s.env
		out, err := os.Create(filepath.Join(dir, args[0]+".out"))
		if err != nil {
			s.stop()
			return nil, err
		}
		c.Stdout, c.Stderr = out, out
		if err := c.Start(); err != nil {
			s.stop()
			return nil, err
		}
		s.procs = append(s.procs, c)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ := s.output(ctx, "sinfo", "-h", "-p", "hundred", "-o", "%T")
		if strings.TrimSpace(out) == "idle" {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("slurm not idle after 30 s (sinfo: %q)", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop ends slurmd, slurmctld and munged by pid.
func (s *slurm) stop() {
	for i := len(s.procs) - 1; i >= 0; i-- {
		_ = s.procs[i].Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = s.procs[i].Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = s.procs[i].Process.Kill()
		}
	}
	if b, err := os.ReadFile(filepath.Join(s.dir, "munged.pid")); err == nil {
		var pid int
		if _, err := fmt.Sscan(string(b), &pid); err == nil && pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
	}
}

func (s *slurm) cmd(ctx context.Context, name string, args ...string) error {
	_, err := s.output(ctx, name, args...)
	return err
}

func (s *slurm) output(ctx context.Context, name string, args ...string) (string, error) {
	c := exec.CommandContext(ctx, name, args...)
	c.Env = s.env
	out, err := c.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// heldJob returns the first job of squeue's "%i|%r" lines whose reason
// says Slurm holds it (e.g. "launch failed requeued held", after its node
// stopped responding).
func heldJob(squeue string) (job, reason string, ok bool) {
	for line := range strings.Lines(squeue) {
		job, reason, _ := strings.Cut(strings.TrimSpace(line), "|")
		if strings.Contains(strings.ToLower(reason), "held") {
			return job, reason, true
		}
	}
	return "", "", false
}

func (s *slurm) sbatch(ctx context.Context, args ...string) error {
	return s.cmd(ctx, "sbatch", append([]string{"--parsable", "-o", "/dev/null"}, args...)...)
}

// waitEmpty waits until squeue lists no pending, running or completing
// job. A job Slurm holds never leaves the queue, so it fails at once then.
func (s *slurm) waitEmpty(ctx context.Context, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		out, err := s.output(ctx, "squeue", "-h", "-o", "%i|%r")
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) == "" {
			return nil
		}
		if job, reason, ok := heldJob(out); ok {
			return fmt.Errorf("Slurm holds job %s (%s): it will not run; see slurmd.log and slurmctld.log", job, reason)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("jobs still queued after %s", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *slurm) trivial(ctx context.Context, jobs, clients int) (float64, error) {
	start := time.Now()
	err := fanOut(jobs, clients, func(int) error { return s.sbatch(ctx, "-p", "hundred", "--wrap=true") })
	if err != nil {
		return 0, err
	}
	if err := s.waitEmpty(ctx, 30*time.Minute); err != nil {
		return 0, err
	}
	return float64(jobs) / time.Since(start).Seconds(), nil
}

func (s *slurm) handover(ctx context.Context, n int) ([]time.Duration, error) {
	st := filepath.Join(s.dir, "stamps")
	var out []time.Duration
	for i := range n {
		if err := s.sbatch(ctx, "-p", "ten", "-n", "10", "--wrap",
			fmt.Sprintf("sleep 1; date +%%s.%%N > %s/end-%d-0", st, i)); err != nil {
			return nil, err
		}
		if err := s.sbatch(ctx, "-p", "ten", "-n", "8", "--wrap",
			fmt.Sprintf("date +%%s.%%N > %s/start-%d-0", st, i)); err != nil {
			return nil, err
		}
		if err := waitFile(ctx, fmt.Sprintf("%s/start-%d-0", st, i), time.Minute); err != nil {
			return nil, err
		}
		d, err := handoverFrom(st, i)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
		if err := s.waitEmpty(ctx, time.Minute); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *slurm) mixed(ctx context.Context, sizes []int) (float64, error) {
	start := time.Now()
	err := fanOut(len(sizes), 4, func(i int) error {
		return s.sbatch(ctx, "-p", "hundred", "-n", fmt.Sprint(sizes[i]), "--wrap", "sleep 1")
	})
	if err != nil {
		return 0, err
	}
	if err := s.waitEmpty(ctx, 30*time.Minute); err != nil {
		return 0, err
	}
	return utilization(sizes, 100, time.Second, time.Since(start)), nil
}

// fanOut calls f(0..n-1) from clients goroutines and returns the first error.
func fanOut(n, clients int, f func(i int) error) error {
	next := make(chan int)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					errs <- err
					for range next {
					}
					return
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	return <-errs
}

// freePorts reserves n loopback ports and releases them for the daemons.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
