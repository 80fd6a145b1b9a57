package jobdoc_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/indexed/ferretlookup"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/google/go-cmp/cmp"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestArrayCounts runs the jobs of an array through the writers' stores on
// a real FerretDB and JetStream, among 3,000 jobs of another array: the
// counts read by index (CountArray) follow every status change (Update,
// UpdateMatching, Delete), the same through the embedded store's Lookup as
// from the store itself, and through the Lookup they read no job but the
// failed ones; UpdateMatching stores each job once with its event, and a
// job that changed meanwhile goes through Update.
func TestArrayCounts(t *testing.T) {
	ctx := context.Background()
	w := startWriters(t)
	db, srv, api, sched, launcher := w.db, w.srv, w.api, w.sched, w.launcher
	if err := srv.EnsureIDIndex(ctx, "rm", jobdoc.Collection); err != nil {
		t.Fatal(err)
	}
	others := make([]any, 3000)
	for i := range others {
		others[i] = bson.D{{Key: "_id", Value: fmt.Sprintf("other-%d", i)}, {Key: "array_id", Value: "arr-2"},
			{Key: "array_index", Value: i}, {Key: "status", Value: []string{events.JobFailed, events.JobSubmitted}[i%2]}}
	}
	if _, err := db.Collection(jobdoc.Collection).InsertMany(ctx, others); err != nil {
		t.Fatal(err)
	}

	const n = 5
	now := time.Now().UTC().Truncate(time.Millisecond)
	var jobs []*events.Job
	for i := range n {
		idx := i
		jobs = append(jobs, &events.Job{Meta: events.Meta{ID: "job-" + string(rune('a'+i)), Version: 1, CreatedAt: now}, QueueID: "q-1",
			WorkerInstances: 1, Status: events.JobSubmitted, SubmittedAt: now, ArrayID: "arr-1", ArrayIndex: &idx})
	}
	if err := api.CreateMany(ctx, jobs, events.TypeJobSubmitted); err != nil {
		t.Fatal(err)
	}
	set := func(id, status string) {
		t.Helper()
		w := sched
		if status == events.JobFailed || status == events.JobRunning || status == events.JobSucceeded {
			w = launcher
		}
		if _, err := w.Update(ctx, id, func(j *events.Job, _ time.Time) ([]string, error) {
			j.Status = status
			return []string{events.TypeJobUpdated}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(want map[string]int, wantFailed []int) {
		t.Helper()
		for name, r := range map[string]*indexed.Reader{
			"lookup": {Coll: db.Collection(jobdoc.Collection), Lookup: ferretlookup.New(srv, "rm")},
			"store":  {Coll: db.Collection(jobdoc.Collection)},
		} {
			counts, failed, err := jobdoc.CountArray(ctx, r, "arr-1", n)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, counts); diff != "" {
				t.Errorf("%s: counts mismatch (-want +got):\n%s", name, diff)
			}
			if diff := cmp.Diff(wantFailed, failed); diff != "" {
				t.Errorf("%s: failed indexes mismatch (-want +got):\n%s", name, diff)
			}
			if name == "lookup" && r.DocsRead() != int64(len(wantFailed)) {
				t.Errorf("lookup: read %d jobs to count, want only the %d failed", r.DocsRead(), len(wantFailed))
			}
		}
	}
	check(map[string]int{events.JobSubmitted: n}, []int{})
	set("job-a", events.JobPending)
	set("job-b", events.JobFailed)
	set("job-c", events.JobFailed)
	check(map[string]int{events.JobSubmitted: 2, events.JobPending: 1, events.JobFailed: 2}, []int{1, 2})

	// job-d changes between the query and its write: it is retried.
	changedOnce := false
	m, err := api.UpdateMatching(ctx, jobdoc.ArrayJobs("arr-1", events.JobSubmitted, events.JobPending, events.JobAdmitted, events.JobRunning),
		func(j *events.Job, _ time.Time) ([]string, error) {
			if j.CancelRequested {
				return nil, nil
			}
			if j.ID == "job-d" && !changedOnce {
				changedOnce = true
				set("job-d", events.JobPending)
			}
			j.CancelRequested = true
			return []string{events.TypeJobCancelRequested}, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if m != 3 {
		t.Errorf("UpdateMatching changed %d jobs, want 3", m)
	}
	for _, id := range []string{"job-a", "job-d", "job-e"} {
		j, err := api.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !j.CancelRequested {
			t.Errorf("%s not asked to cancel", id)
		}
	}
	check(map[string]int{events.JobSubmitted: 1, events.JobPending: 2, events.JobFailed: 2}, []int{1, 2})

	if err := api.Delete(ctx, "job-b", func(*events.Job, time.Time) ([]string, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	set("job-e", events.JobCancelled)
	check(map[string]int{events.JobPending: 2, events.JobFailed: 1, events.JobCancelled: 1}, []int{2})

	// Two jobs end between the count of the running ones and that of the
	// succeeded ones: counted twice, the counts are read again.
	set("job-a", events.JobRunning)
	set("job-d", events.JobRunning)
	moving := &movingLookup{Lookup: ferretlookup.New(srv, "rm"), move: func() {
		set("job-a", events.JobSucceeded)
		set("job-d", events.JobSucceeded)
	}}
	counts, _, err := jobdoc.CountArray(ctx, &indexed.Reader{Coll: db.Collection(jobdoc.Collection), Lookup: moving}, "arr-1", n)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{events.JobSucceeded: 2, events.JobFailed: 1, events.JobCancelled: 1}, counts); diff != "" || !moving.moved {
		t.Errorf("counts while two jobs ended (moved %v) (-want +got):\n%s", moving.moved, diff)
	}
}

// movingLookup runs move once, right after it has answered the first
// lookup of running jobs.
type movingLookup struct {
	indexed.Lookup
	move  func()
	moved bool
}

func (m *movingLookup) MatchingIDs(ctx context.Context, coll string, where, residual []indexed.Cond) ([]string, error) {
	ids, err := m.Lookup.MatchingIDs(ctx, coll, where, residual)
	if !m.moved && strings.Contains(fmt.Sprint(where, residual), events.JobRunning) {
		m.moved = true
		m.move()
	}
	return ids, err
}
