package api_test

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// BenchmarkJobArray measures one POST /job-arrays of 10,000 jobs
// (RM_BENCH_ARRAY_COUNT to change it) through the whole stack on the
// embedded store: HTTP on loopback, the API, FerretDB/SQLite with the _id
// index remedy, NATS JetStream for the jobs' events; then one
// GET /job-arrays/{id}, whose counts are counted from the jobs, once the
// jobs' published events are cleared from them (in the background). No
// scheduler runs. It reports milliseconds per array (the request), until
// cleared (from the request's start) and per read.
//
//	go test -run '^$' -bench BenchmarkJobArray -benchtime 3x .
func BenchmarkJobArray(b *testing.B) {
	e := startEnv(b)
	ctx := context.Background()
	e.create("/queues", obj{"name": "Default"})
	names, err := e.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range names {
		if err := e.ferret.EnsureIDIndex(ctx, e.db.Name(), c); err != nil {
			b.Fatal(err)
		}
	}
	count := 10000
	if v, err := strconv.Atoi(os.Getenv("RM_BENCH_ARRAY_COUNT")); err == nil && v > 0 {
		count = v
	}
	body := obj{"job": jobBody("Default", 1).with("name", "bench"), "count": count, "max_parallel": 50}
	var post, clear, get time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		id := e.must(http.StatusCreated, http.MethodPost, v1+"/job-arrays", body).obj(b).str("id")
		post += time.Since(start)
		// The published events are cleared from the jobs in the background
		// (outbox.InsertMany); a read meanwhile competes with those writes.
		for {
			n, err := e.db.Collection("jobs").CountDocuments(ctx, bson.D{{Key: "_outbox.0", Value: bson.D{{Key: "$exists", Value: true}}}})
			if err != nil {
				b.Fatal(err)
			}
			if n == 0 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		clear += time.Since(start)
		start = time.Now()
		a := e.must(http.StatusOK, http.MethodGet, v1+"/job-arrays/"+id, nil).obj(b)
		get += time.Since(start)
		if n := a["counts"].(map[string]any)["submitted"]; n != float64(count) {
			b.Fatalf("counts %v, want submitted: %d", a["counts"], count)
		}
	}
	b.ReportMetric(float64(post.Milliseconds())/float64(b.N), "ms/post")
	b.ReportMetric(float64(clear.Milliseconds())/float64(b.N), "ms/cleared")
	b.ReportMetric(float64(get.Milliseconds())/float64(b.N), "ms/get")
}
