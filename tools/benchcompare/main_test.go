package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHandoverFromStamps(t *testing.T) {
	dir := t.TempDir()
	write := func(name, stamp string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(stamp+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Round 0: the last of three end stamps and the first of two start stamps.
	write("end-0-worker-0", "1700000000.900000000")
	write("end-0-worker-1", "1700000001.000000000")
	write("end-0-controller-0", "1700000000.5")
	write("start-0-worker-0", "1700000001.012500000")
	write("start-0-controller-0", "1700000001.030000000")
	// Round 1 must not leak into round 0.
	write("end-1-worker-0", "1700000005.000000000")
	got, err := handoverFrom(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := 12500 * time.Microsecond; got != want {
		t.Errorf("handoverFrom() = %s, want %s", got, want)
	}
	if _, err := handoverFrom(dir, 1); err == nil {
		t.Error("round 1 has no start stamp: want an error")
	}
	write("start-2-worker-0", "not a stamp")
	write("end-2-worker-0", "1700000005.000000000")
	if _, err := handoverFrom(dir, 2); err == nil {
		t.Error("a malformed stamp: want an error")
	}
}

func TestUtilization(t *testing.T) {
	// 250 worker-seconds of work on a limit of 100 over 5 s: half the capacity.
	if got := utilization([]int{100, 100, 50}, 100, time.Second, 5*time.Second); got != 0.5 {
		t.Errorf("utilization() = %v, want 0.5", got)
	}
}

func TestMixedSizesAreSeededAndInRange(t *testing.T) {
	a, b := mixedSizes(300), mixedSizes(300)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("size %d differs between calls: %d vs %d", i, a[i], b[i])
		}
		if a[i] < 1 || a[i] > 20 {
			t.Fatalf("size %d = %d, want 1..20", i, a[i])
		}
	}
}

func TestHeldJobStopsTheWait(t *testing.T) {
	job, reason, ok := heldJob("641|None\n643|launch failed requeued held\n644|Resources\n")
	if !ok || job != "643" || reason != "launch failed requeued held" {
		t.Errorf("heldJob = %q, %q, %v; want 643 held", job, reason, ok)
	}
	if _, _, ok := heldJob("641|None\n644|Resources\n"); ok {
		t.Error("a queue with no held job reported held")
	}
}

func TestPrintPhasesNamesTheSlowestRounds(t *testing.T) {
	ms := time.Millisecond
	ps := []handoverPhases{
		{admit: 5 * ms, spawn: 4 * ms, script: 3 * ms},           // 12
		{admit: 30 * ms, spawn: 4 * ms, script: 3 * ms},          // 37
		{exit: ms, admit: 6 * ms, spawn: 4 * ms, script: 3 * ms}, // 14
		{admit: 5 * ms, spawn: 20 * ms, script: 3 * ms},          // 28
	}
	var b strings.Builder
	printPhases(&b, ps)
	want := "slowest rounds (total: exit, record, admit, spawn, script, ms): " +
		"37.0: 0.0, 0.0, 30.0, 4.0, 3.0; 28.0: 0.0, 0.0, 5.0, 20.0, 3.0; 14.0: 1.0, 0.0, 6.0, 4.0, 3.0;\n"
	if !strings.HasSuffix(b.String(), want) {
		t.Errorf("printPhases wrote\n%s\nwant it to end with\n%s", b.String(), want)
	}
	if !strings.Contains(b.String(), " admit 6.0 / 30.0;") {
		t.Errorf("printPhases lost the phases' median and maximum:\n%s", b.String())
	}
}

func TestSplitMixedAccountsForEveryWorkerSecond(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	jobs := []mixedJob{
		// Admitted at once, its workers start over 0.1 s, run 1.1 s, final 0.1 s later.
		{workers: 6, submitted: at(0), admitted: at(0.1), firstStart: at(0.11), lastStart: at(0.2), lastEnd: at(1.3), finished: at(1.4)},
		// Waits: 4 free of 10 while the first runs.
		{workers: 6, submitted: at(0), admitted: at(1.5), firstStart: at(1.5), lastStart: at(1.5), lastEnd: at(2.5), finished: at(2.5)},
	}
	got := splitMixed(jobs, 10, time.Second, at(0), at(2.5))
	// Limit × makespan: 25 worker-seconds.
	want := mixedLoss{
		work:      12.0 / 25,        // 2 × 6 workers × 1 s
		starting:  6 * 0.1 / 25,     // the first job: admitted → last start
		running:   6 * 0.1 / 25,     // its last instance ran 1.1 s
		ending:    6 * 0.1 / 25,     // its last end → final
		fitIdle:   (1.0 + 1.0) / 25, // 10 free for 0.1 s before the first admission and between the jobs
		packIdle:  4 * 1.3 / 25,     // 4 free while the 6-worker job waits
		emptyIdle: 4 * 1.0 / 25,     // 4 free while the second runs and nothing waits
	}
	fields := []struct {
		name      string
		got, want float64
	}{
		{"work", got.work, want.work}, {"starting", got.starting, want.starting}, {"running", got.running, want.running},
		{"ending", got.ending, want.ending}, {"fitIdle", got.fitIdle, want.fitIdle}, {"packIdle", got.packIdle, want.packIdle},
		{"emptyIdle", got.emptyIdle, want.emptyIdle},
	}
	sum := 0.0
	for _, f := range fields {
		sum += f.got
		if math.Abs(f.got-f.want) > 1e-9 {
			t.Errorf("%s = %.4f, want %.4f", f.name, f.got, f.want)
		}
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Errorf("the shares add up to %.4f, want 1", sum)
	}
}

func TestOptionsRefuseWhatWouldPanicOrHang(t *testing.T) {
	ok := options{jobs: 2000, clients: 4, handovers: 20, mixed: 300}
	if err := ok.check(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	for name, o := range map[string]options{
		"negative jobs":     {jobs: -1, clients: 4},
		"negative mixed":    {mixed: -1, clients: 4},
		"negative handover": {handovers: -3, clients: 4},
		"no client":         {jobs: 10},
		"unknown system":    {clients: 4, only: "pbs"},
	} {
		if err := o.check(); err == nil {
			t.Errorf("%s: check() accepted %+v", name, o)
		}
	}
}
