package launch

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/services/launcher/internal/driver"
)

// rewriting is a driver whose statuses are seen through rewrite, as a
// runtime would report them.
type rewriting struct {
	driver.Driver
	rewrite func(driver.Status) driver.Status
}

func (r rewriting) List(ctx context.Context) ([]driver.Status, error) {
	sts, err := r.Driver.List(ctx)
	for i := range sts {
		sts[i] = r.rewrite(sts[i])
	}
	return sts, err
}

func (r rewriting) Watch(ctx context.Context) (<-chan driver.Status, error) {
	in, err := r.Driver.Watch(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan driver.Status)
	go func() {
		defer close(out)
		for st := range in {
			out <- r.rewrite(st)
		}
	}()
	return out, nil
}

// neverRuns is d with a job's controller and workers and a replica of
// generation 0 seen as kubernetes reports pods whose image the kubelet
// will never have: pending, never started, then Failed with
// driver.ReasonNeverRuns once they end.
func neverRuns(d driver.Driver) driver.Driver {
	return rewriting{d, func(st driver.Status) driver.Status {
		if st.Role == driver.RoleReplica && st.Index > 0 || st.Role == driver.RolePostController {
			return st
		}
		switch st.State {
		case driver.Running: // the pod waits, its container never started
			st.State, st.StartedAt = driver.Pending, time.Time{}
		case driver.Failed:
			st.Reason, st.Message, st.ExitCode, st.StartedAt = driver.ReasonNeverRuns, neverRunsMessage, nil, time.Time{}
		}
		return st
	}}
}

const neverRunsMessage = `InvalidImageName: couldn't parse image name "Sim:1": invalid reference format`

// TestReplicaThatNeverRunsShowsFailed: a replica the runtime will never
// run as it stands (kubernetes: InvalidImageName) shows its slot failed,
// with the deployment's Available condition saying why, not restarting as
// after an exit; the next generation is still tried after the back-off,
// and runs here.
func TestReplicaThatNeverRunsShowsFailed(t *testing.T) {
	e := newEnv(t)
	e.startFailOnce("dep-01N", neverRuns)
	read := func() deployment { return e.deployment("dep-01N") }
	deadline := time.Now().Add(30 * time.Second)
	var failed *deployment
	for d := read(); d.Status.ReadyReplicas != 1; d = read() {
		if len(d.Status.Replicas) == 1 && d.Status.Replicas[0].State != replicaStarting && d.Status.Replicas[0].State != replicaPending && failed == nil {
			failed = &d
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica never ran again: %+v", d.Status)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if failed == nil {
		t.Fatalf("the slot was never seen between its failed replica and the next: %+v", read().Status)
	}
	rep := failed.Status.Replicas[0]
	if rep.State != replicaFailed || rep.LastMessage != neverRunsMessage || rep.LastExitCode != nil {
		t.Errorf("slot after a replica that never runs: %+v, want failed with the runtime's message", rep)
	}
	var avail string
	for _, c := range failed.Status.Conditions {
		if c.Type == "Available" {
			avail = c.Status + " " + c.Reason + " " + c.Message
		}
	}
	if !strings.HasPrefix(avail, "False StartFailed replica 0: InvalidImageName") {
		t.Errorf("Available condition %q, want False, StartFailed, saying why", avail)
	}
	if rep := read().Status.Replicas[0]; rep.State != replicaRunning || rep.Restarts != 1 {
		t.Errorf("slot once the next generation runs: %+v", rep)
	}
}

// TestJobThatNeverRunsIsNotRetried: a worker the runtime will never run
// fails its job as a failed start, which retry_on "failed" does not
// retry. Before, kubernetes reported the pod's StartTime (set when the
// kubelet takes the pod, before the pull) as the instance's start, so the
// failure counted as an instance that ran and failed, and each retry
// failed the same way.
func TestJobThatNeverRunsIsNotRetried(t *testing.T) {
	e := newEnv(t)
	e.configure = func(_ *Config, drivers map[string]driver.Factory) {
		local := drivers["local"]
		drivers["local"] = func(raw json.RawMessage, opts driver.Options) (driver.Driver, error) {
			d, err := local(raw, opts)
			return neverRuns(d), err
		}
	}
	e.start()
	e.admit("job-never", 1, "exit 1", nil, func(j *events.Job) {
		j.MaxRetries, j.RetryOn = 2, []string{events.RetryOnFailed}
	})
	j := e.wait("job-never", "failed", final)
	failed, started := jobdoc.FindCondition(&j, condFailed), jobdoc.FindCondition(&j, jobdoc.CondStarted)
	if j.Status != events.JobFailed || failed == nil || failed.Reason != reasonStartFailed || !strings.Contains(failed.Message, "InvalidImageName") ||
		started == nil || started.Status != "False" || started.Reason != reasonStartFailed {
		t.Errorf("job %s, conditions %+v: want failed with StartFailed saying why", j.Status, j.Conditions)
	}
	if j.Attempt > 1 || len(j.Attempts) > 0 {
		t.Errorf("a worker that never runs was retried: attempt %d %+v", j.Attempt, j.Attempts)
	}
}
