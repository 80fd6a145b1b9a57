package up_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/up"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// BenchmarkHistory runs the submission, admission and hand-over benchmarks
// on an empty store and on one already holding RM_BENCH_HISTORY (default
// 100,000) finished jobs, inserted straight into the jobs collection: what
// grows with history shows as the difference between the two (`make
// bench-history` prints the ratios).
//
//	go test -run '^$' -bench 'BenchmarkHistory$' -benchtime 300x -timeout 60m ./internal/up/
func BenchmarkHistory(b *testing.B) {
	n := historySize(b)
	for _, history := range []int{0, n} {
		b.Run(fmt.Sprintf("history=%d", history), func(b *testing.B) {
			// Run once (it has sub-benchmarks), so the system lives for all three.
			sys := startScheduling(b)
			c := newClient(b, sys.HTTPAddr)
			// Queues first: a queue's response carries its usage, which
			// reads the jobs collection (see docs/benchmarks.md).
			for i := 1; i <= 3; i++ {
				c.createQueue(fmt.Sprintf("one-%d", i), 1)
			}
			insertHistory(b, sys, history)
			b.Run("Submit", func(b *testing.B) { benchSubmit(b, sys) })
			b.Run("SubmitToAdmitted", func(b *testing.B) { benchSubmitToAdmitted(b, sys) })
			round := 0
			b.Run("HandOver", func(b *testing.B) {
				round++ // a fresh queue for each of the (at most 3) runs
				benchHandOver(b, sys, fmt.Sprintf("one-%d", round))
			})
		})
	}
}

// insertHistory creates the queue "bench" and stores n succeeded jobs on it,
// copies of a job submitted through the API, in batches.
func insertHistory(b *testing.B, sys *up.System, n int) {
	b.Helper()
	c := newClient(b, sys.HTTPAddr)
	c.createQueue("bench", 100000)
	if n == 0 {
		return
	}
	ctx := context.Background()
	tmpl := c.submit("bench", 1)
	c.waitJob(tmpl.ID, "admitted", hasStatus(events.JobAdmitted))
	var doc bson.M
	if err := sys.DB.Collection("jobs").FindOne(ctx, bson.D{{Key: "_id", Value: tmpl.ID}}).Decode(&doc); err != nil {
		b.Fatal(err)
	}
	delete(doc, "_outbox")
	start := time.Now()
	insertCopies(b, sys, "jobs", n, func(i int) bson.M {
		d := clone(doc)
		now := time.Now().UTC().Truncate(time.Millisecond)
		d["_id"], d["name"], d["status"], d["finished_at"], d["version"] = events.NewID("job"), fmt.Sprintf("history-%d", i), events.JobSucceeded, now, 4
		return d
	})
	b.Logf("%d finished jobs inserted in %v", n, time.Since(start).Round(time.Millisecond))
	measureActiveRead(b, sys, n+1)
}

// measureActiveRead logs what one read of the active jobs (the scheduler's
// resync filter) costs among total jobs: by index through the store's
// Lookup, as the services read them, and with the filter sent to FerretDB
// as it is, which decodes every job (the read before the index).
func measureActiveRead(b *testing.B, sys *up.System, total int) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	active := indexed.Filter{
		All: []indexed.Cond{{Path: "_deleted", Missing: true}},
		// The services' condition: a condition without its partial values
		// would make a full index of its own, which every write then keeps.
		Any: []indexed.Clause{{jobdoc.ActiveStatus(events.JobSubmitted, events.JobPending, events.JobAdmitted, events.JobRunning)}},
	}
	for _, mode := range []string{"by index", "by FerretDB's scan"} {
		r := &indexed.Reader{Coll: sys.DB.Collection("jobs")}
		if mode == "by index" {
			r.Lookup = sys.Lookup(sys.DB.Name())
		}
		start := time.Now()
		docs, err := r.Find(ctx, active)
		if err != nil {
			b.Logf("reading the active jobs %s among %d: %v after %v", mode, total, err, time.Since(start).Round(time.Millisecond))
			continue
		}
		b.Logf("reading the %d active jobs %s among %d took %v", len(docs), mode, total, time.Since(start).Round(time.Millisecond))
	}
}
