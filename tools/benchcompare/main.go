// Command benchcompare runs the same workloads on Slurm and on the resource
// manager's all-in-one (avxrm up), one system after the other on this
// machine, and prints a table of both with the ratios. `make bench-compare`
// installs Slurm from Debian's packages first and runs it with the defaults.
//
// The workloads (docs/benchmarks.md describes the method):
//
//   - trivial: -jobs jobs that do nothing, submitted from -clients clients at
//     once; throughput is jobs / (time from the first submission to the last
//     job's end). Ours runs a controller and a worker process per job on the
//     local driver, and again on the simulated driver (the control plane alone).
//   - hand-over: a 10-worker job holds a limit of 10 for 1 s while an 8-worker
//     job waits; the hand-over is the time from the last instance of the first
//     job writing its end stamp to the first instance of the second writing its
//     start stamp, both taken by the jobs' own processes with `date +%s.%N`.
//   - mixed: -mixed jobs of 1..20 workers (seeded) holding them 1 s under a
//     limit of 100, submitted at once; utilization is Σ workers·1 s divided by
//     limit · makespan. Ours runs it on the local driver and again on the
//     simulated one (the control plane alone), each split: where the rest of limit ·
//     makespan went (workers held while their instances started, ran past the
//     hold or ended; capacity free while a waiting job fit, none fit, or none
//     waited), read back from the jobs' recorded times.
//
// Everything listens on loopback; Slurm's state and logs live in a temporary
// folder and its daemons are stopped by pid afterwards.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

func usage() {
	w := flag.CommandLine.Output()
	fmt.Fprintf(w, `Usage: %s [flags]

Runs the same workloads on Slurm and on avxrm up, one system after the other on
this machine, and prints both with the ratios: trivial jobs (ours on the local
and the simulated driver), the gang hand-over (p50, p99; ours also by phase) and
the mixed workload's utilization (ours split into where the rest went). Slurm's
side needs Slurm installed (make bench-compare installs it from Debian's
packages); its daemons run on loopback with their state in a temporary folder. Runs compare
only on a machine that starts processes at the speed docs/benchmarks.md names:
the last line says how long 200 runs of /bin/true took.

Examples:
  %[1]s                              the defaults, as make bench-compare runs them
  %[1]s -only avxrm -jobs 1000       our side alone, a shorter trivial run
  %[1]s -only avxrm -jobs 10 -handovers 3 -mixed 300   the mixed workload

Flags:
`, filepath.Base(os.Args[0]))
	flag.PrintDefaults()
}

type options struct {
	jobs, clients, handovers, mixed int
	avxrm                           string
	only                            string
	keep                            bool
}

// result holds one system's figures; a zero field was not measured.
type result struct {
	trivialLocal, trivialSim float64 // jobs per second
	handover                 []time.Duration
	phases                   []handoverPhases // ours only
	utilization              float64          // 0..1 (ours: mixed.loss.work)
	mixed, mixedSim          mixedRun         // ours only: on the local and the simulated driver
}

func main() {
	var o options
	flag.IntVar(&o.jobs, "jobs", 2000, "trivial jobs per run")
	flag.IntVar(&o.clients, "clients", 4, "concurrent submitting clients")
	flag.IntVar(&o.handovers, "handovers", 20, "hand-overs to time")
	flag.IntVar(&o.mixed, "mixed", 300, "jobs in the mixed workload")
	flag.StringVar(&o.avxrm, "avxrm", "bin/avxrm", "the avxrm binary to run as the all-in-one")
	flag.StringVar(&o.only, "only", "", "run one system only: slurm or avxrm")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary folders (logs) afterwards")
	flag.Usage = usage
	flag.Parse()
	if err := o.check(); err != nil {
		fmt.Fprintln(os.Stderr, "benchcompare:", err)
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "benchcompare:", err)
		os.Exit(1)
	}
}

// check refuses what would panic (a negative count) or hang (no client to
// submit) rather than measure.
func (o options) check() error {
	switch {
	case o.jobs < 0, o.handovers < 0, o.mixed < 0:
		return fmt.Errorf("-jobs, -handovers and -mixed must be 0 or more (got %d, %d, %d)", o.jobs, o.handovers, o.mixed)
	case o.clients < 1:
		return fmt.Errorf("-clients must be at least 1 (got %d)", o.clients)
	case o.only != "" && o.only != "slurm" && o.only != "avxrm":
		return fmt.Errorf("-only must be slurm or avxrm (got %q)", o.only)
	}
	return nil
}

func run(ctx context.Context, o options) error {
	spawnBefore := spawnTime()
	sizes := mixedSizes(o.mixed)
	var slurm, ours result
	if o.only != "avxrm" {
		dir, err := os.MkdirTemp("", "bench-slurm-")
		if err != nil {
			return err
		}
		if slurm, err = runSlurm(ctx, dir, o, sizes); err != nil {
			return fmt.Errorf("slurm (logs kept in %s): %w", dir, err)
		}
		if !o.keep {
			os.RemoveAll(dir) // kept when the run failed: the logs say why
		}
	}
	if o.only != "slurm" {
		bin, err := filepath.Abs(o.avxrm)
		if err != nil {
			return err
		}
		dir, err := os.MkdirTemp("", "bench-avxrm-")
		if err != nil {
			return err
		}
		if ours, err = runOurs(ctx, bin, dir, o, sizes); err != nil {
			return fmt.Errorf("avxrm (logs kept in %s): %w", dir, err)
		}
		if !o.keep {
			os.RemoveAll(dir)
		}
	}
	printTable(os.Stdout, o, slurm, ours)
	fmt.Printf("\nthis machine: 200 runs of /bin/true from a shell took %s before and %s after (docs/benchmarks.md compares runs at 0.21 s or less)\n",
		spawnBefore, spawnTime())
	return nil
}

// spawnTime is how long a shell takes to run /bin/true 200 times, the
// figure by which docs/benchmarks.md tells a machine as fast at starting
// processes as the one of the valid comparisons from a slower one.
func spawnTime() string {
	start := time.Now()
	if err := exec.Command("/bin/sh", "-c", `i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done`).Run(); err != nil {
		return "(not measured: " + err.Error() + ")"
	}
	return fmt.Sprintf("%.2f s", time.Since(start).Seconds())
}

// mixedSizes returns the mixed workload's gang sizes, the same for both systems.
func mixedSizes(n int) []int {
	rng := rand.New(rand.NewPCG(42, 42))
	s := make([]int, n)
	for i := range s {
		s[i] = 1 + rng.IntN(20)
	}
	return s
}

func utilization(sizes []int, limit int, hold, makespan time.Duration) float64 {
	total := 0
	for _, k := range sizes {
		total += k
	}
	return float64(total) * hold.Seconds() / (float64(limit) * makespan.Seconds())
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func printTable(w *os.File, o options, slurm, ours result) {
	fmt.Fprintf(w, "benchcompare %s: %d trivial jobs from %d clients, %d hand-overs, %d mixed jobs\n\n",
		time.Now().UTC().Format("2006-01-02"), o.jobs, o.clients, o.handovers, o.mixed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\tSlurm\tavxrm\tavxrm / Slurm")
	rate := func(v float64) string { return blankIf(v == 0, fmt.Sprintf("%.1f jobs/s", v)) }
	fmt.Fprintf(tw, "trivial jobs, local driver\t%s\t%s\t%s\n", rate(slurm.trivialLocal), rate(ours.trivialLocal), ratio(ours.trivialLocal, slurm.trivialLocal))
	fmt.Fprintf(tw, "trivial jobs, simulated driver\t%s\t%s\t%s\n", "—", rate(ours.trivialSim), ratio(ours.trivialSim, slurm.trivialLocal))
	for _, p := range []struct {
		name string
		q    float64
	}{{"hand-over p50", 0.5}, {"hand-over p99", 0.99}} {
		s, a := percentile(slurm.handover, p.q), percentile(ours.handover, p.q)
		ms := func(d time.Duration) string {
			return blankIf(d == 0, fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.name, ms(s), ms(a), ratio(s.Seconds(), a.Seconds()))
	}
	pct := func(v float64) string { return blankIf(v == 0, fmt.Sprintf("%.0f%%", 100*v)) }
	fmt.Fprintf(tw, "mixed workload utilization\t%s\t%s\t%s\n", pct(slurm.utilization), pct(ours.utilization), ratio(ours.utilization, slurm.utilization))
	sim := ours.mixedSim.loss.work
	fmt.Fprintf(tw, "the same, simulated driver\t%s\t%s\t%s\n", "—", pct(sim), ratio(sim, slurm.utilization))
	tw.Flush()
	fmt.Fprintln(w, "\n(hand-over ratio: Slurm's time over ours; the others: ours over Slurm's)")
	printPhases(w, ours.phases)
	printMixedLoss(w, "", ours.mixed)
	printMixedLoss(w, ", simulated driver", ours.mixedSim)
}

func blankIf(b bool, s string) string {
	if b {
		return "—"
	}
	return s
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// stamps reads the `date +%s.%N` stamps in dir whose file names start with
// prefix.
func stamps(dir, prefix string) ([]time.Time, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []time.Time
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		t, err := parseStamp(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		out = append(out, t)
	}
	return out, nil
}

func parseStamp(s string) (time.Time, error) {
	sec, frac, _ := strings.Cut(s, ".")
	secs, err1 := strconv.ParseInt(sec, 10, 64)
	nanos, err2 := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
	if err1 != nil || err2 != nil {
		return time.Time{}, fmt.Errorf("bad stamp %q", s)
	}
	return time.Unix(secs, nanos), nil
}

// handoverFrom is the time from the last end stamp to the first start stamp
// in dir for round i.
func handoverFrom(dir string, i int) (time.Duration, error) {
	lastEnd, firstStart, err := roundStamps(dir, i)
	return firstStart.Sub(lastEnd), err
}

// roundStamps returns the last end stamp and the first start stamp of
// round i in dir.
func roundStamps(dir string, i int) (lastEnd, firstStart time.Time, err error) {
	ends, err := stamps(dir, fmt.Sprintf("end-%d-", i))
	if err != nil {
		return lastEnd, firstStart, err
	}
	starts, err := stamps(dir, fmt.Sprintf("start-%d-", i))
	if err != nil {
		return lastEnd, firstStart, err
	}
	if len(ends) == 0 || len(starts) == 0 {
		return lastEnd, firstStart, fmt.Errorf("round %d: %d end and %d start stamps", i, len(ends), len(starts))
	}
	lastEnd = slices.MaxFunc(ends, func(a, b time.Time) int { return a.Compare(b) })
	firstStart = slices.MinFunc(starts, func(a, b time.Time) int { return a.Compare(b) })
	return lastEnd, firstStart, nil
}

// waitFile waits until path exists and is not empty.
func waitFile(ctx context.Context, path string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if st, err := os.Stat(path); err == nil && st.Size() > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %s", path, d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
