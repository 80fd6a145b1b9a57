package up_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/up"
)

// BenchmarkHistoryInterleaved compares an empty store with one holding
// RM_BENCH_HISTORY (default 100,000) finished jobs in turns that alternate
// between the two, in the order empty, history, history, empty, then again:
// a drift of the machine's speed during the run falls on both alike, which
// two runs one after the other (BenchmarkHistory) cannot promise. Each
// system keeps its data directory and runs only for its own turns, so the
// other's background work never shares the machine with it.
//
// A turn starts the all-in-one (no launcher) on its data, submits 20 jobs
// untimed, then RM_BENCH_JOBS (300) one-worker jobs from 8 clients, timed
// to the last accepted submission and to the last admitted event, then
// times RM_BENCH_HANDOVERS (100) hand-overs on a queue of limit 1, and stops
// the system. A turn starts right after the system has, so it holds what
// a start costs with the history (the outbox relay's sweep of every
// collection). It prints every turn, then the median of each figure over
// the RM_BENCH_ROUNDS (4) rounds of both systems and their ratio (history
// over empty). The jobs of earlier turns stay admitted, on both systems
// alike. RM_BENCH_PROFILE=<prefix> writes a CPU profile of each turn to
// <prefix>.<history>.<round>.
//
// It runs once, whatever -benchtime says:
//
//	go test -run '^$' -bench BenchmarkHistoryInterleaved -benchtime 1x -timeout 60m ./internal/up/
func BenchmarkHistoryInterleaved(b *testing.B) {
	n := historySize(b)
	rounds, jobs, handovers := envInt("RM_BENCH_ROUNDS", 4), envInt("RM_BENCH_JOBS", 300), envInt("RM_BENCH_HANDOVERS", 100)
	dirs := map[int]string{0: b.TempDir(), n: b.TempDir()}
	for _, history := range []int{0, n} {
		sys := startSchedulingIn(b, dirs[history])
		insertHistory(b, sys, history) // and the queue "bench"
		stopSystem(b, sys)
	}
	turns := map[int][]historyTurn{}
	order := []int{0, n, n, 0}
	fmt.Printf("%-6s %-8s %14s %14s %12s %12s\n", "round", "history", "submitted/s", "admitted/s", "hand-over p50", "p99")
	for r := range rounds {
		for _, history := range order[2*(r%2) : 2*(r%2)+2] {
			stop := func() {}
			if p := os.Getenv("RM_BENCH_PROFILE"); p != "" {
				stop = profileCPU(b, fmt.Sprintf("%s.%d.%d", p, history, r+1))
			}
			t := historyTurnOn(b, dirs[history], r, jobs, handovers)
			stop()
			turns[history] = append(turns[history], t)
			fmt.Printf("%-6d %-8d %14.1f %14.1f %12.2fms %10.2fms\n", r+1, history, t.submitted, t.admitted, ms(t.p50), ms(t.p99))
		}
	}
	fmt.Printf("medians of %d rounds: %-26s %10s %10s %8s\n", rounds, "", "empty", fmt.Sprintf("history=%d", n), "ratio")
	ratios := map[string]float64{}
	for _, m := range []struct {
		name string
		of   func(historyTurn) float64
	}{
		{"submissions/s", func(t historyTurn) float64 { return t.submitted }},
		{"admissions/s", func(t historyTurn) float64 { return t.admitted }},
		{"hand-over p50 ms", func(t historyTurn) float64 { return ms(t.p50) }},
		{"hand-over p99 ms", func(t historyTurn) float64 { return ms(t.p99) }},
	} {
		e, h := medianOf(turns[0], m.of), medianOf(turns[n], m.of)
		fmt.Printf("interleaved %-42s %10.2f %10.2f %8.2f\n", m.name, e, h, h/e)
		ratios[m.name] = h / e
	}
	// A parent with a sub-benchmark runs once, whatever -benchtime says.
	b.Run("ratios", func(b *testing.B) {
		for name, r := range ratios {
			b.ReportMetric(r, strings.ReplaceAll(name, " ", "-")+"-ratio")
		}
	})
}

// historyTurn is what one turn measured.
type historyTurn struct {
	submitted, admitted float64 // per second
	p50, p99            time.Duration
}

func historyTurnOn(b *testing.B, dir string, round, jobs, handovers int) historyTurn {
	b.Helper()
	sys := startSchedulingIn(b, dir)
	defer stopSystem(b, sys)
	submitAndAdmit(b, sys, 20) // connections, caches
	var t historyTurn
	t.submitted, t.admitted = submitAndAdmit(b, sys, jobs)
	q := "one-" + strconv.Itoa(round)
	newClient(b, sys.HTTPAddr).createQueue(q, 1)
	nop := func() {}
	lat := handOverLatencies(b, sys, q, handovers, nop, nop, nop)
	slices.Sort(lat)
	t.p50, t.p99 = percentile(lat, 0.50), percentile(lat, 0.99)
	return t
}

// submitAndAdmit submits n one-worker jobs to queue "bench" from 8 clients
// and returns the submissions per second to the last accepted one and the
// admissions per second to the last admitted event.
func submitAndAdmit(b *testing.B, sys *up.System, n int) (submitted, admitted float64) {
	b.Helper()
	c := newClient(b, sys.HTTPAddr)
	w := watchAdmittedOn(b, sys.NATSURL, "")
	defer w.nc.Close()
	body := submitBody("bench", 1)
	next := make(chan struct{}, n)
	for range n {
		next <- struct{}{}
	}
	close(next)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	start := time.Now()
	for range 8 {
		wg.Go(func() {
			hc := &http.Client{Timeout: 30 * time.Second}
			for range next {
				resp, err := hc.Post(c.base+jobsPath, "application/json", bytes.NewReader(body))
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode != http.StatusCreated {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					mu.Lock()
					failed = append(failed, err.Error())
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	sent := time.Since(start)
	if len(failed) > 0 {
		b.Fatalf("%d of %d submissions failed, the first: %s", len(failed), n, failed[0])
	}
	last := w.await(b, n)
	return float64(n) / sent.Seconds(), float64(n) / last.Sub(start).Seconds()
}

// profileCPU starts a CPU profile into file path and returns its stop.
func profileCPU(b *testing.B, path string) (stop func()) {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Error(err)
		}
	}
}

func stopSystem(b *testing.B, sys *up.System) {
	b.Helper()
	sys.Stop()
	if err := sys.Wait(); err != nil {
		b.Errorf("stop: %v", err)
	}
}

func medianOf(turns []historyTurn, of func(historyTurn) float64) float64 {
	v := make([]float64, len(turns))
	for i, t := range turns {
		v[i] = of(t)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
