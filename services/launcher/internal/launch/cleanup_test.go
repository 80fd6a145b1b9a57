package launch

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/drivertest"
)

// cleaningDriver is a driver that tells of the cleanups it carried out.
type cleaningDriver struct {
	driver.Driver
	cleaned func(id string)
}

func (d *cleaningDriver) Cleanup(ctx context.Context, id string) error {
	if err := d.Driver.Cleanup(ctx, id); err != nil {
		return err
	}
	d.cleaned(id)
	return nil
}

// waitForLog waits until the log has a line containing every one of parts.
func waitForLog(t *testing.T, log *eventstest.SyncBuffer, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if slices.ContainsFunc(strings.Split(log.String(), "\n"), func(line string) bool {
			return !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) })
		}) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line of the launcher's log has all of %q", parts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCleanupWaitsForAnEngineThatIsDown: the cleanup of a job admitted on
// a docker plugin whose engine is down (it refuses connections: its driver
// cannot be made, so the launcher cannot know what the engine holds of the
// job) fails its rounds, and the job is not recorded cancelled, until the
// engine is back and its driver has cleaned the job up. Before, the
// launcher passed over a queue whose driver could not be made, and the
// cleanup counted done at once: the scheduler then recorded it cleaned,
// and whatever the engine held of the job was left there.
func TestCleanupWaitsForAnEngineThatIsDown(t *testing.T) {
	e := newEnv(t)
	engine := drivertest.ListenProxy(t, "/var/run/docker.sock")
	engine.Refuse()
	var logs eventstest.SyncBuffer
	e.logTo = &logs
	var mu sync.Mutex
	var cleaned []string
	e.configure = func(_ *Config, drivers map[string]driver.Factory) {
		docker := drivers["docker"]
		drivers["docker"] = func(raw json.RawMessage, opts driver.Options) (driver.Driver, error) {
			d, err := docker(raw, opts)
			if err != nil {
				return nil, err
			}
			return &cleaningDriver{Driver: d, cleaned: func(id string) {
				mu.Lock()
				defer mu.Unlock()
				cleaned = append(cleaned, id)
			}}, nil
		}
	}
	e.insert(PluginsCollection, map[string]any{"_id": "plg-down", "name": "down", "type": "docker",
		"config": map[string]any{"host": "tcp://" + engine.Addr}})
	e.insert(QueuesCollection, &events.Queue{Meta: events.Meta{ID: "q-down", Version: 1}, Name: "down", PluginID: "plg-down"})
	e.start()
	e.admit("job-down", 1, "sleep 60", nil, func(j *events.Job) {
		j.QueueID, j.QueueName = "q-down", "down"
		j.Runtime.Image = "rm-test-never-pulled:1"
	})
	e.wait("job-down", "showing the engine's trouble", func(j events.Job) bool {
		c := jobdoc.FindCondition(&j, jobdoc.CondStarted)
		return c != nil && c.Reason == jobdoc.ReasonRuntimeUnavailable
	})
	e.change("job-down", events.TypeJobCancelRequested, func(j *events.Job) { j.CancelRequested, j.CleanupRequested = true, true })

	// A round of the cleanup has failed for the engine: it wrote nothing.
	waitForLog(t, &logs, "key=job/job-down", "may hold its instances")
	if j := e.job("job-down"); j.Status != events.JobAdmitted {
		t.Fatalf("while the engine is down the job is %s, want admitted, its cleanup not done", j.Status)
	}
	engine.Pass()
	j := e.wait("job-down", "cancelled", final)
	if j.Status != events.JobCancelled {
		t.Fatalf("the job is %s, want cancelled", j.Status)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(cleaned, "job-down") {
		t.Errorf("the job was recorded cancelled, its cleanup done, and the engine's driver cleaned up %q, not the job", cleaned)
	}
}

// TestDeletedJobLeavesNothing: a job deleted as the API deletes it (its
// cleanup asked, its record removed with rm.job.deleted) leaves nothing on
// the local driver, its instances' logs neither, which a cleanup alone
// keeps; before, the logs of every deleted job stayed on disk, where
// nothing could read them any more.
func TestDeletedJobLeavesNothing(t *testing.T) {
	e := newEnv(t)
	e.start()
	for _, id := range []string{"job-kept", "job-gone"} {
		e.admit(id, 2, `echo ran`, nil)
		e.wait(id, "succeeded", final)
	}
	logOf := func(id string) string { return filepath.Join(e.dataDir, "local", id, "worker-1", "output.log") }
	for _, id := range []string{"job-kept", "job-gone"} {
		if _, err := os.Stat(logOf(id)); err != nil {
			t.Fatalf("%s's log after it ended: %v", id, err)
		}
	}
	e.change("job-kept", events.TypeJobUpdated, func(j *events.Job) { j.CleanupRequested = true })
	e.wait("job-kept", "cleaned up", func(j events.Job) bool {
		_, err := os.Stat(filepath.Join(e.dataDir, "local", j.ID, "worker-1", "record"))
		return os.IsNotExist(err)
	})
	e.deleteJob("job-gone")
	dir := filepath.Join(e.dataDir, "local", "job-gone")
	waitGone(t, dir, "the job was deleted")
	if _, err := os.Stat(logOf("job-kept")); err != nil {
		t.Errorf("the log of a job cleaned up, not deleted: %v, want it kept", err)
	}
}

// heldCleanup is a local driver whose first cleanup of a job waits until
// release is closed.
type heldCleanup struct {
	driver.Driver
	once    sync.Once
	held    chan struct{} // closed when the first cleanup waits
	release chan struct{}
}

func (h *heldCleanup) Cleanup(ctx context.Context, id string) error {
	h.once.Do(func() {
		close(h.held)
		<-h.release
	})
	return h.Driver.Cleanup(ctx, id)
}

func (h *heldCleanup) Purge(ctx context.Context, id string) error {
	return h.Driver.(driver.Purger).Purge(ctx, id)
}

// TestJobDeletedDuringItsCleanupLeavesNothing: a running job whose record
// is gone is being cleaned up (as when the API deletes it: the launcher
// reconciles its rm.job.cancel_requested and finds no record) when its
// rm.job.deleted event comes. Before, the end of that cleanup forgot the
// deletion that came meanwhile, so the next round only cleaned up too and
// the job's directory and logs stayed for good (a running job deleted
// with avxrm jobs rm kept them).
func TestJobDeletedDuringItsCleanupLeavesNothing(t *testing.T) {
	e := newEnv(t)
	h := &heldCleanup{held: make(chan struct{}), release: make(chan struct{})}
	e.configure = func(_ *Config, drivers map[string]driver.Factory) {
		local := drivers["local"]
		drivers["local"] = func(raw json.RawMessage, opts driver.Options) (driver.Driver, error) {
			d, err := local(raw, opts)
			h.Driver = d
			return h, err
		}
	}
	e.start()
	e.admit("job-running", 1, `echo ran; while :; do sleep 0.1; done`, nil)
	j := e.wait("job-running", "running", func(j events.Job) bool { return j.Status == events.JobRunning })
	ctx := context.Background()
	if _, err := e.db.Collection(JobsCollection).DeleteOne(ctx, map[string]any{"_id": "job-running"}); err != nil {
		t.Fatal(err)
	}
	pub := events.NewPublisher(e.js)
	publish := func(typ string) {
		t.Helper()
		j.Version++
		ev, err := events.New(typ, "/test", j.QueueID, j.ID, &j)
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	publish(events.TypeJobCancelRequested)
	<-h.held
	publish(events.TypeJobDeleted)
	time.Sleep(500 * time.Millisecond) // the launcher takes the event in
	close(h.release)
	dir := filepath.Join(e.dataDir, "local", "job-running")
	waitGone(t, dir, "the job was deleted")
}

// A job deleted while no launcher runs: the next launcher's consumer gets
// its rm.job.deleted event, and the job's directory goes with the logs.
func TestJobDeletedWhileLauncherDownLeavesNothing(t *testing.T) {
	e := newEnv(t)
	stop := e.start()
	e.admit("job-gone", 2, `echo ran`, nil)
	e.wait("job-gone", "succeeded", final)
	stop()
	e.deleteJob("job-gone")
	dir := filepath.Join(e.dataDir, "local", "job-gone")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("%s before the next launcher started: %v", dir, err)
	}
	e.start()
	waitGone(t, dir, "the next launcher started")
}

// deleteJob deletes job id as the API does, with its rm.job.deleted event.
func (e *env) deleteJob(id string) {
	e.t.Helper()
	err := jobdoc.New(e.db, e.ob, jobdoc.API, "/test").Delete(context.Background(), id, func(j *events.Job, _ time.Time) ([]string, error) {
		j.CleanupRequested = true
		return nil, nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// waitGone waits up to 30 s for dir to be removed, after what happened.
func waitGone(t *testing.T, dir, after string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(dir); os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is still there 30 s after %s", dir, after)
		}
	}
}
