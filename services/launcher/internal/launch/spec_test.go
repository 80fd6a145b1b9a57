package launch

import (
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/google/go-cmp/cmp"
)

func TestJobSpec(t *testing.T) {
	five := 5.0
	job := &events.Job{
		Meta: events.Meta{ID: "job-1"}, QueueID: "q-w", WorkerInstances: 3,
		Runtime: events.RuntimeSpec{
			Image: "reg/sim:1", Command: []string{"/sim"}, Args: []string{"--fast"}, WorkingDirectory: "/work",
			EnvironmentVariables: map[string]string{"A": "job", "Q": "worker-queue", EnvSimRunSeconds: "5"},
			ResourceLimits:       &events.ResourceLimits{CPU: "2", Memory: "4Gi"},
		},
	}
	workQ := &events.Queue{Meta: events.Meta{ID: "q-w"}, EnvironmentVariables: map[string]string{"Q": "worker-queue"},
		ResourceLimits: &events.ResourceLimits{CPU: "1"},
		Storages:       []events.Storage{{Name: "data", Type: "pvc", Source: "claim", MountPath: "/data", ReadOnly: true}},
		Attributes: &events.QueueAttributes{NodeSelector: map[string]string{"pool": "sim"},
			Tolerations: []events.Toleration{{Key: "k", Operator: "Equal", Value: "v", Effect: "NoSchedule"}},
			Labels:      map[string]string{"team": "adas"}, Annotations: map[string]string{"a": "b"}, ServiceAccount: "runner"}}
	ctlQ := &events.Queue{Meta: events.Meta{ID: "q-c"}, EnvironmentVariables: map[string]string{"Q": "controller-queue", "C": "ctl"},
		ResourceLimits: &events.ResourceLimits{Memory: "1Gi"}}

	tests := map[string]struct {
		role  string
		index int
		queue *events.Queue
		want  driver.Spec
	}{
		"worker: runtime env and limits, queue storages and attributes": {
			role: events.RoleWorker, index: 2, queue: workQ,
			want: driver.Spec{
				Ref: driver.Ref{JobID: "job-1", Role: driver.RoleWorker, Index: 2}, Queue: "q-w",
				Image: "reg/sim:1", Command: []string{"/sim"}, Args: []string{"--fast"}, WorkingDir: "/work",
				Env: map[string]string{"A": "job", "Q": "worker-queue", EnvSimRunSeconds: "5", EnvJobID: "job-1", EnvRole: "worker",
					EnvInstanceIndex: "2", EnvWorkerInstances: "3", EnvAPIURL: "http://api"},
				Resources:    driver.Resources{CPU: "2", Memory: "4Gi"},
				Storages:     []driver.Storage{{Name: "data", Type: driver.StoragePVC, Source: "claim", MountPath: "/data", ReadOnly: true}},
				NodeSelector: map[string]string{"pool": "sim"},
				Tolerations:  []driver.Toleration{{Key: "k", Operator: "Equal", Value: "v", Effect: "NoSchedule"}},
				Labels:       map[string]string{"team": "adas"}, Annotations: map[string]string{"a": "b"}, ServiceAccount: "runner",
				RunSeconds: &five,
			},
		},
		"controller: its queue's variables under the job's, its queue's limits": {
			role: events.RoleController, index: 0, queue: ctlQ,
			want: driver.Spec{
				Ref: driver.Ref{JobID: "job-1", Role: driver.RoleController}, Queue: "q-c",
				Image: "reg/sim:1", Command: []string{"/sim"}, Args: []string{"--fast"}, WorkingDir: "/work",
				Env: map[string]string{"A": "job", "C": "ctl", "Q": "worker-queue", EnvSimRunSeconds: "5", EnvJobID: "job-1",
					EnvRole: "controller", EnvInstanceIndex: "0", EnvWorkerInstances: "3", EnvAPIURL: "http://api"},
				Resources:  driver.Resources{Memory: "1Gi"},
				RunSeconds: &five,
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := jobSpec(job, tc.role, tc.index, tc.queue, "http://api")
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("jobSpec() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestApplyAndFailure(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 678901234, time.UTC)
	ms := t0.Truncate(time.Millisecond)
	two := 2
	tests := map[string]struct {
		rec      events.Instance
		st       driver.Status
		stopping bool
		want     events.Instance
	}{
		"running": {
			rec:  events.Instance{Role: "worker", Index: 1, Status: events.InstancePending},
			st:   driver.Status{State: driver.Running, StartedAt: t0},
			want: events.Instance{Role: "worker", Index: 1, Status: events.InstanceRunning, StartedAt: &ms},
		},
		"failed with its code": {
			rec:  events.Instance{Role: "worker", Index: 3, Status: events.InstanceRunning, StartedAt: &ms},
			st:   driver.Status{State: driver.Failed, ExitCode: &two, StartedAt: t0, FinishedAt: t0},
			want: events.Instance{Role: "worker", Index: 3, Status: events.InstanceFailed, ExitCode: &two, StartedAt: &ms, FinishedAt: &ms},
		},
		"a failure while stopping is a stop": {
			rec:      events.Instance{Role: "worker", Index: 0, Status: events.InstanceRunning, StartedAt: &ms},
			st:       driver.Status{State: driver.Failed, ExitCode: &two, StartedAt: t0, FinishedAt: t0, Message: "stopped"},
			stopping: true,
			want:     events.Instance{Role: "worker", Index: 0, Status: events.InstanceStopped, ExitCode: &two, StartedAt: &ms, FinishedAt: &ms, Message: "stopped"},
		},
		"a failure of its own while stopping is a failure": {
			rec:      events.Instance{Role: "worker", Index: 0, Status: events.InstanceRunning, StartedAt: &ms},
			st:       driver.Status{State: driver.Failed, ExitCode: &two, Reason: driver.ReasonExited, StartedAt: t0, FinishedAt: t0},
			stopping: true,
			want:     events.Instance{Role: "worker", Index: 0, Status: events.InstanceFailed, ExitCode: &two, StartedAt: &ms, FinishedAt: &ms},
		},
		"an instance the runtime lost is lost": {
			rec:  events.Instance{Role: "worker", Index: 2, Status: events.InstanceRunning, StartedAt: &ms},
			st:   driver.Status{State: driver.Failed, Reason: driver.ReasonLost, Message: "container removed", StartedAt: t0, FinishedAt: t0},
			want: events.Instance{Role: "worker", Index: 2, Status: events.InstanceFailed, Message: lostMessage, StartedAt: &ms, FinishedAt: &ms},
		},
		"a final record keeps its status": {
			rec:  events.Instance{Role: "worker", Index: 0, Status: events.InstanceStopped, FinishedAt: &ms},
			st:   driver.Status{State: driver.Failed, ExitCode: &two, StartedAt: t0, FinishedAt: t0},
			want: events.Instance{Role: "worker", Index: 0, Status: events.InstanceStopped, ExitCode: &two, StartedAt: &ms, FinishedAt: &ms},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			rec := tc.rec
			apply(&rec, tc.st, tc.stopping)
			if diff := cmp.Diff(tc.want, rec); diff != "" {
				t.Errorf("apply() mismatch (-want +got):\n%s", diff)
			}
			if again := rec; apply(&again, tc.st, tc.stopping) {
				t.Errorf("apply() of the same status again reports a change")
			}
		})
	}
	for in, want := range map[*events.Instance]string{
		{Role: "worker", Index: 3, ExitCode: &two}: "worker 3 exited with code 2",
		// The runtime's word on how it ended reaches the job: a container
		// killed for its memory limit said only "exited with code 137".
		{Role: "controller", ExitCode: intPtr(137), Message: "out of memory"}: "controller 0 exited with code 137: out of memory",
		{Role: "worker", Index: 1, Message: "start failed: no image"}:         "worker 1 failed: start failed: no image",
	} {
		if got := failureMessage(in); got != want {
			t.Errorf("failureMessage(%+v) = %q, want %q", *in, got, want)
		}
	}
}

func TestSplitSlot(t *testing.T) {
	tests := map[string]struct {
		id   string
		dep  string
		slot int
		ok   bool
	}{
		"slot":       {id: slotID("dep-01ABCRXYZ", 12), dep: "dep-01ABCRXYZ", slot: 12, ok: true},
		"a job":      {id: "job-01ABC-r1", ok: false},
		"no slot":    {id: "dep-01ABC", ok: false},
		"bad number": {id: "dep-01ABC-rx", ok: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dep, slot, ok := splitSlot(tc.id)
			if diff := cmp.Diff([]any{tc.dep, tc.slot, tc.ok}, []any{dep, slot, ok}); diff != "" {
				t.Errorf("splitSlot(%q) mismatch (-want +got):\n%s", tc.id, diff)
			}
		})
	}
}
