package local

import (
	"os"
	"strconv"
	"syscall"
	"testing"
)

// BenchmarkSignalStrays is one pass of signalStrays over this machine's
// /proc for an instance no process belongs to (so it signals nothing):
// what a batch of ended instances costs strayLoop. It reports the
// processes a pass read (procs/pass), which the cost grows with.
func BenchmarkSignalStrays(b *testing.B) {
	dir := b.TempDir() // no process carries it
	procs := 0
	for b.Loop() {
		signalStrays(strayKill{dir: dir, sig: syscall.SIGKILL})
	}
	b.StopTimer()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			procs++
		}
	}
	b.ReportMetric(float64(procs), "procs/pass")
}
