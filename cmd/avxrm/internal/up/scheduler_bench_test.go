package up_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/up"
	"github.com/avxrm/rm/pkg/embedded/ferretembed"
	"github.com/avxrm/rm/pkg/events"
	"github.com/nats-io/nats.go"
)

// Benchmarks of jobs and the scheduler on the all-in-one (embedded NATS and
// FerretDB/SQLite, no launcher: the benchmark reports jobs final itself).
// Run with -benchtime=Nx: each iteration is one job.

func submitBody(queue string, workers int) []byte {
	return fmt.Appendf(nil, `{"queue_id":%q,"worker_instances":%d,"application":{"image":"registry.example/sim:1"}}`, queue, workers)
}

// costMeter reports what the benchmarked jobs cost the embedded store and
// the event stream: write commands and events per job, and how long each
// write held the store's write lock.
type costMeter struct {
	sys    *up.System
	writes ferretembed.WriteStats
	events uint64
}

func meterCosts(b *testing.B, sys *up.System) *costMeter {
	b.Helper()
	m := &costMeter{sys: sys}
	m.writes, _ = sys.StoreWriteStats()
	m.events = streamMsgs(b, sys)
	return m
}

func streamMsgs(b testing.TB, sys *up.System) uint64 {
	b.Helper()
	st, err := sys.JS.Stream(context.Background(), events.StreamName)
	if err != nil {
		b.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return info.State.Msgs
}

// report adds writes/job, events/job and ms-lock/write for jobs jobs.
func (m *costMeter) report(b *testing.B, jobs int) {
	b.Helper()
	w, ok := m.sys.StoreWriteStats()
	if !ok || jobs == 0 {
		return
	}
	n := w.Commands - m.writes.Commands
	b.ReportMetric(float64(n)/float64(jobs), "writes/job")
	if n > 0 {
		b.ReportMetric(float64(w.HeldPerWrite(m.writes).Microseconds())/1000, "ms-lock/write")
	}
	b.ReportMetric(float64(streamMsgs(b, m.sys)-m.events)/float64(jobs), "events/job")
	// Conditional writes the proxy's fast path could not rewrite to {_id}:
	// FerretDB scans the whole collection for each, holding the write lock,
	// so they are what grows with history on the write side.
	b.ReportMetric(float64(w.FastUnchanged-m.writes.FastUnchanged)/float64(jobs), "scanning-writes/job")
}

// BenchmarkSubmit measures accepted submissions per second through the REST
// API, from 8 clients at once, while the scheduler admits them.
func BenchmarkSubmit(b *testing.B) {
	sys := startScheduling(b)
	newClient(b, sys.HTTPAddr).createQueue("bench", 100000)
	benchSubmit(b, sys)
}

func benchSubmit(b *testing.B, sys *up.System) {
	c := newClient(b, sys.HTTPAddr)
	body := submitBody("bench", 1)
	var failed atomic.Int64
	b.SetParallelism(4) // 4 × GOMAXPROCS clients
	costs := meterCosts(b, sys)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		hc := &http.Client{Timeout: 30 * time.Second}
		for pb.Next() {
			resp, err := hc.Post(c.base+jobsPath, "application/json", bytes.NewReader(body))
			if err != nil {
				failed.Add(1)
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				failed.Add(1)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "submissions/s")
	costs.report(b, b.N)
	if n := failed.Load(); n > 0 {
		b.Errorf("%d submissions failed", n)
	}
}

// admittedWatcher counts rm.job.admitted events as they are published.
type admittedWatcher struct {
	nc  *nats.Conn
	sub *nats.Subscription
	ch  chan time.Time
}

// await waits for n more admitted events, at most 5 minutes, and returns
// when the last of them arrived.
func (w *admittedWatcher) await(b testing.TB, n int) time.Time {
	b.Helper()
	var last time.Time
	timeout := time.After(5 * time.Minute)
	for range n {
		select {
		case last = <-w.ch:
		case <-timeout:
			b.Fatalf("not all %d jobs admitted within 5 minutes", n)
		}
	}
	return last
}

func watchAdmitted(b testing.TB, natsURL string) *admittedWatcher {
	b.Helper()
	return watchAdmittedOn(b, natsURL, "")
}

// watchAdmittedOn counts the rm.job.admitted events of queue queueID ("": any).
func watchAdmittedOn(b testing.TB, natsURL, queueID string) *admittedWatcher {
	b.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	w := &admittedWatcher{nc: nc, ch: make(chan time.Time, 1<<20)}
	w.sub, err = nc.Subscribe(events.FilterSubject(events.KindJob, queueID, ""), func(m *nats.Msg) {
		if m.Header.Get("ce-type") == events.TypeJobAdmitted {
			w.ch <- time.Now()
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		b.Fatal(err)
	}
	return w
}

// BenchmarkSubmitToAdmitted measures the throughput from submission to
// admission: b.N jobs are submitted (8 clients) to a queue with room for all
// of them, and the clock stops when the last one is admitted.
func BenchmarkSubmitToAdmitted(b *testing.B) {
	sys := startScheduling(b)
	newClient(b, sys.HTTPAddr).createQueue("bench", 100000)
	benchSubmitToAdmitted(b, sys)
}

func benchSubmitToAdmitted(b *testing.B, sys *up.System) {
	c := newClient(b, sys.HTTPAddr)
	w := watchAdmitted(b, sys.NATSURL)
	body := submitBody("bench", 1)
	b.SetParallelism(4)
	costs := meterCosts(b, sys)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		hc := &http.Client{Timeout: 30 * time.Second}
		for pb.Next() {
			resp, err := hc.Post(c.base+jobsPath, "application/json", bytes.NewReader(body))
			if err == nil {
				resp.Body.Close()
			}
		}
	})
	submitted := time.Since(start)
	last := w.await(b, b.N)
	b.StopTimer()
	total := last.Sub(start)
	b.ReportMetric(float64(b.N)/total.Seconds(), "admitted/s")
	b.ReportMetric(float64(b.N)/submitted.Seconds(), "submitted/s")
	b.ReportMetric(float64((total - submitted).Milliseconds()), "ms-drain-after-last-submit")
	costs.report(b, b.N)
}

// BenchmarkHandOver measures the hand-over latency: a queue allows 1 worker;
// one job holds it and one waits; the benchmark reports the holder succeeded
// (as the launcher does) and times until the waiting job's admitted event.
// The holder was recorded running first, and its end is written from the job
// as that write left it, as the launcher's job cache does (since 2026-12-01;
// before, the timed part also read the job).
//
// The sub-benchmark active=N first admits N one-worker jobs on another queue,
// which stay admitted throughout: a hand-over must not slow down with the
// number of jobs running elsewhere.
func BenchmarkHandOver(b *testing.B) {
	for _, active := range []int{0, 600} {
		b.Run(fmt.Sprintf("active=%d", active), func(b *testing.B) {
			sys := startScheduling(b)
			c := newClient(b, sys.HTTPAddr)
			c.createQueue("one", 1)
			admitBusy(b, sys, active)
			benchHandOver(b, sys, "one")
		})
	}
}

// admitBusy submits n one-worker jobs to a queue of their own ("busy") and
// waits until all of them are admitted.
func admitBusy(b *testing.B, sys *up.System, n int) {
	b.Helper()
	if n == 0 {
		return
	}
	c := newClient(b, sys.HTTPAddr)
	c.createQueue("busy", n)
	w := watchAdmitted(b, sys.NATSURL)
	for range n {
		c.submit("busy", 1)
	}
	w.await(b, n)
}

// benchHandOver runs the hand-over benchmark on queue (limit 1, no jobs).
func benchHandOver(b *testing.B, sys *up.System, queue string) {
	lat := handOverLatencies(b, sys, queue, b.N, b.ResetTimer, b.StopTimer, b.StartTimer)
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(percentile(lat, p).Microseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

// handOverLatencies times n hand-overs on queue (limit 1, no jobs): the
// holder's end written as the launcher writes it, to the waiting job's
// admitted event. Around the timed part it calls begin once, then pause and
// resume around each round's setting up of the next pair.
func handOverLatencies(t testing.TB, sys *up.System, queue string, n int, begin, pause, resume func()) []time.Duration {
	t.Helper()
	c := newClient(t, sys.HTTPAddr)
	// The launcher records a job running before its end, and writes the
	// end from that job, as the real one does.
	l := newCachingLauncher(t, sys.DB, sys.JS)
	defer func() {
		// Stopped cleanly, as the all-in-one's own outbox is: a later
		// start on the same data need not sweep for it.
		if err := l.ob.Close(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	holder := c.submit(queue, 1)
	// Only this queue's admissions: other benchmarks' jobs may still be
	// being admitted on the same system.
	w := watchAdmittedOn(t, sys.NATSURL, holder.QueueID)
	defer w.nc.Close()
	c.waitJob(holder.ID, "admitted", hasStatus(events.JobAdmitted))
	l.start(holder.ID)
	waiting := c.submit(queue, 1)
	c.waitJob(waiting.ID, "pending", hasStatus(events.JobPending))
	for len(w.ch) > 0 { // the holder's own admission, if it came after the subscription
		<-w.ch
	}
	lat := make([]time.Duration, 0, n)
	begin()
	for range n {
		start := time.Now()
		l.finish(holder.ID, events.JobSucceeded)
		select {
		case at := <-w.ch:
			lat = append(lat, at.Sub(start))
		case <-time.After(30 * time.Second):
			t.Fatal("no hand-over within 30s")
		}
		pause()
		holder = waiting
		c.waitJob(holder.ID, "admitted", hasStatus(events.JobAdmitted))
		l.start(holder.ID)
		waiting = c.submit(queue, 1)
		c.waitJob(waiting.ID, "pending", hasStatus(events.JobPending))
		resume()
	}
	return lat
}

// percentile is the p-th (0..1) of sorted, nearest rank below.
func percentile(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}
