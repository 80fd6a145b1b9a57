package launch

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// countingDB is a connection to database rm of the store at uri that
// counts the commands it sends for which match holds.
func countingDB(t *testing.T, uri string, match func(cmd string, doc bson.Raw) bool) (*mongo.Database, func() int64) {
	t.Helper()
	var n atomic.Int64
	mon := &event.CommandMonitor{Started: func(_ context.Context, ev *event.CommandStartedEvent) {
		if match(ev.CommandName, ev.Command) {
			n.Add(1)
		}
	}}
	return mongotest.SeenClient(t, uri, mon).Database("rm"), n.Load
}

// finds matches the finds on collection coll whose filter's _id is a
// string starting with idPrefix ("": any find on coll).
func finds(coll, idPrefix string) func(string, bson.Raw) bool {
	return func(cmd string, doc bson.Raw) bool {
		if c, _ := doc.Lookup("find").StringValueOK(); cmd != "find" || c != coll {
			return false
		}
		id, _ := doc.Lookup("filter", "_id").StringValueOK()
		return strings.HasPrefix(id, idPrefix)
	}
}

// TestJobsNotAdmittedAreNotRead: the events of jobs submitted and pending
// make the launcher read nothing (each event of theirs used to cost a read
// of the job); an admitted job is still run.
func TestJobsNotAdmittedAreNotRead(t *testing.T) {
	e := newEnv(t)
	var reads func() int64
	e.launcherDB, reads = countingDB(t, e.uri, finds(JobsCollection, "job-wait-"))
	e.start()
	now := time.Now().UTC().Truncate(time.Millisecond)
	for i := range 20 {
		j := &events.Job{Meta: events.Meta{ID: fmt.Sprintf("job-wait-%d", i), CreatedAt: now, UpdatedAt: now, Version: 1},
			QueueID: "q-Default", QueueName: "Default", WorkerInstances: 1, Status: events.JobSubmitted, SubmittedAt: now,
			Conditions: []events.Condition{}, Warnings: []string{}, Instances: []events.Instance{}}
		sub, err := events.New(events.TypeJobSubmitted, "/test", j.QueueID, j.ID, j)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.ob.Insert(context.Background(), e.db.Collection(JobsCollection), j.ID, j.Version, j, sub); err != nil {
			t.Fatal(err)
		}
		e.change(j.ID, events.TypeJobPending, func(j *events.Job) { j.Status = events.JobPending })
	}
	e.admit("job-run", 1, "true", nil)
	if j := e.wait("job-run", "final", final); j.Status != events.JobSucceeded {
		t.Fatalf("job-run: %s", j.Status)
	}
	if n := reads(); n != 0 {
		t.Errorf("the launcher read the 20 waiting jobs %d times (2 events each); want none", n)
	}
}
