package up_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/avxrm/rm/cmd/avxrm/internal/up"
	"github.com/avxrm/rm/pkg/events"
)

// historySize is RM_BENCH_HISTORY, default 100,000 finished jobs.
func historySize(b *testing.B) int {
	n := 100000
	if v := os.Getenv("RM_BENCH_HISTORY"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatalf("RM_BENCH_HISTORY=%q: %v", v, err)
		}
	}
	return n
}

// BenchmarkHistoryMixed runs the mixed workload of `make bench-compare`
// (300 jobs of 1-20 workers holding them 1 s, queue limit 100, submitted at
// once by 4 clients) on the whole all-in-one with the simulated driver (the
// control plane alone), on an empty store and on one already holding
// RM_BENCH_HISTORY finished jobs with their instances, and with the local
// driver's directories of those jobs on disk; it reports the utilization of
// the limit in each and their ratio.
//
//	go test -run '^$' -bench BenchmarkHistoryMixed -benchtime 1x -timeout 60m ./internal/up/
func BenchmarkHistoryMixed(b *testing.B) {
	n := historySize(b)
	util := map[int]float64{}
	for _, history := range []int{0, n} {
		// The system lives in the parent, which runs once; the leaf runs
		// twice (b.N = 1, then -benchtime) and does the workload once.
		b.Run(fmt.Sprintf("history=%d", history), func(b *testing.B) {
			dir := b.TempDir()
			seedDriverDirs(b, dir, history)
			sys := startSystemIn(b, dir)
			c := newClient(b, sys.HTTPAddr)
			c.simulatedFor(1)
			seedHistory(b, sys, history)
			c.createQueue("mixed", 100)
			b.Run("Mixed", func(b *testing.B) {
				if _, done := util[history]; !done {
					util[history] = mixedWorkload(b, sys, c)
				}
				b.ReportMetric(100*util[history], "utilization-%")
			})
		})
	}
	if util[0] > 0 && util[n] > 0 {
		fmt.Printf("history %d: mixed-workload utilization %.1f%% against %.1f%% empty (ratio %.2f)\n",
			n, 100*util[n], 100*util[0], util[n]/util[0])
	}
}

// mixedWorkload submits the 300 jobs to queue "mixed" and returns the
// utilization of its limit from the first submission to the last job's end.
func mixedWorkload(b *testing.B, sys *up.System, c *client) float64 {
	rng := rand.New(rand.NewPCG(42, 42))
	sizes := make([]int, 300)
	total := 0
	for i := range sizes {
		sizes[i] = 1 + rng.IntN(20)
		total += sizes[i]
	}
	q := c.queue("mixed")
	nc, err := nats.Connect(sys.NATSURL)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	finals := make(chan struct{}, len(sizes)*2)
	sub, err := nc.Subscribe(events.FilterSubject(events.KindJob, q.ID, ""), func(m *nats.Msg) {
		if t := m.Header.Get("ce-type"); t == events.TypeJobSucceeded || t == events.TypeJobFailed {
			finals <- struct{}{}
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	work := make(chan int)
	for range 4 {
		wg.Go(func() {
			for i := range work {
				c.submit("mixed", sizes[i])
			}
		})
	}
	for i := range sizes {
		work <- i
	}
	close(work)
	wg.Wait()
	timeout := time.After(20 * time.Minute)
	for range sizes {
		select {
		case <-finals:
		case <-timeout:
			b.Fatal("the mixed workload did not finish within 20 minutes")
		}
	}
	return float64(total) / (100 * time.Since(start).Seconds())
}

// seedHistory stores n finished jobs with their instances, copies of a job
// that ran through the system (on the simulated driver), in bulk inserts.
func seedHistory(b *testing.B, sys *up.System, n int) {
	b.Helper()
	c := newClient(b, sys.HTTPAddr)
	c.createQueue("history", 100000)
	if n == 0 {
		return
	}
	ctx := context.Background()
	tmpl := c.submit("history", 1)
	c.waitJobFor(tmpl.ID, "succeeded", 2*time.Minute, hasStatus(events.JobSucceeded))
	var job bson.M
	if err := sys.DB.Collection("jobs").FindOne(ctx, bson.D{{Key: "_id", Value: tmpl.ID}}).Decode(&job); err != nil {
		b.Fatal(err)
	}
	delete(job, "_outbox")
	var chunks []bson.M
	cur, err := sys.DB.Collection("job_instances").Find(ctx, bson.D{{Key: "job_id", Value: tmpl.ID}})
	if err == nil {
		err = cur.All(ctx, &chunks)
	}
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	insertCopies(b, sys, "jobs", n, func(i int) bson.M {
		d := clone(job)
		d["_id"], d["name"] = historyID(i), fmt.Sprintf("history-%d", i)
		return d
	})
	insertCopies(b, sys, "job_instances", n*len(chunks), func(i int) bson.M {
		d := clone(chunks[i%len(chunks)])
		d["_id"], d["job_id"] = fmt.Sprintf("%s/%d", historyID(i/len(chunks)), i%len(chunks)), historyID(i/len(chunks))
		return d
	})
	b.Logf("%d finished jobs and %d instance documents inserted in %v", n, n*len(chunks), time.Since(start).Round(time.Millisecond))
}

func historyID(i int) string { return fmt.Sprintf("job-history-%08d", i) }

func clone(m bson.M) bson.M {
	d := make(bson.M, len(m))
	for k, v := range m {
		d[k] = v
	}
	return d
}

// insertCopies inserts n documents made by doc, 1,000 per insert.
func insertCopies(b *testing.B, sys *up.System, coll string, n int, doc func(i int) bson.M) {
	b.Helper()
	const batch = 1000
	for done := 0; done < n; {
		docs := make([]any, 0, batch)
		for ; len(docs) < batch && done < n; done++ {
			docs = append(docs, doc(done))
		}
		if _, err := sys.DB.Collection(coll).InsertMany(context.Background(), docs); err != nil {
			b.Fatal(err)
		}
	}
}

// seedDriverDirs leaves what the local driver keeps of n cleaned jobs under
// dataDir: a directory per instance with its output.log.
func seedDriverDirs(b *testing.B, dataDir string, n int) {
	b.Helper()
	root := filepath.Join(dataDir, "launcher", "local")
	for i := range n {
		for _, inst := range []string{"controller-0", "worker-0"} {
			d := filepath.Join(root, historyID(i), inst)
			if err := os.MkdirAll(d, 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, "output.log"), nil, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
}
