package jobdoc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/pkg/events/indexed/ferretlookup"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// TestStore runs a job of 2,500 workers through the three writers' stores
// on a real FerretDB and JetStream: instances land in chunks, events carry
// counts and no instances, pages cover every instance once, a writer
// changing another's field is refused, and a deletion removes the chunks.
func TestStore(t *testing.T) {
	ctx := context.Background()
	w := startWriters(t, jobdoc.WithAttempts(1))
	db, js, api, sched, launcher := w.db, w.js, w.api, w.sched, w.launcher

	const workers = 2500
	now := time.Now().UTC().Truncate(time.Millisecond)
	j := &events.Job{Meta: events.Meta{ID: "job-1", Version: 1, CreatedAt: now}, QueueID: "q-1",
		WorkerInstances: workers, Status: events.JobSubmitted, SubmittedAt: now}
	if err := api.Create(ctx, j, events.TypeJobSubmitted); err != nil {
		t.Fatal(err)
	}
	if _, err := sched.Update(ctx, "job-1", func(j *events.Job, now time.Time) ([]string, error) {
		j.Status, j.AdmittedAt = events.JobAdmitted, &now
		return []string{events.TypeJobAdmitted}, nil
	}); err != nil {
		t.Fatal(err)
	}
	_, err := launcher.Update(ctx, "job-1", func(j *events.Job, now time.Time) ([]string, error) {
		for i := workers - 1; i >= 0; i-- { // out of order: the store sorts
			j.Instances = append(j.Instances, events.Instance{Role: events.RoleWorker, Index: i, Status: events.InstanceRunning, StartedAt: &now})
		}
		j.Instances = append(j.Instances, events.Instance{Role: events.RoleController, Status: events.InstanceRunning, StartedAt: &now})
		j.Status, j.StartedAt = events.JobRunning, &now
		return []string{events.TypeJobRunning}, nil
	})
	if err != nil {
		t.Fatal(err)
	}

	got, err := launcher.GetWithInstances(ctx, "job-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Instances) != workers+1 || got.Instances[0].Role != events.RoleController || got.Instances[workers].Index != workers-1 {
		t.Fatalf("instances read back: %d, first %+v", len(got.Instances), got.Instances[0])
	}
	if got.InstanceCounts[events.RoleWorker][events.InstanceRunning] != workers || got.InstanceChunks != 3 {
		t.Errorf("counts %v, chunks %d", got.InstanceCounts, got.InstanceChunks)
	}
	var raw bson.Raw
	if raw, err = db.Collection(jobdoc.Collection).FindOne(ctx, bson.D{{Key: "_id", Value: "job-1"}}).Raw(); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.LookupErr("instances"); err == nil || len(raw) > 8<<10 {
		t.Errorf("job document of %d bytes holds instances: %v", len(raw), err)
	}
	for _, e := range eventstest.ReadAll(t, js, "") {
		var data map[string]any
		if err := e.DecodeData(&data); err != nil {
			t.Fatal(err)
		}
		if _, ok := data["instances"]; ok || data["instance_counts"] == nil {
			t.Errorf("%s event carries instances or no counts: %d bytes", e.Type, len(e.Data))
		}
	}

	seen, cursor := 0, ""
	for {
		page, next, err := api.Instances(ctx, got, jobdoc.InstanceQuery{Role: events.RoleWorker, Limit: 700, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range page {
			if in.Index != seen {
				t.Fatalf("page from %q: worker %d, want %d", cursor, in.Index, seen)
			}
			seen++
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if seen != workers {
		t.Errorf("paged %d workers, want %d", seen, workers)
	}
	for _, bad := range []string{"x", "-1", "0", "01", "99999999"} {
		if _, _, err := api.Instances(ctx, got, jobdoc.InstanceQuery{Limit: 1, Cursor: bad}); !errors.Is(err, jobdoc.ErrBadCursor) {
			t.Errorf("cursor %q: %v, want ErrBadCursor", bad, err)
		}
	}

	if _, err := sched.Update(ctx, "job-1", func(j *events.Job, _ time.Time) ([]string, error) {
		j.CancelRequested = true
		return []string{events.TypeJobCancelRequested}, nil
	}); !errors.Is(err, jobdoc.ErrNotOwner) {
		t.Errorf("the scheduler wrote cancel_requested: %v", err)
	}

	if err := api.Delete(ctx, "job-1", func(*events.Job, time.Time) ([]string, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if n, _ := db.Collection(jobdoc.InstancesCollection).CountDocuments(ctx, bson.D{}); n != 0 {
		t.Errorf("%d instance chunks left after the deletion", n)
	}
	if _, err := api.Get(ctx, "job-1"); !errors.Is(err, jobdoc.ErrNotFound) {
		t.Errorf("Get after Delete: %v", err)
	}
}

// writers are the three writers' stores of one real FerretDB and JetStream.
type writers struct {
	db                   *mongo.Database
	srv                  *ferretembed.Server
	js                   jetstream.JetStream
	api, sched, launcher *jobdoc.Store
}

func startWriters(t *testing.T, launcherOpts ...jobdoc.Option) writers {
	uri, srv := mongotest.Start(t)
	db := mongotest.Client(t, uri).Database("rm")
	js := eventstest.Run(t)
	ob := outbox.New(events.NewPublisher(js), nil)
	return writers{
		db: db, srv: srv, js: js,
		api:      jobdoc.New(db, ob, jobdoc.API, "/api", jobdoc.WithLookup(ferretlookup.New(srv, "rm"))), // as the all-in-one's API
		sched:    jobdoc.New(db, ob, jobdoc.Scheduler, "/scheduler"),
		launcher: jobdoc.New(db, ob, jobdoc.Launcher, "/launcher", launcherOpts...),
	}
}

// admitted stores job id of workers workers, submitted by the API and
// admitted by the scheduler: where the launcher takes over.
func (w writers) admitted(t *testing.T, id string, workers int) {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	if err := w.api.Create(ctx, &events.Job{Meta: events.Meta{ID: id, Version: 1, CreatedAt: now}, QueueID: "q-1",
		WorkerInstances: workers, Status: events.JobSubmitted, SubmittedAt: now}, events.TypeJobSubmitted); err != nil {
		t.Fatal(err)
	}
	if _, err := w.sched.Update(ctx, id, func(j *events.Job, now time.Time) ([]string, error) {
		j.Status, j.AdmittedAt = events.JobAdmitted, &now
		return []string{events.TypeJobAdmitted}, nil
	}); err != nil {
		t.Fatal(err)
	}
}
