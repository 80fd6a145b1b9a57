package up_test

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
)

// BenchmarkLauncherLoad runs 1,000 jobs of 1 to 20 workers through the whole
// all-in-one (API, scheduler, launcher with the simulated driver, events)
// and reports the throughput and the hand-over latency: from a job's end
// (finished_at, its last instance's end) to the admission of a job that was
// waiting for its capacity (admitted_at); and, as it was measured until
// 2026-12-07, when finished_at was the time of the job's final write, from
// that write. It takes minutes, so it is a benchmark: plain
// `go test` never runs it. It runs the load once whatever b.N is:
//
//	go test -run '^$' -bench BenchmarkLauncherLoad -benchtime 1x -v -timeout 30m ./cmd/avxrm/internal/up/
//
// RM_LOAD_JOBS, RM_LOAD_LIMIT, RM_LOAD_RUN_SECONDS and RM_LOAD_MAX_WORKERS
// (20; 1 makes every job a single worker, the trivial workload) change the
// size; RM_LOAD_STARVATION_SECONDS sets the queue's starvation guard (unset:
// the default).
func BenchmarkLauncherLoad(b *testing.B) {
	runLauncherLoad(b)
}

func runLauncherLoad(t testing.TB) {
	jobs, limit, runSeconds := envInt("RM_LOAD_JOBS", 1000), envInt("RM_LOAD_LIMIT", 100), envFloat("RM_LOAD_RUN_SECONDS", 0.5)
	sys := startSystemIn(t, t.TempDir())
	c := newClient(t, sys.HTTPAddr)
	c.must(http.MethodPost, "/api/resources/v1/plugins", map[string]any{
		"name": "sim", "type": "simulated", "config": map[string]any{"run_seconds": runSeconds}, "is_default": true,
	}, http.StatusCreated, nil)
	q := map[string]any{"name": "load", "maximum_allowed_worker_instances": limit}
	if v, ok := os.LookupEnv("RM_LOAD_STARVATION_SECONDS"); ok { // unset: the default guard (300 s)
		var n int
		if _, err := fmt.Sscan(v, &n); err != nil {
			t.Fatalf("RM_LOAD_STARVATION_SECONDS=%q: %v", v, err)
		}
		q["scheduling"] = map[string]any{"starvation_seconds": n}
	}
	c.must(http.MethodPost, "/api/resources/v1/queues", q, http.StatusCreated, nil)

	// The end is seen in the final events, not by asking the store: a
	// count every 200 ms made FerretDB decode every job stored so far, a
	// third of the CPU by the end, and slowed the system it measured.
	nc, err := nats.Connect(sys.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	finals := make(chan string, 2*jobs)
	sub, err := nc.Subscribe(events.FilterSubject(events.KindJob, "", ""), func(m *nats.Msg) {
		switch m.Header.Get("ce-type") {
		case events.TypeJobSucceeded, events.TypeJobFailed, events.TypeJobCancelled:
			finals <- m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	writesBefore, _ := sys.StoreWriteStats()
	cpuBefore, eventsBefore := cpuTime(), streamMsgs(t, sys)
	rng := rand.New(rand.NewPCG(42, 42))
	sizes := make([]int, jobs)
	workers := 0
	for i := range sizes {
		sizes[i] = 1 + rng.IntN(envInt("RM_LOAD_MAX_WORKERS", 20))
		workers += sizes[i]
	}
	start := time.Now()
	var wg sync.WaitGroup
	next := make(chan int)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				var j events.Job
				c.must(http.MethodPost, jobsPath, map[string]any{
					"queue_id": "load", "worker_instances": sizes[i],
					"application": map[string]any{"name": "sim", "version": "1", "image": "sim"},
				}, http.StatusCreated, &j)
			}
		}()
	}
	for i := range jobs {
		next <- i
	}
	close(next)
	wg.Wait()
	submitted := time.Since(start)

	ctx := context.Background()
	coll := sys.DB.Collection("jobs")
	timeout := time.After(time.Duration(envInt("RM_LOAD_TIMEOUT_SECONDS", 1800)) * time.Second)
	for final := map[string]bool{}; len(final) < jobs; {
		select {
		case id := <-finals:
			final[id] = true // an event may come twice
		case <-timeout:
			n, err := coll.CountDocuments(ctx, bson.D{{Key: "status", Value: bson.D{{Key: "$in", Value: bson.A{"succeeded", "failed", "cancelled"}}}}})
			var stuck []events.Job
			if cur, err := coll.Find(ctx, bson.D{{Key: "status", Value: bson.D{{Key: "$nin", Value: bson.A{"succeeded", "failed", "cancelled"}}}}}); err == nil {
				_ = cur.All(ctx, &stuck)
			}
			for i, j := range stuck {
				if i < 5 {
					t.Logf("not final: %s %s v%d workers %d conditions %+v instances %+v", j.ID, j.Status, j.Version, j.WorkerInstances, j.Conditions, j.Instances)
				}
			}
			t.Logf("ledger: %+v", readLedger(t, sys.DB))
			t.Fatalf("%d final events of %d jobs after %s; the store counts %d final (%v)", len(final), jobs, time.Since(start), n, err)
		}
	}
	elapsed := time.Since(start)
	cpu, evs := cpuTime()-cpuBefore, streamMsgs(t, sys)-eventsBefore

	var docs []events.Job
	cur, err := coll.Find(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cur.All(ctx, &docs); err != nil {
		t.Fatal(err)
	}
	statuses := map[string]int{}
	type end struct {
		at time.Time
		id string
	}
	var finishes []end
	var toStart, toFinish []time.Duration
	var versions int64
	for _, j := range docs {
		versions += j.Version
		if j.AdmittedAt != nil && j.StartedAt != nil && j.FinishedAt != nil {
			toStart = append(toStart, j.StartedAt.Sub(*j.AdmittedAt))
			toFinish = append(toFinish, j.FinishedAt.Sub(*j.StartedAt))
		}
		statuses[j.Status]++
		if j.FinishedAt != nil {
			finishes = append(finishes, end{*j.FinishedAt, j.ID})
		}
		// Instance records are in job_instances or, for a job of few, in the
		// job itself (jobdoc.InlineMax); the job counts them.
		n := 0
		for _, byStatus := range j.InstanceCounts {
			for _, c := range byStatus {
				n += c
			}
		}
		if n != j.WorkerInstances+1 {
			t.Errorf("job %s: %d instance records, want %d", j.ID, n, j.WorkerInstances+1)
		}
	}
	slices.SortFunc(finishes, func(a, b end) int { return a.at.Compare(b.at) })
	lastBefore := func(ends []end, at time.Time) (end, bool) {
		i := sort.Search(len(ends), func(i int) bool { return !ends[i].at.Before(at) })
		if i == 0 {
			return end{}, false
		}
		return ends[i-1], true
	}
	// Hand-over: a job that waited (it has a pending event) is admitted
	// some time after the last job end before its admission, which is what
	// freed its capacity. The stream's own times split it: when the ending
	// job's final event was stored, and when the waiter's admitted event was.
	st := readStreamTimes(t, sys.JS)
	var writes []end
	for id, at := range st.written {
		writes = append(writes, end{at, id})
	}
	slices.SortFunc(writes, func(a, b end) int { return a.at.Compare(b.at) })
	var handovers, later []time.Duration // later: admitted after the last submission
	var fromWrite []time.Duration        // from the last final write before the admission
	var toFinal, toAdmitted, toAdmittedEvent []time.Duration
	var rounds []handOver
	submittedAt := start.Add(submitted)
	for _, j := range docs {
		if j.AdmittedAt == nil || !st.waited[j.ID] {
			continue
		}
		freed, ok := lastBefore(finishes, *j.AdmittedAt)
		if !ok {
			continue
		}
		if w, ok := lastBefore(writes, *j.AdmittedAt); ok {
			fromWrite = append(fromWrite, j.AdmittedAt.Sub(w.at))
		}
		h := handOver{waiter: j.ID, freed: freed.id, total: j.AdmittedAt.Sub(freed.at), at: j.AdmittedAt.Sub(start)}
		handovers = append(handovers, h.total)
		if j.AdmittedAt.After(submittedAt) {
			later = append(later, h.total)
		}
		if stored, ok := st.final[freed.id]; ok {
			h.toFinal, h.toAdmitted = stored.Sub(freed.at), j.AdmittedAt.Sub(stored)
			toFinal = append(toFinal, h.toFinal)
			toAdmitted = append(toAdmitted, h.toAdmitted)
		}
		if stored, ok := st.admitted[j.ID]; ok {
			h.toAdmittedEvent = stored.Sub(*j.AdmittedAt)
			toAdmittedEvent = append(toAdmittedEvent, h.toAdmittedEvent)
		}
		rounds = append(rounds, h)
	}
	pctOf := func(ds []time.Duration, p float64) time.Duration {
		if len(ds) == 0 {
			return 0
		}
		ds = slices.Clone(ds)
		slices.Sort(ds)
		return percentile(ds, p).Round(time.Millisecond)
	}
	pct := func(p float64) time.Duration { return pctOf(handovers, p) }
	if statuses[events.JobSucceeded] != jobs {
		t.Errorf("statuses %v, want all %d succeeded", statuses, jobs)
	}
	fmt.Printf("launcher load: %d jobs (%d workers + %d controllers), queue limit %d, simulated run_seconds %.2f\n",
		jobs, workers, jobs, limit, runSeconds)
	fmt.Printf("  submitted in %s; all final after %s; statuses %v\n", submitted.Round(time.Millisecond), elapsed.Round(time.Millisecond), statuses)
	fmt.Printf("  throughput %.1f jobs/s (%.0f instances/s)\n", float64(jobs)/elapsed.Seconds(), float64(workers+jobs)/elapsed.Seconds())
	fmt.Printf("  utilization of the limit (workers x run_seconds / (limit x first submission to last final)): %.0f%%\n",
		100*float64(workers)*runSeconds/(float64(limit)*elapsed.Seconds()))
	fmt.Printf("  hand-over latency (job end -> waiting job admitted), %d hand-overs: p50 %s, p99 %s, max %s\n",
		len(handovers), pct(0.50), pct(0.99), pct(1))
	fmt.Printf("    of them after the last submission, %d: p50 %s, p99 %s\n", len(later), pctOf(later, 0.50), pctOf(later, 0.99))
	fmt.Printf("    from the last final write before the admission instead (the figure until 2026-12-07, when finished_at was that write's time), %d: p50 %s, p99 %s, max %s\n",
		len(fromWrite), pctOf(fromWrite, 0.50), pctOf(fromWrite, 0.99), pctOf(fromWrite, 1))
	fmt.Printf("    by part (finished_at and admitted_at are whole ms): job end -> its final event stored p50 %s, p99 %s; -> admitted_at p50 %s, p99 %s\n",
		pctOf(toFinal, 0.50), pctOf(toFinal, 0.99), pctOf(toAdmitted, 0.50), pctOf(toAdmitted, 0.99))
	fmt.Printf("    and after it, admitted_at -> the admitted event stored (the launcher starts from it) p50 %s, p99 %s\n",
		pctOf(toAdmittedEvent, 0.50), pctOf(toAdmittedEvent, 0.99))
	printSlowestHandOvers(rounds, 5)
	fmt.Printf("  job document writes per job (mean version): %.1f\n", float64(versions)/float64(len(docs)))
	if w, ok := sys.StoreWriteStats(); ok {
		n := w.Commands - writesBefore.Commands
		fmt.Printf("  store write commands per job (all collections): %.1f, write lock held %.2f ms per write\n",
			float64(n)/float64(jobs), float64(w.HeldPerWrite(writesBefore).Microseconds())/1000)
		fmt.Printf("    of them written in SQL by the proxy %.1f per job, %.1f per commit; finds answered in SQL %.1f per job\n",
			float64(w.DirectWrites-writesBefore.DirectWrites)/float64(jobs),
			float64(w.DirectWrites-writesBefore.DirectWrites)/float64(max(w.DirectCommits-writesBefore.DirectCommits, 1)),
			float64(w.DirectFinds-writesBefore.DirectFinds)/float64(jobs))
	}
	fmt.Printf("  events per job %.1f; CPU of the whole process (all-in-one and this benchmark) %.2f ms per job\n",
		float64(evs)/float64(jobs), float64(cpu.Microseconds())/1000/float64(jobs))
	fmt.Printf("  admitted -> running p50 %s p99 %s; running -> final p50 %s p99 %s\n",
		pctOf(toStart, 0.5), pctOf(toStart, 0.99), pctOf(toFinish, 0.5), pctOf(toFinish, 0.99))
}

// handOver is one waiting job's admission after the job end before it,
// split by the stream's times as the load's summary is.
type handOver struct {
	waiter, freed string
	at            time.Duration // admitted_at, from the first submission
	total         time.Duration // the freed job's finished_at -> the waiter's admitted_at
	// the freed job's end -> its final event stored -> the waiter's admitted_at
	// -> its admitted event stored; zero when the stream lacks the event
	toFinal, toAdmitted, toAdmittedEvent time.Duration
}

// printSlowestHandOvers prints the n slowest hand-overs, each with its
// parts and how many waiters the same job end let in, since the p99 of a
// load is a handful of them and a percentile alone cannot tell one stall
// from several.
func printSlowestHandOvers(rounds []handOver, n int) {
	byFreed := map[string]int{}
	for _, h := range rounds {
		byFreed[h.freed]++
	}
	rounds = slices.Clone(rounds)
	slices.SortFunc(rounds, func(a, b handOver) int { return cmp.Compare(b.total, a.total) })
	for i, h := range rounds[:min(n, len(rounds))] {
		fmt.Printf("    slowest %d: %.1f ms at %s (waiter %s, one of %d let in by the end of %s): end -> final event stored %.1f, -> admitted_at %.1f, -> admitted event stored %.1f ms\n",
			i+1, ms(h.total), h.at.Round(time.Millisecond), h.waiter, byFreed[h.freed], h.freed, ms(h.toFinal), ms(h.toAdmitted), ms(h.toAdmittedEvent))
	}
}

// cpuTime is the CPU time (user + system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func envInt(k string, def int) int {
	var n int
	if _, err := fmt.Sscan(os.Getenv(k), &n); err != nil || n <= 0 {
		return def
	}
	return n
}

func envFloat(k string, def float64) float64 {
	var f float64
	if _, err := fmt.Sscan(os.Getenv(k), &f); err != nil || f < 0 {
		return def
	}
	return f
}

// streamTimes is what the load's job events say beyond their data: which
// jobs waited (a pending event), and when the stream stored each job's first
// admitted and first final event (the time JetStream stamps on a message as
// it stores it), and the final event's own time (the commit of its write).
type streamTimes struct {
	waited          map[string]bool
	admitted, final map[string]time.Time // when the stream stored the event
	written         map[string]time.Time // the final event's own time: when its write committed
}

func readStreamTimes(t testing.TB, js jetstream.JetStream) streamTimes {
	t.Helper()
	st := streamTimes{waited: map[string]bool{}, admitted: map[string]time.Time{}, final: map[string]time.Time{}, written: map[string]time.Time{}}
	first := func(m map[string]time.Time, id string, at time.Time) {
		if _, ok := m[id]; !ok {
			m[id] = at
		}
	}
	eventstest.Each(t, js, events.FilterSubject(events.KindJob, "", ""), func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			t.Fatalf("metadata of %s: %v", m.Subject(), err)
		}
		id := m.Subject()[strings.LastIndexByte(m.Subject(), '.')+1:]
		switch m.Headers().Get("ce-type") {
		case events.TypeJobPending:
			st.waited[id] = true
		case events.TypeJobAdmitted:
			first(st.admitted, id, md.Timestamp)
		case events.TypeJobSucceeded, events.TypeJobFailed, events.TypeJobCancelled:
			first(st.final, id, md.Timestamp)
			at, err := time.Parse(time.RFC3339Nano, m.Headers().Get("ce-time"))
			if err != nil {
				t.Fatalf("the time of %s: %v", m.Subject(), err)
			}
			first(st.written, id, at)
		}
	})
	return st
}
