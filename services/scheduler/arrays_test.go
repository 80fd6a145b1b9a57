package scheduler

import (
	"context"
	"slices"
	"testing"

	"github.com/avxrm/rm/pkg/events"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestCancelledArrayAdmitsNoMoreJobs: once an array's cancel is asked, a
// slot its running job frees is not given to a job of it that the API has
// not asked to cancel yet; one job's own cancel holds nothing back.
func TestCancelledArrayAdmitsNoMoreJobs(t *testing.T) {
	e := newEnv(t)
	q := e.queue("Default", ptr(10))
	arrays := e.db.Collection(events.JobArraysCollection)
	if _, err := arrays.InsertOne(context.Background(), bson.D{{Key: "_id", Value: "arr-1"}, {Key: "count", Value: 4}, {Key: "max_parallel", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	var x []string
	for i := range 4 {
		x = append(x, e.submit(q, 1, func(j *events.Job) { j.ArrayID, j.ArrayIndex = "arr-1", &i }))
	}
	e.start(testConfig())
	e.waitStatus(x[0], events.JobAdmitted)
	e.waitStatus(x[1], events.JobPending)

	// One job's own cancel: the array goes on.
	e.change(x[1], events.TypeJobCancelRequested, func(j *events.Job) bool { j.CancelRequested = true; return true })
	e.waitStatus(x[1], events.JobCancelled)
	e.finish(x[0], events.JobSucceeded)
	e.waitStatus(x[2], events.JobAdmitted)

	// The array's cancel: recorded on the array, then its jobs asked one
	// by one, the running one first here.
	if _, err := arrays.UpdateOne(context.Background(), bson.D{{Key: "_id", Value: "arr-1"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "cancel_requested", Value: true}}}}); err != nil {
		t.Fatal(err)
	}
	e.change(x[2], events.TypeJobCancelRequested, func(j *events.Job) bool { j.CancelRequested = true; return true })
	e.finish(x[2], events.JobCancelled)
	e.eventually("x2's lease released", func() bool { return e.ledger().Leases[x[2]] == nil })
	if l := e.ledger().Leases[x[3]]; l != nil {
		t.Fatalf("job 3 of the cancelled array got a lease: %+v", l)
	}
	e.change(x[3], events.TypeJobCancelRequested, func(j *events.Job) bool { j.CancelRequested = true; return true })
	e.waitStatus(x[3], events.JobCancelled)
	if types := e.jobEvents(x[3]); slices.Contains(types, events.TypeJobAdmitted) {
		t.Errorf("job 3 of the cancelled array was admitted: %v", types)
	}
}
