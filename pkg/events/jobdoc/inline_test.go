package jobdoc_test

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/pkg/events/jobdoc"
)

// A job of a few workers keeps its instances in its own document: the
// launcher's write makes no chunk, reads and pages give the instances as
// from chunks, the scheduler's later writes keep them, events carry none,
// and a job whose instances outgrow InlineMax moves them all to a chunk
// in one write and keeps chunks from then on.
func TestInlineInstances(t *testing.T) {
	ctx := context.Background()
	w := startWriters(t, jobdoc.WithAttempts(1))
	chunks := w.db.Collection(jobdoc.InstancesCollection)
	countChunks := func() int64 {
		t.Helper()
		n, err := chunks.CountDocuments(ctx, bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	const workers = jobdoc.InlineMax - 1 // with the controller: InlineMax instances
	w.admitted(t, "job-1", workers)
	if _, err := w.launcher.Update(ctx, "job-1", func(j *events.Job, now time.Time) ([]string, error) {
		for i := workers - 1; i >= 0; i-- { // out of order: the store sorts
			j.Instances = append(j.Instances, events.Instance{Role: events.RoleWorker, Index: i, Status: events.InstanceRunning, StartedAt: &now})
		}
		j.Instances = append(j.Instances, events.Instance{Role: events.RoleController, Status: events.InstanceRunning, StartedAt: &now})
		j.Status, j.StartedAt = events.JobRunning, &now
		return []string{events.TypeJobRunning}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if n := countChunks(); n != 0 {
		t.Errorf("%d chunk documents for a job of %d instances", n, workers+1)
	}
	// The scheduler's write (a later change of its own) keeps them.
	if _, err := w.sched.Update(ctx, "job-1", func(j *events.Job, now time.Time) ([]string, error) {
		j.CleanedAt = &now
		return []string{events.TypeJobCleaned}, nil
	}); err != nil {
		t.Fatal(err)
	}
	got, err := w.api.GetWithInstances(ctx, "job-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Instances) != workers+1 || got.Instances[0].Role != events.RoleController || got.Instances[workers].Index != workers-1 ||
		got.InstanceChunks != 0 || got.InstanceCounts[events.RoleWorker][events.InstanceRunning] != workers {
		t.Fatalf("read back: %d instances (first %+v), %d chunks, counts %v", len(got.Instances), got.Instances[0], got.InstanceChunks, got.InstanceCounts)
	}
	plain, err := w.api.Get(ctx, "job-1")
	if err != nil {
		t.Fatal(err)
	}
	if plain.Instances != nil {
		t.Errorf("Get returned %d instances", len(plain.Instances))
	}
	var seen []int
	for cursor := ""; ; {
		page, next, err := w.api.Instances(ctx, plain, jobdoc.InstanceQuery{Role: events.RoleWorker, Limit: 4, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range page {
			seen = append(seen, in.Index)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	for i, idx := range seen {
		if idx != i {
			t.Fatalf("paged workers %v", seen)
		}
	}
	if len(seen) != workers {
		t.Errorf("paged %d workers, want %d", len(seen), workers)
	}
	for _, e := range eventsOf(t, w, "job-1") {
		if _, ok := e["instances"]; ok {
			t.Errorf("an event carries instances: %v", e)
		}
		if _, ok := e["instances_inline"]; ok {
			t.Errorf("an event carries instances_inline: %v", e)
		}
	}

	// One more instance: past InlineMax, all move to a chunk in one write.
	if _, err := w.launcher.Update(ctx, "job-1", func(j *events.Job, now time.Time) ([]string, error) {
		j.Instances = append(j.Instances, events.Instance{Role: events.RolePostController, Status: events.InstanceRunning, StartedAt: &now})
		return []string{events.TypeJobUpdated}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if n := countChunks(); n != 1 {
		t.Errorf("%d chunk documents after outgrowing InlineMax, want 1", n)
	}
	var raw bson.Raw
	if raw, err = w.db.Collection(jobdoc.Collection).FindOne(ctx, bson.D{{Key: "_id", Value: "job-1"}}).Raw(); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.LookupErr("instances_inline"); err == nil {
		t.Error("the job document still holds inline instances after they moved to a chunk")
	}
	got, err = w.launcher.GetWithInstances(ctx, "job-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Instances) != workers+2 || got.InstanceChunks != 1 {
		t.Fatalf("after the move: %d instances, %d chunks", len(got.Instances), got.InstanceChunks)
	}
	// Back to few instances (a retry resets them): chunks stay.
	if _, err := w.launcher.Update(ctx, "job-1", func(j *events.Job, now time.Time) ([]string, error) {
		j.Instances = j.Instances[:2]
		return []string{events.TypeJobUpdated}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, err = w.launcher.GetWithInstances(ctx, "job-1"); err != nil || got.InstanceChunks != 1 || got.InlineInstances != nil {
		t.Errorf("after shrinking: %d chunks, %d inline, %v", got.InstanceChunks, len(got.InlineInstances), err)
	}
}

// eventsOf returns the data of job id's events, decoded.
func eventsOf(t *testing.T, w writers, id string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, e := range eventstest.ReadAll(t, w.js, "") {
		var data map[string]any
		if err := e.DecodeData(&data); err != nil {
			t.Fatal(err)
		}
		if data["id"] == id {
			out = append(out, data)
		}
	}
	return out
}
