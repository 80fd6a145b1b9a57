package admit

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// BenchmarkStarvationGuardCost replays bench-compare's mixed workload through
// Admit on a virtual clock and reports its utilization with the starvation
// guard off, at its default (300 s) and at shorter limits: what the policy
// itself costs, free of the machine's load and of the control plane's
// latencies (an admission happens the instant capacity frees). 300 jobs of
// 1..20 workers (the same seeded sizes as tools/benchcompare) are submitted
// at t=0 in order, each holds its workers 1 s, on a queue limited to 100 with
// backfill. It takes milliseconds.
//
//	go test -run '^$' -bench BenchmarkStarvationGuardCost -benchtime 1x ./internal/admit/
func BenchmarkStarvationGuardCost(b *testing.B) {
	rng := rand.New(rand.NewPCG(42, 42))
	sizes := make([]int, 300)
	for i := range sizes {
		sizes[i] = 1 + rng.IntN(20)
	}
	for _, guard := range []time.Duration{0, 300 * time.Second, 10 * time.Second, 3 * time.Second, time.Second} {
		b.Run(fmt.Sprintf("starvation=%s", guard), func(b *testing.B) {
			var util float64
			var held int
			for b.Loop() {
				util, held = simulateMixed(sizes, 100, time.Second, guard)
			}
			b.ReportMetric(100*util, "%utilization")
			b.ReportMetric(float64(held), "passes-held-back")
		})
	}
}

// simulateMixed admits the jobs of sizes (submitted at t=0, in order) on a
// queue of limit with backfill and the starvation guard, each holding its
// workers for hold, deciding again at every instant capacity frees. It
// returns Σ workers·hold / (limit · makespan) and the number of passes in
// which the guard held a job back.
func simulateMixed(sizes []int, limit int, hold, guard time.Duration) (utilization float64, heldPasses int) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pending := make([]Request, len(sizes))
	total := 0
	for i, n := range sizes {
		pending[i] = Request{ID: fmt.Sprintf("job-%04d", i), Claims: []Claim{{Queue: "q", Count: n}}, SubmittedAt: t0.Add(time.Duration(i))}
		total += n
	}
	type lease struct {
		end time.Time
		n   int
	}
	var running []lease
	now, allocated := t0, 0
	for len(pending) > 0 {
		snap := Snapshot{Now: now, Queues: map[string]Queue{"q": {Limit: &limit, Allocated: allocated, Backfill: true, Starvation: guard}}}
		var still []Request
		held := false
		for i, d := range Admit(snap, pending) {
			switch {
			case d.Admit:
				running = append(running, lease{end: now.Add(hold), n: pending[i].Claims[0].Count})
				allocated += pending[i].Claims[0].Count
			default:
				held = held || d.Reason == ReasonBlockedByStarvingJob
				still = append(still, pending[i])
			}
		}
		if held {
			heldPasses++
		}
		pending = still
		if len(running) == 0 {
			break // nothing can ever free: a job larger than the limit
		}
		// Advance to the next end and release every lease ending then.
		slices.SortFunc(running, func(a, b lease) int { return a.end.Compare(b.end) })
		now = running[0].end
		for len(running) > 0 && !running[0].end.After(now) {
			allocated -= running[0].n
			running = running[1:]
		}
	}
	makespan := now.Sub(t0)
	for _, l := range running {
		makespan = max(makespan, l.end.Sub(t0))
	}
	return float64(total) * hold.Seconds() / (float64(limit) * makespan.Seconds()), heldPasses
}
