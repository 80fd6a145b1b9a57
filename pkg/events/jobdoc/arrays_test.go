package jobdoc_test

import (
	"context"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/google/go-cmp/cmp"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestArrayCounts runs the jobs of an array through the writers' stores on
// a real FerretDB and JetStream: the counts stored on the array follow
// every status change (Update, UpdateMatching, Delete) and always equal a
// recount from the jobs; UpdateMatching stores each job once with its
// event, and a job that changed meanwhile goes through Update.
func TestArrayCounts(t *testing.T) {
	ctx := context.Background()
	uri, _ := mongotest.Start(t)
	db := mongotest.Client(t, uri).Database("rm")
	js := eventstest.Run(t)
	ob := outbox.New(events.NewPublisher(js), nil)
	api := jobdoc.New(db, ob, jobdoc.API, "/api")
	sched := jobdoc.New(db, ob, jobdoc.Scheduler, "/scheduler")
	launcher := jobdoc.New(db, ob, jobdoc.Launcher, "/launcher")

	const n = 5
	now := time.Now().UTC().Truncate(time.Millisecond)
	if _, err := db.Collection(events.JobArraysCollection).InsertOne(ctx, &events.JobArray{
		Meta: events.Meta{ID: "arr-1", Version: 1}, Count: n, Counts: map[string]int{events.JobSubmitted: n}}); err != nil {
		t.Fatal(err)
	}
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
		if status == events.JobFailed {
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
		var arr events.JobArray
		if err := db.Collection(events.JobArraysCollection).FindOne(ctx, bson.D{{Key: "_id", Value: "arr-1"}}).Decode(&arr); err != nil {
			t.Fatal(err)
		}
		for k, v := range arr.Counts {
			if v == 0 {
				delete(arr.Counts, k)
			}
		}
		if diff := cmp.Diff(want, arr.Counts); diff != "" {
			t.Errorf("stored counts mismatch (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(wantFailed, arr.FailedIndexes); diff != "" {
			t.Errorf("stored failed indexes mismatch (-want +got):\n%s", diff)
		}
		counts, failed, err := api.CountArray(ctx, "arr-1")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, counts); diff != "" {
			t.Errorf("recount mismatch (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(wantFailed, failed, cmp.Comparer(func(a, b []int) bool { return len(a) == len(b) && (len(a) == 0 || cmp.Equal(a, b)) })); diff != "" {
			t.Errorf("recounted failed indexes mismatch (-want +got):\n%s", diff)
		}
	}
	set("job-a", events.JobPending)
	set("job-b", events.JobFailed)
	set("job-c", events.JobFailed)
	check(map[string]int{events.JobSubmitted: 2, events.JobPending: 1, events.JobFailed: 2}, []int{1, 2})

	// job-d changes between the query and its write: it is retried.
	changedOnce := false
	m, err := api.UpdateMatching(ctx, bson.D{{Key: "array_id", Value: "arr-1"}, {Key: "status", Value: bson.D{{Key: "$ne", Value: events.JobFailed}}}},
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
}
