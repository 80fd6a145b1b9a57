package ui_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/api/internal/ui"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// BenchmarkJobsPage measures the time to first byte of the jobs page with
// 10,000 jobs stored (FerretDB/SQLite with the all-in-one's _id index
// remedy, the API and the view over loopback HTTP): the first page, a deep
// page, a status filter, a name search, a queue and label filter, the
// queues page and a queue's page, from the view's job index. It reports
// the median and the 99th percentile. RM_BENCH_STORE=1 adds the slow paths
// (see below); run them a few times only.
//
//	go test -run '^$' -bench BenchmarkJobsPage -benchtime 20x -timeout 30m ./services/api/internal/ui/
//	RM_BENCH_STORE=1 go test -run '^$' -bench BenchmarkJobsPage -benchtime 3x -timeout 30m ./services/api/internal/ui/
func BenchmarkJobsPage(b *testing.B) {
	e := startEnv(b)
	e.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "Default", "maximum_allowed_worker_instances": 100}, http.StatusCreated)
	var q struct {
		ID string `bson:"_id"`
	}
	ctx := context.Background()
	if err := e.db.Collection("queues").FindOne(ctx, bson.D{{Key: "name", Value: "Default"}}).Decode(&q); err != nil {
		b.Fatal(err)
	}
	const n = 10000
	setup := time.Now()
	statuses := []string{events.JobSucceeded, events.JobSucceeded, events.JobFailed, events.JobRunning, events.JobPending}
	ids := make([]string, 0, n)
	for start := 0; start < n; start += 1000 {
		docs := make([]any, 0, 1000)
		for i := start; i < start+1000; i++ {
			now := time.Now().UTC()
			j := &events.Job{
				Meta: events.Meta{ID: events.NewID("job"), CreatedAt: now, UpdatedAt: now, Version: 1},
				Name: fmt.Sprintf("sweep-%05d", i), QueueID: q.ID, QueueName: "Default", WorkerInstances: 1 + i%20,
				Labels: map[string]string{"campaign": fmt.Sprintf("c%d", i%10)}, Status: statuses[i%len(statuses)],
				Conditions: []events.Condition{}, Warnings: []string{}, Instances: []events.Instance{}, SubmittedAt: now,
			}
			ids = append(ids, j.ID)
			docs = append(docs, j)
		}
		if _, err := e.db.Collection("jobs").InsertMany(ctx, docs); err != nil {
			b.Fatal(err)
		}
	}
	names, err := e.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range names {
		if err := e.ferret.EnsureIDIndex(ctx, e.db.Name(), c); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("%d jobs stored in %v", n, time.Since(setup).Round(time.Millisecond))
	// The view's job index loads in the background on the first page.
	for deadline := time.Now().Add(10 * time.Minute); e.source(e.base, "/ui/jobs") != "index"; time.Sleep(time.Second) {
		if time.Now().After(deadline) {
			b.Fatal("the job index was not loaded within 5 minutes")
		}
	}
	b.Logf("job index loaded after %v", time.Since(setup).Round(time.Millisecond))
	pages := []struct{ name, path string }{
		{"first page", "/ui/jobs"},
		{"deep page", "/ui/jobs?cursor=" + ids[n/2]},
		{"status failed", "/ui/jobs?status=failed"},
		{"name search", "/ui/jobs?q=sweep-0999"},
		{"queue and label", "/ui/jobs?queue=Default&label=campaign%3Dc3"},
		{"queues page", "/ui/queues"},
		{"queue page", "/ui/queues/Default"},
	}
	for _, p := range pages {
		b.Run("index/"+p.name, func(b *testing.B) { measureTTFB(b, e.base+p.path, "index") })
	}
	// The slow paths, as before the index is loaded: the first page and a
	// name search read from the store, and the queue page with the usage
	// the API counts from the store.
	if os.Getenv("RM_BENCH_STORE") != "" {
		store := httptest.NewServer(ui.New(ui.Options{API: e.svc.Handler(), DB: e.db}))
		defer store.Close()
		b.Run("store/first page", func(b *testing.B) { measureTTFB(b, store.URL+"/ui/jobs", "store") })
		b.Run("store/name search", func(b *testing.B) { measureTTFB(b, store.URL+"/ui/jobs?q=sweep-0999", "store") })
		b.Run("store/queue page", func(b *testing.B) { measureTTFB(b, store.URL+"/ui/queues/Default", "store") })
	}
}

// measureTTFB gets url b.N times and reports the median and 99th percentile
// time to the first byte of the answer.
func measureTTFB(b *testing.B, url, source string) {
	ttfb := make([]time.Duration, 0, b.N)
	for b.Loop() {
		var start, first time.Time
		trace := &httptrace.ClientTrace{GotFirstResponseByte: func() { first = time.Now() }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, url, nil)
		start = time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(body) < 1000 || resp.Header.Get("X-RM-Jobs-Source") != source {
			b.Fatalf("GET %s = %d (%d bytes, from the %s)", url, resp.StatusCode, len(body), resp.Header.Get("X-RM-Jobs-Source"))
		}
		ttfb = append(ttfb, first.Sub(start))
	}
	sort.Slice(ttfb, func(i, k int) bool { return ttfb[i] < ttfb[k] })
	b.ReportMetric(float64(ttfb[len(ttfb)/2].Microseconds())/1000, "ttfb-p50-ms")
	b.ReportMetric(float64(ttfb[len(ttfb)*99/100].Microseconds())/1000, "ttfb-p99-ms")
}
