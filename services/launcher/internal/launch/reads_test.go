package launch

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/launcher/internal/driver/registry"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestPluginResolutionIsReusedBriefly: resolving a queue's plugin and the
// default one for every job reconciled read the store twice per reconcile;
// within queueTTL a resolution is reused, and after it a change is seen.
func TestPluginResolutionIsReusedBriefly(t *testing.T) {
	e := newEnv(t)
	db, reads := countingDB(t, e.uri, finds(PluginsCollection, ""))
	s, err := New(Config{DataDir: e.dataDir}, Deps{DB: db, JS: e.js, Outbox: e.ob, Drivers: registry.Factories()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := db.Collection(PluginsCollection).InsertOne(ctx, bson.D{{Key: "_id", Value: "plg-a"}, {Key: "name", Value: "a"},
		{Key: "type", Value: "simulated"}, {Key: "version", Value: int64(1)}}); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if p, err := s.resolvePlugin(ctx, "a"); err != nil || p.ID != "plg-a" {
			t.Fatalf("resolvePlugin(a) = %+v, %v", p, err)
		}
		if p, err := s.resolvePlugin(ctx, ""); err != nil || p.ID != defaultPluginID {
			t.Fatalf("resolvePlugin(default) = %+v, %v; want the launcher's own default driver", p, err)
		}
	}
	if n := reads(); n != 2 {
		t.Errorf("100 resolutions of 2 plugins read the store %d times; want 2", n)
	}
	if _, err := s.resolvePlugin(ctx, "missing"); err == nil {
		t.Error("a plugin that does not exist resolved")
	}

	// Made the default: seen once the earlier resolution is older than queueTTL.
	if _, err := db.Collection(PluginsCollection).UpdateOne(ctx, bson.D{{Key: "_id", Value: "plg-a"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "is_default", Value: true}}}}); err != nil {
		t.Fatal(err)
	}
	s.pcache.mu.Lock()
	for k, r := range s.pcache.m {
		r.at = r.at.Add(-queueTTL - time.Millisecond)
		s.pcache.m[k] = r
	}
	s.pcache.mu.Unlock()
	if p, err := s.resolvePlugin(ctx, ""); err != nil || p.ID != "plg-a" {
		t.Errorf("default after the change and queueTTL = %+v, %v; want plg-a", p, err)
	}
}

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
	cl, err := mongo.Connect(options.Client().ApplyURI(uri).SetMonitor(mon))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Disconnect(context.Background()) })
	return cl.Database("rm"), n.Load
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
