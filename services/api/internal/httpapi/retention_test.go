package httpapi

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/services/api/internal/store"
)

// testClock is the server's clock (Options.Now), moved by the test.
type testClock struct{ at atomic.Int64 }

func (c *testClock) now() time.Time  { return time.Unix(0, c.at.Load()) }
func (c *testClock) set(t time.Time) { c.at.Store(t.UnixNano()) }
func (c *testClock) option() func(*Options) {
	c.set(time.Now())
	return func(o *Options) { o.Now = c.now }
}

// end marks job id as ended with status at finished, as the scheduler and
// the launcher write it.
func (e *artifactEnv) end(id, status string, finished time.Time) {
	e.t.Helper()
	if _, err := e.db.Collection(store.Jobs).UpdateOne(context.Background(), bson.D{{Key: "_id", Value: id}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: status}, {Key: "finished_at", Value: finished.UTC()}}}}); err != nil {
		e.t.Fatal(err)
	}
}

// With RM_JOB_RETENTION a pass deletes a job that ended longer ago than
// the retention as DELETE /jobs/{id} does: the record and its artifacts
// gone, rm.job.deleted published. A job that ended within the retention,
// a running one, a pending one, and everything while the retention is 0
// are left alone; a second pass (another replica's) finds nothing to do.
// On the embedded store read by index, and by a find as on MongoDB.
func TestRetentionDeletesJobsThatEndedLongAgo(t *testing.T) {
	for name, byIndex := range map[string]bool{"by index": true, "by find": false} {
		t.Run(name, func(t *testing.T) {
			var clock testClock
			e := newEnvOn(t, nil, byIndex, clock.option())
			start := clock.now()
			old, recent, running, pending := e.job(), e.job(), e.job(), e.job()
			// Ended without a finished_at: its last write decides.
			oldUnfinished, recentUnfinished := e.job(), e.job()
			for id, at := range map[string]time.Time{oldUnfinished: start.Add(time.Minute), recentUnfinished: start.Add(50 * time.Minute)} {
				if _, err := e.db.Collection(store.Jobs).UpdateOne(context.Background(), bson.D{{Key: "_id", Value: id}},
					bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: events.JobCancelled}, {Key: "updated_at", Value: at.UTC()}}}}); err != nil {
					t.Fatal(err)
				}
			}
			if a := e.put("/jobs/"+old+"/artifacts/scenarios/s-1/a.xosc", []byte("scenario")); a.status != http.StatusCreated {
				t.Fatalf("upload = %s", a)
			}
			e.end(old, events.JobSucceeded, start.Add(time.Minute))
			e.end(recent, events.JobFailed, start.Add(50*time.Minute))
			if _, err := e.db.Collection(store.Jobs).UpdateOne(context.Background(), bson.D{{Key: "_id", Value: pending}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: events.JobPending}}}}); err != nil {
				t.Fatal(err)
			}
			clock.set(start.Add(2 * time.Hour)) // old ended 119 min ago, recent 70

			if n, err := e.srv.expireJobs(context.Background()); n != 0 || err != nil {
				t.Fatalf("a pass without a retention deleted %d jobs (%v)", n, err)
			}
			e.srv.opts.JobRetention = 90 * time.Minute
			if n, err := e.srv.expireJobs(context.Background()); n != 2 || err != nil {
				t.Fatalf("a pass deleted %d jobs (%v), want 2", n, err)
			}
			for _, id := range []string{old, oldUnfinished} {
				if a := e.do(http.MethodGet, "/jobs/"+id, nil); a.status != http.StatusNotFound {
					t.Errorf("GET %s, which ended 119 min ago, retention 90 min = %s, want 404", id, a)
				}
			}
			if got := e.stored(); got != [3]int64{} {
				t.Errorf("artifact records, blobs, chunks = %v after the job's deletion, want none", got)
			}
			var deleted bool
			for _, ev := range eventstest.ReadAll(t, e.js, events.FilterSubject(events.KindJob, "", old)) {
				deleted = deleted || ev.Type == events.TypeJobDeleted
			}
			if !deleted {
				t.Errorf("no %s event of %s", events.TypeJobDeleted, old)
			}
			for _, id := range []string{recent, recentUnfinished, running, pending} {
				if a := e.do(http.MethodGet, "/jobs/"+id, nil); a.status != http.StatusOK {
					t.Errorf("GET %s (not past its retention) = %s, want 200", id, a)
				}
			}
			if n, err := e.srv.expireJobs(context.Background()); n != 0 || err != nil {
				t.Errorf("a second pass deleted %d jobs (%v), want none", n, err)
			}
		})
	}
}

// A pass over a history of ended jobs reads about the expired ones only:
// it stops at the jobs submitted after the cutoff (their ids say when),
// which cannot have ended before it. It deletes at most its batch; the
// next passes take the rest.
func TestRetentionPassReadsOnlyExpiredJobs(t *testing.T) {
	var clock testClock
	e := newIndexedEnv(t, clock.option())
	const expired, later, batch = 10, 50, 4
	e.json(http.StatusCreated, http.MethodPost, "/queues", map[string]any{"name": "Q"}, nil)
	var olds []string
	for range expired {
		olds = append(olds, e.job())
	}
	time.Sleep(2 * time.Millisecond) // the cutoff falls between the two groups' ids
	cutoff := time.Now()
	time.Sleep(2 * time.Millisecond)
	for range later {
		e.end(e.job(), events.JobSucceeded, cutoff.Add(time.Second)) // ended after the cutoff
	}
	for _, id := range olds {
		e.end(id, events.JobFailed, cutoff.Add(-time.Second))
	}
	e.srv.opts.JobRetention = time.Hour
	e.srv.expireBatch = batch
	clock.set(cutoff.Add(time.Hour))
	for pass, want := range []int{batch, batch, expired - 2*batch, 0} {
		before := e.srv.active.DocsRead()
		n, err := e.srv.expireJobs(context.Background())
		if err != nil || n != want {
			t.Fatalf("pass %d deleted %d jobs (%v), want %d", pass, n, err, want)
		}
		if read := e.srv.active.DocsRead() - before; read > int64(want) {
			t.Errorf("pass %d over %d expired jobs among %d ended read %d jobs, want at most %d", pass, expired, expired+later, read, want)
		}
	}
	for _, id := range olds {
		if a := e.do(http.MethodGet, "/jobs/"+id, nil); a.status != http.StatusNotFound {
			t.Errorf("GET %s after the passes = %s, want 404", id, a)
		}
	}
	if n := e.count(store.Jobs); n != later {
		t.Errorf("%d jobs left, want the %d that ended after the cutoff", n, later)
	}
}

// ExpireJobs makes its first pass at once and stops with its context;
// without a retention it returns at once.
func TestExpireJobsRunsUntilItsContextEnds(t *testing.T) {
	var clock testClock
	e := newIndexedEnv(t, clock.option())
	e.srv.ExpireJobs(context.Background()) // no retention: returns
	id := e.job()
	e.end(id, events.JobCancelled, time.Now())
	clock.set(time.Now().Add(2 * time.Hour))
	e.srv.opts.JobRetention = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.srv.ExpireJobs(ctx) }()
	for deadline := time.Now().Add(30 * time.Second); e.do(http.MethodGet, "/jobs/"+id, nil).status != http.StatusNotFound; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the job that ended 2 h ago, retention 1 h, is still there after 30 s")
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ExpireJobs did not return once its context ended")
	}
}
