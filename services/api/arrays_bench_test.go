package api_test

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/indexed/ferretlookup"
	"github.com/avxrm/rm/pkg/events/jobdoc"
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
// POST /job-arrays/{id}/cancel, which answers at once and asks every job to
// cancel (with its rm.job.cancel_requested event) after. It reports
// milliseconds per request, and until every job was asked (ms/all-asked,
// from the cancel's start).
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
	var post, firstGet, get, cancel, allAsked time.Duration
	// Counts the jobs asked by index (FerretDB's own count would decode
	// every job at each look, taking the CPU the cancel runs on).
	asked := &indexed.Reader{Coll: e.db.Collection("jobs"), Lookup: ferretlookup.New(e.ferret, e.db.Name())}
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
		for {
			f := jobdoc.ArrayJobs(id, events.JobSubmitted, events.JobPending)
			f.All = append(f.All, indexed.Cond{Path: "cancel_requested", In: []any{true}})
			n, err := asked.Count(ctx, f)
			if err != nil {
				b.Fatal(err)
			}
			if n == count {
				break
			}
			if time.Since(start) > 10*time.Minute {
				b.Fatalf("%d jobs asked to cancel after 10 min, want %d", n, count)
			}
			time.Sleep(time.Second) // each look reads the index: not too often
		}
		allAsked += time.Since(start)
	}
	b.ReportMetric(float64(post.Milliseconds())/float64(b.N), "ms/post")
	b.ReportMetric(float64(firstGet.Milliseconds())/float64(b.N), "ms/first-get")
	b.ReportMetric(float64(get.Milliseconds())/float64(b.N), "ms/get")
	b.ReportMetric(float64(cancel.Milliseconds())/float64(b.N), "ms/cancel")
	b.ReportMetric(float64(allAsked.Milliseconds())/float64(b.N), "ms/all-asked")
}
