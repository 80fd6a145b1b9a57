package scheduler

import (
	"fmt"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/scheduler/internal/lease"
	"github.com/google/go-cmp/cmp"
)

// TestEstimateStarts checks the forward simulation on small worked cases:
// gang sizes, the queue limit, backfill, the starvation guard and what the
// estimate rests on.
func TestEstimateStarts(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	secs := func(n int) *int { return &n }
	queues := func(starvation *int) map[string]*events.Queue {
		limit := 10
		return map[string]*events.Queue{
			"q-d":   {Meta: events.Meta{ID: "q-d"}, Name: "Default", MaximumAllowedWorkerInstances: &limit, Scheduling: events.QueueScheduling{StarvationSeconds: starvation}},
			"q-ctl": {Meta: events.Meta{ID: "q-ctl"}, Name: events.ControllerQueue},
		}
	}
	running := func(id string, workers int, maxRun *int) *events.Job {
		return &events.Job{Meta: events.Meta{ID: id}, QueueID: "q-d", Status: events.JobRunning, WorkerInstances: workers,
			SubmittedAt: t0.Add(-time.Hour), StartedAt: &t0, MaxRunSeconds: maxRun}
	}
	pending := func(id string, workers int, submitted time.Duration, maxRun *int) *events.Job {
		return &events.Job{Meta: events.Meta{ID: id}, QueueID: "q-d", Status: events.JobPending, WorkerInstances: workers,
			SubmittedAt: t0.Add(submitted), MaxRunSeconds: maxRun}
	}
	at := func(s int) string { return t0.Add(time.Duration(s) * time.Second).Format(time.RFC3339) }
	type est struct {
		ID       string
		Position int
		Start    string
		Basis    string
	}
	cases := map[string]struct {
		starvation  *int
		jobs        []*events.Job
		median      map[string]time.Duration // by job id: what the history says
		startLag    time.Duration            // admitted to running
		endLag      time.Duration            // past max_run_seconds to released
		maxParallel map[string]int           // by array id
		want        []est
	}{
		"the seed's example: the 8-worker job starts when the 10-worker job's max_run_seconds ends": {
			jobs: []*events.Job{running("j1", 10, secs(60)), pending("j2", 8, time.Second, nil)},
			want: []est{{"j2", 1, at(60), events.BasisMaxRunSeconds}},
		},
		"gang-aware: a gang waits for enough to free, a small job backfills the first gap": {
			starvation: secs(0),
			jobs: []*events.Job{running("a", 5, secs(10)), running("b", 5, secs(20)),
				pending("c", 8, 0, secs(30)), pending("d", 2, time.Second, secs(5))},
			want: []est{{"c", 1, at(20), events.BasisMaxRunSeconds}, {"d", 2, at(10), events.BasisMaxRunSeconds}},
		},
		"the starvation guard keeps the small job behind the starving gang": {
			starvation: secs(5),
			jobs: []*events.Job{running("a", 5, secs(10)), running("b", 5, secs(20)),
				pending("c", 8, -time.Minute, secs(30)), pending("d", 2, time.Second, secs(5))},
			want: []est{{"c", 1, at(20), events.BasisMaxRunSeconds}, {"d", 2, at(20), events.BasisMaxRunSeconds}}, // not at 10: held back
		},
		"a running job with no known run time: unknown for whoever needs its capacity": {
			jobs: []*events.Job{running("a", 10, nil), pending("b", 1, 0, secs(5))},
			want: []est{{"b", 1, "", events.BasisUnknown}},
		},
		"the median run time of the application's last jobs, when the job sets no limit": {
			jobs:   []*events.Job{running("a", 10, nil), pending("b", 4, 0, nil)},
			median: map[string]time.Duration{"a": 42 * time.Second},
			want:   []est{{"b", 1, at(42), events.BasisMedianRunTime}},
		},
		"the queue's lags: each job holds its capacity from admission to release": {
			jobs:     []*events.Job{running("j1", 10, secs(60)), pending("j2", 10, 0, secs(30)), pending("j3", 10, time.Second, secs(30))},
			startLag: time.Second, endLag: 2 * time.Second,
			want: []est{{"j2", 1, at(62), events.BasisMaxRunSeconds}, {"j3", 2, at(62 + 1 + 30 + 2), events.BasisMaxRunSeconds}},
		},
		"priority first: the later, higher-priority job is position 1": {
			jobs: []*events.Job{running("a", 10, secs(10)), pending("low", 10, 0, secs(10)),
				func() *events.Job { j := pending("high", 10, time.Minute, secs(10)); j.Priority = 5; return j }()},
			want: []est{{"high", 1, at(10), events.BasisMaxRunSeconds}, {"low", 2, at(20), events.BasisMaxRunSeconds}},
		},
		"a job held by its dependency keeps its place in the queue, with no estimate": {
			jobs: []*events.Job{running("a", 10, secs(10)), pending("x", 10, 0, secs(10)),
				func() *events.Job {
					j := pending("d", 1, time.Second, secs(10))
					j.DependsOn = []events.JobDependency{{JobID: "x", Condition: events.DependencySucceeded}}
					return j
				}(), pending("low", 1, 2*time.Second, secs(5))},
			want: []est{{"x", 1, at(10), events.BasisMaxRunSeconds}, {"d", 2, "", events.BasisUnknown}, {"low", 3, at(20), events.BasisMaxRunSeconds}},
		},
		"an array's jobs beyond max_parallel start as its jobs end, not in the free capacity": {
			jobs: []*events.Job{running("a", 5, secs(60)),
				func() *events.Job { j := pending("r0", 1, 0, secs(10)); j.ArrayID = "arr"; return j }(),
				func() *events.Job { j := pending("r1", 1, time.Millisecond, secs(10)); j.ArrayID = "arr"; return j }(),
				func() *events.Job { j := pending("r2", 1, 2*time.Millisecond, secs(10)); j.ArrayID = "arr"; return j }()},
			maxParallel: map[string]int{"arr": 2},
			want:        []est{{"r0", 1, at(0), events.BasisFreeCapacity}, {"r1", 2, at(0), events.BasisFreeCapacity}, {"r2", 3, at(10), events.BasisMaxRunSeconds}},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			jobs := map[string]*events.Job{}
			ledger := lease.Ledger{Leases: map[string][]lease.Claim{}}
			for _, j := range tc.jobs {
				jobs[j.ID] = j
				if j.Status == events.JobRunning {
					ledger.Leases[j.ID] = []lease.Claim{{Queue: "q-d", Count: j.WorkerInstances}, {Queue: "q-ctl", Count: 1}}
				}
			}
			runTime := func(j *events.Job) (time.Duration, string, bool) {
				if j.MaxRunSeconds != nil {
					return time.Duration(*j.MaxRunSeconds) * time.Second, events.BasisMaxRunSeconds, true
				}
				if d, ok := tc.median[j.ID]; ok {
					return d, events.BasisMedianRunTime, true
				}
				return 0, events.BasisUnknown, false
			}
			var got []est
			for _, e := range estimateStarts(ledger, queues(tc.starvation), jobs, t0, runTime, func(string) (time.Duration, time.Duration) { return tc.startLag, tc.endLag }, tc.maxParallel)["q-d"] {
				g := est{ID: e.jobID, Position: e.position, Basis: e.basis}
				if e.start != nil {
					g.Start = e.start.Format(time.RFC3339)
				}
				got = append(got, g)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("estimateStarts() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestEstimateBasisIsTheQueuesOwn: a job's estimate_basis is that of the
// leases whose end it waits for, not of leases ending earlier on another
// queue (before, a median run time on queue "other" made the basis of
// every later estimate on "Default" median_run_time).
func TestEstimateBasisIsTheQueuesOwn(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	queues := limitedQueues(4)
	four := 4
	queues["q-o"] = &events.Queue{Meta: events.Meta{ID: "q-o"}, Name: "other", MaximumAllowedWorkerInstances: &four}
	ten, five := 10, 5
	jobs := map[string]*events.Job{
		"run-d": {Meta: events.Meta{ID: "run-d"}, QueueID: "q-d", Status: events.JobRunning, WorkerInstances: 4, StartedAt: &t0, MaxRunSeconds: &ten},
		"run-o": {Meta: events.Meta{ID: "run-o"}, QueueID: "q-o", Status: events.JobRunning, WorkerInstances: 4, StartedAt: &t0},
		"wait-d": {Meta: events.Meta{ID: "wait-d"}, QueueID: "q-d", Status: events.JobPending, WorkerInstances: 4,
			SubmittedAt: t0, MaxRunSeconds: &five},
	}
	ledger := lease.Ledger{Leases: map[string][]lease.Claim{}}
	for _, id := range []string{"run-d", "run-o"} {
		ledger.Leases[id] = []lease.Claim{{Queue: jobs[id].QueueID, Count: 4}, {Queue: "q-ctl", Count: 1}}
	}
	runTime := func(j *events.Job) (time.Duration, string, bool) {
		if j.MaxRunSeconds != nil {
			return time.Duration(*j.MaxRunSeconds) * time.Second, events.BasisMaxRunSeconds, true
		}
		return 3 * time.Second, events.BasisMedianRunTime, true // run-o: ends first, elsewhere
	}
	got := estimateStarts(ledger, queues, jobs, t0, runTime, func(string) (time.Duration, time.Duration) { return 0, 0 }, nil)["q-d"]
	if len(got) != 1 || got[0].start == nil || !got[0].start.Equal(t0.Add(10*time.Second)) || got[0].basis != events.BasisMaxRunSeconds {
		t.Fatalf("estimate of wait-d = %+v, want start at +10s from max_run_seconds", got)
	}
}

func TestRunHistoryMedianOfLast20(t *testing.T) {
	var h runHistory
	for i := range 30 {
		h.add(string(rune('a'+i)), time.Duration(i)*time.Second)
	}
	h.add("z"+"", 0) // a duplicate id of an earlier run is not counted twice
	if m, _ := h.median(); len(h.runs) != historyRuns || m < 19*time.Second || m > 21*time.Second {
		t.Errorf("median of the last 20 of 0..29 s = %s over %d runs; want 19.5 s over 20", m, len(h.runs))
	}
}

// The snapshots' writes hold the store at most a hundredth of the time,
// their computation the loop a tenth, and a slow store does not stop the
// snapshots for long.
func TestEstimateSpacing(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct{ computed, wrote, want time.Duration }{
		{1 * ms, 1 * ms, estimateEvery},                 // a few jobs: every 500 ms
		{20 * ms, 2 * ms, estimateEvery},                // a hundred jobs (12 KB)
		{20 * ms, 7 * ms, 700 * ms},                     // 900 jobs: 110 KB written, a hundred times that
		{80 * ms, 7 * ms, 800 * ms},                     // the computation dominates
		{100 * ms, 2 * time.Second, maxEstimateSpacing}, // a store that takes seconds
		{5 * time.Second, 0, 50 * time.Second},          // nothing written: the computation alone
	} {
		if got := estimateSpacing(c.computed, c.wrote); got != c.want {
			t.Errorf("computed %v, wrote %v: next in %v, want %v", c.computed, c.wrote, got, c.want)
		}
	}
}

// BenchmarkEstimateStarts is one estimate of the 1,000-job load's queue at
// its fullest: the limit of 100 workers held by running jobs and the other
// 886 jobs waiting, of 1–20 workers each, every run time known. The simulation decides the waiting
// jobs again at each of the hundreds of instants a lease ends.
func BenchmarkEstimateStarts(b *testing.B) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const limit = 100
	queues := limitedQueues(limit)
	jobs := map[string]*events.Job{}
	ledger := lease.Ledger{Leases: map[string][]lease.Claim{}}
	held := 0
	for i := range 900 {
		id := fmt.Sprintf("job-%04d", i)
		j := &events.Job{Meta: events.Meta{ID: id}, QueueID: "q-d", Status: events.JobPending,
			WorkerInstances: 1 + i*7%20, SubmittedAt: t0.Add(time.Duration(i) * time.Millisecond)}
		if held+j.WorkerInstances <= limit && i < 100 {
			held += j.WorkerInstances
			j.Status, j.StartedAt = events.JobRunning, &t0
			ledger.Leases[id] = []lease.Claim{{Queue: "q-d", Count: j.WorkerInstances}, {Queue: "q-ctl", Count: 1}}
		}
		jobs[id] = j
	}
	runTime := func(*events.Job) (time.Duration, string, bool) {
		return 500 * time.Millisecond, events.BasisMedianRunTime, true
	}
	lags := func(string) (time.Duration, time.Duration) { return 5 * time.Millisecond, 5 * time.Millisecond }
	var placed int
	for b.Loop() {
		placed = len(estimateStarts(ledger, queues, jobs, t0, runTime, lags, nil)["q-d"])
	}
	b.ReportMetric(float64(placed), "waiting")
}
