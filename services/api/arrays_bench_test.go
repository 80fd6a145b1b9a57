package api_test

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/avxrm/rm/services/api/internal/apitest"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// BenchmarkJobArray measures, for an array of 10,000 jobs
// (RM_BENCH_ARRAY_COUNT to change it), through the whole stack on the
// embedded store (HTTP on loopback, the API, FerretDB/SQLite with the _id
// index remedy and the API's reads by index, NATS JetStream for the jobs' events; no scheduler): one
// POST /job-arrays, two GET /job-arrays/{id} (its counts, read by index;
// the first in a process also makes the embedded store's index, if the
// store has none yet), and one
// POST /job-arrays/{id}/cancel (every job asked to cancel, with its
// rm.job.cancel_requested event). It reports milliseconds per request.
//
//	go test -run '^$' -bench BenchmarkJobArray -benchtime 1x .
func BenchmarkJobArray(b *testing.B) {
	a := apitest.StartIndexed(b, apitest.TestLogger(b)) // reads by index, as the all-in-one
	e := &env{t: b, base: a.URL, db: a.DB, js: a.JS, ob: a.Outbox, svc: a.Svc, ferret: a.Ferret}
	ctx := context.Background()
	e.create("/queues", obj{"name": "Default"})
	names, err := e.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		b.Fatal(err)
	}
	// The jobs' collection may not exist yet: EnsureIDIndex creates it.
	for _, c := range append(names, "jobs", "job_arrays") {
		if err := e.ferret.EnsureIDIndex(ctx, e.db.Name(), c); err != nil {
			b.Fatal(err)
		}
	}
	count := 10000
	if v, err := strconv.Atoi(os.Getenv("RM_BENCH_ARRAY_COUNT")); err == nil && v > 0 {
		count = v
	}
	body := obj{"job": jobBody("Default", 1).with("name", "bench"), "count": count, "max_parallel": 50}
	var post, firstGet, get, cancel time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		id := e.must(http.StatusCreated, http.MethodPost, v1+"/job-arrays", body).obj(b).str("id")
		post += time.Since(start)

		start = time.Now()
		e.must(http.StatusOK, http.MethodGet, v1+"/job-arrays/"+id, nil)
		firstGet += time.Since(start)
		start = time.Now()
		a := e.must(http.StatusOK, http.MethodGet, v1+"/job-arrays/"+id, nil).obj(b)
		get += time.Since(start)
		if n := a["counts"].(map[string]any)["submitted"]; n != float64(count) {
			b.Fatalf("counts %v, want submitted: %d", a["counts"], count)
		}

		start = time.Now()
		e.must(http.StatusAccepted, http.MethodPost, v1+"/job-arrays/"+id+"/cancel", nil)
		cancel += time.Since(start)
		n, err := e.db.Collection("jobs").CountDocuments(ctx, bson.D{{Key: "array_id", Value: id}, {Key: "cancel_requested", Value: true}})
		if err != nil {
			b.Fatal(err)
		}
		if n != int64(count) {
			b.Fatalf("%d jobs asked to cancel, want %d", n, count)
		}
	}
	b.ReportMetric(float64(post.Milliseconds())/float64(b.N), "ms/post")
	b.ReportMetric(float64(firstGet.Milliseconds())/float64(b.N), "ms/first-get")
	b.ReportMetric(float64(get.Milliseconds())/float64(b.N), "ms/get")
	b.ReportMetric(float64(cancel.Milliseconds())/float64(b.N), "ms/cancel")
}
