package main

import (
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
