package jobdoc_test

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/jobdoc"
)

// TestCache runs the launcher's cached Store (WithCache) on a real FerretDB:
// it starts from what it last read or wrote, drops that on an event's newer
// version (Forget) and on ForgetAll, keeps nothing read while an event was
// announcing a newer version, and a write from a stale entry conflicts and
// is retried on the stored job, losing nothing.
func TestCache(t *testing.T) {
	ctx := context.Background()
	w := startWriters(t, jobdoc.WithAttempts(2), jobdoc.WithCache())
	jobs := w.db.Collection(jobdoc.Collection)
	w.admitted(t, "job-1", 1)
	start := func(j *events.Job, now time.Time) ([]string, error) {
		j.Instances = append(j.Instances,
			events.Instance{Role: events.RoleController, Status: events.InstanceRunning, StartedAt: &now},
			events.Instance{Role: events.RoleWorker, Status: events.InstanceRunning, StartedAt: &now})
		j.Status, j.StartedAt = events.JobRunning, &now
		return []string{events.TypeJobRunning}, nil
	}
	if _, err := w.launcher.Update(ctx, "job-1", start); err != nil {
		t.Fatal(err)
	}

	// behind changes the stored job without a version or an event, which
	// no writer does: what the launcher sees of it tells whether it read
	// the store or its cache.
	behind := func(v string) {
		t.Helper()
		if _, err := jobs.UpdateOne(ctx, bson.D{{Key: "_id", Value: "job-1"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "labels.seen", Value: v}}}}); err != nil {
			t.Fatal(err)
		}
	}
	// look reconciles without a change and returns what it started from.
	look := func() *events.Job {
		t.Helper()
		var seen *events.Job
		if _, err := w.launcher.Update(ctx, "job-1", func(j *events.Job, _ time.Time) ([]string, error) {
			seen = j
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
		return seen
	}

	behind("1")
	if got := look(); got.Labels["seen"] != "" || got.Version != 3 || len(got.Instances) != 2 {
		t.Fatalf("after its own write the launcher started from labels %v, version %d, %d instances; want its write (no label, version 3, 2 instances)",
			got.Labels, got.Version, len(got.Instances))
	}

	// Its own write's event changes nothing; a newer version's does.
	w.launcher.Forget("job-1", 3)
	if got := look(); got.Labels["seen"] != "" {
		t.Errorf("after the event of its own write: labels %v, want the cached job", got.Labels)
	}
	if _, err := w.api.Update(ctx, "job-1", func(j *events.Job, _ time.Time) ([]string, error) {
		j.CancelRequested = true
		return []string{events.TypeJobUpdated}, nil
	}); err != nil {
		t.Fatal(err)
	}
	w.launcher.Forget("job-1", 4)
	if got := look(); !got.CancelRequested || got.Version != 4 || got.Labels["seen"] != "1" {
		t.Fatalf("after the event of version 4: cancel %v, version %d, labels %v; want the stored job", got.CancelRequested, got.Version, got.Labels)
	}

	// A write from a stale entry: the API's change (version 5) is not yet
	// announced. The write conflicts, and the retry starts from the store.
	if _, err := w.api.Update(ctx, "job-1", func(j *events.Job, _ time.Time) ([]string, error) {
		j.Labels = map[string]string{"seen": "1", "by": "api"}
		return []string{events.TypeJobUpdated}, nil
	}); err != nil {
		t.Fatal(err)
	}
	stored, err := w.launcher.Update(ctx, "job-1", func(j *events.Job, now time.Time) ([]string, error) {
		j.Instances[1].Status, j.Instances[1].FinishedAt = events.InstanceSucceeded, &now
		return []string{events.TypeJobUpdated}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if stored.Version != 6 || stored.Labels["by"] != "api" || stored.Instances[1].Status != events.InstanceSucceeded {
		t.Fatalf("write from a stale entry stored version %d, labels %v, worker %s; want 6 with the API's label and the launcher's change",
			stored.Version, stored.Labels, stored.Instances[1].Status)
	}

	// An event announces version 7 while the launcher reads version 6 (the
	// write of 7 is in flight): what it read is not kept.
	w.launcher.Forget("job-1", 7)
	look()
	behind("2")
	if got := look(); got.Labels["seen"] != "2" {
		t.Errorf("after a read older than the announced version: labels %v, want the store's (seen 2)", got.Labels)
	}

	// ForgetAll: the next reconciliation reads the store.
	if _, err := w.launcher.Update(ctx, "job-1", func(j *events.Job, now time.Time) ([]string, error) {
		j.Instances[0].Status, j.Instances[0].FinishedAt = events.InstanceSucceeded, &now
		return []string{events.TypeJobUpdated}, nil
	}); err != nil {
		t.Fatal(err)
	}
	behind("3")
	if got := look(); got.Labels["seen"] == "3" {
		t.Fatalf("the write of version 7 was not kept: labels %v", got.Labels)
	}
	w.launcher.ForgetAll()
	if got := look(); got.Labels["seen"] != "3" {
		t.Errorf("after ForgetAll: labels %v, want the store's (seen 3)", got.Labels)
	}
}
