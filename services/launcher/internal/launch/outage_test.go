package launch

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/launcher/internal/driver"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// A job whose process ends while the store is away has its end written
// soon after the store is back, however long it was away: the failed
// writes meanwhile must not have grown the job's back-off past the outage
// (CI's fault run: the first admission came 13.1 s after the store's
// restart; admissions wait for the launcher to write ends). The launcher's
// client gives up after 300 ms, as a production one does after 30 s, so
// that 8.5 s hold as many failed tries as minutes would; its resync (which
// would queue the job again) is a minute away.
func TestJobEndIsWrittenPromptlyAfterStoreOutage(t *testing.T) {
	e := newEnv(t)
	outage := &mongotest.Outage{}
	cl, err := mongo.Connect(options.Client().ApplyURI(e.uri).SetDialer(outage).SetTimeout(300 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Disconnect(context.Background()) })
	e.launcherDB = cl.Database("rm")
	e.configure = func(c *Config, _ map[string]driver.Factory) { c.ResyncInterval = time.Minute }
	e.start()
	e.admit("job-outage", 1, "sleep 1", nil)
	e.wait("job-outage", "running", func(j events.Job) bool { return j.Status == events.JobRunning })

	outage.Down()
	time.Sleep(8500 * time.Millisecond) // the process ends meanwhile
	if j := e.job("job-outage"); final(j) {
		t.Fatalf("the job is %s while the store is away: the test takes nothing away", j.Status)
	}
	outage.Up()
	back := time.Now()
	j := e.wait("job-outage", "final", final)
	took := time.Since(back)
	t.Logf("%s %v after the store came back", j.Status, took.Round(time.Millisecond))
	if j.Status != events.JobSucceeded {
		t.Errorf("status %s, want succeeded", j.Status)
	}
	if took > 3*time.Second {
		t.Errorf("the end was written %v after the store came back, want within a few seconds", took.Round(time.Millisecond))
	}
}

// TestLogsWhileTheStoreCannotBeRead: a log asked for while the launcher
// cannot read its job from the store is 503, to ask again (the API answers
// it with Retry-After), saying why; a job that does not exist is 404.
// Before, any failure to find the instance's driver but the runtime's was
// 404: a log that may well exist was said not to.
func TestLogsWhileTheStoreCannotBeRead(t *testing.T) {
	e := newEnv(t)
	cl, err := mongo.Connect(options.Client().ApplyURI(e.uri))
	if err != nil {
		t.Fatal(err)
	}
	e.launcherDB = cl.Database("rm")
	e.start()
	e.admit("job-logs", 1, "exit 0", nil) // once run, the launcher answers logs
	e.wait("job-logs", "final", final)
	if status, reason := e.logsOf("job-unknown.worker.0"); status != "404" || !strings.Contains(reason, "job-unknown") {
		t.Errorf("a log of a job that does not exist: %s %q, want 404 naming the job", status, reason)
	}
	if err := cl.Disconnect(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Not known to the launcher's cache of instances: found from its job.
	if status, reason := e.logsOf("job-other.worker.0"); status != "503" || !strings.Contains(reason, "disconnected") {
		t.Errorf("a log while the store cannot be read: %s %q, want 503 saying why", status, reason)
	}
}

// TestLogsWhileTheStoreDoesNotAnswer: a log asked for while the launcher's
// read of its job from the store does not answer is 503 within the bound of
// finding its driver, saying why, before the API's 10 s for the whole
// answer are up. Before, the launcher waited up to 30 s, and the API
// answered only that the launcher did not answer.
func TestLogsWhileTheStoreDoesNotAnswer(t *testing.T) {
	e := newEnv(t)
	slow := &mongotest.SlowReplies{Match: [][]byte{[]byte("job-stuck")}, Delay: 20 * time.Second}
	cl, err := mongo.Connect(options.Client().ApplyURI(e.uri).SetDialer(slow))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Disconnect(context.Background()) })
	e.launcherDB = cl.Database("rm")
	e.configure = func(cfg *Config, _ map[string]driver.Factory) {
		b := defaultBounds
		b.logs = 500 * time.Millisecond
		cfg.bounds = &b
	}
	e.start()
	e.admit("job-logs", 1, "exit 0", nil) // once run, the launcher answers logs
	e.wait("job-logs", "final", final)
	start := time.Now()
	status, reason := e.logsOf("job-stuck.worker.0")
	took := time.Since(start)
	if status != "503" || !strings.Contains(reason, "took over 500ms (the store or the runtime does not answer)") {
		t.Errorf("a log while the store does not answer: %s %q, want 503 saying why", status, reason)
	}
	if took > 5*time.Second || slow.Matched.Load() == 0 {
		t.Errorf("answered after %s, the job read %d times: want within the bound, after reading the job", took.Round(time.Millisecond), slow.Matched.Load())
	}
}
