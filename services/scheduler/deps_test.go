package scheduler

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/scheduler/internal/lease"
	"github.com/google/go-cmp/cmp"
)

// TestPlanPassGates: dependencies and arrays hold jobs back before admit.
func TestPlanPassGates(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	queues := map[string]*events.Queue{
		"q-d":   {Meta: events.Meta{ID: "q-d"}, Name: "Default"},
		"q-ctl": {Meta: events.Meta{ID: "q-ctl"}, Name: events.ControllerQueue},
	}
	job := func(id, status string, f ...func(*events.Job)) *events.Job {
		j := &events.Job{Meta: events.Meta{ID: id}, QueueID: "q-d", Status: status, WorkerInstances: 1, SubmittedAt: t0}
		for _, g := range f {
			g(j)
		}
		return j
	}
	after := func(cond string, ids ...string) func(*events.Job) {
		return func(j *events.Job) {
			for _, id := range ids {
				j.DependsOn = append(j.DependsOn, events.JobDependency{JobID: id, Condition: cond})
			}
		}
	}
	inArray := func(i int) func(*events.Job) {
		return func(j *events.Job) { j.ArrayID, j.ArrayIndex = "arr-1", &i }
	}
	cases := map[string]struct {
		jobs   []*events.Job
		finals map[string]string
		want   planSummary
	}{
		"waits while its dependency runs": {
			jobs: []*events.Job{job("a", events.JobRunning), job("b", events.JobPending, after("succeeded", "a"))},
			want: planSummary{Waits: []string{"b WaitingForDependency"}},
		},
		"admitted once its dependency succeeded": {
			jobs: []*events.Job{job("a", events.JobSucceeded), job("b", events.JobPending, after("succeeded", "a"))},
			want: planSummary{Grants: []string{"b"}, AdmitJobs: []string{"b"}},
		},
		"admitted once a dependency that left the picture succeeded": {
			jobs: []*events.Job{job("b", events.JobPending, after("succeeded", "a"))}, finals: map[string]string{"a": events.JobSucceeded},
			want: planSummary{Grants: []string{"b"}, AdmitJobs: []string{"b"}},
		},
		"cancelled when its dependency failed": {
			jobs: []*events.Job{job("b", events.JobPending, after("succeeded", "a"))}, finals: map[string]string{"a": events.JobFailed},
			want: planSummary{Cancels: []string{"b DependencyFailed"}},
		},
		"cancelled when its dependency is gone": {
			jobs: []*events.Job{job("b", events.JobPending, after("succeeded", "a"))}, finals: map[string]string{"a": gone},
			want: planSummary{Cancels: []string{"b DependencyFailed"}},
		},
		"finished accepts a failure": {
			jobs: []*events.Job{job("b", events.JobPending, after("finished", "a"))}, finals: map[string]string{"a": events.JobFailed},
			want: planSummary{Grants: []string{"b"}, AdmitJobs: []string{"b"}},
		},
		"one failed dependency of two cancels": {
			jobs:   []*events.Job{job("a", events.JobRunning), job("c", events.JobPending, after("succeeded", "a", "b"))},
			finals: map[string]string{"b": events.JobCancelled},
			want:   planSummary{Cancels: []string{"c DependencyFailed"}},
		},
		"an unknown dependency waits (its status is being read)": {
			jobs: []*events.Job{job("b", events.JobSubmitted, after("finished", "a"))},
			want: planSummary{Waits: []string{"b WaitingForDependency"}},
		},
		"an array admits up to max_parallel, lowest indexes first": {
			jobs: []*events.Job{job("x0", events.JobRunning, inArray(0)), job("x1", events.JobSubmitted, inArray(1)),
				job("x2", events.JobSubmitted, inArray(2)), job("x3", events.JobSubmitted, inArray(3))},
			want: planSummary{Grants: []string{"x1"}, AdmitJobs: []string{"x1"}, Waits: []string{"x2 ArrayMaxParallel", "x3 ArrayMaxParallel"}},
		},
		"a finished array job frees its slot": {
			jobs: []*events.Job{job("x0", events.JobSucceeded, inArray(0)), job("x1", events.JobAdmitted, inArray(1)),
				job("x2", events.JobPending, inArray(2)), job("x3", events.JobPending, inArray(3))},
			want: planSummary{Grants: []string{"x2"}, AdmitJobs: []string{"x2"}, Waits: []string{"x3 ArrayMaxParallel"}},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			jobs := map[string]*events.Job{}
			for _, j := range tc.jobs {
				jobs[j.ID] = j
			}
			ledger := lease.Ledger{Leases: map[string][]lease.Claim{}}
			for _, j := range tc.jobs {
				if j.Status == events.JobRunning || j.Status == events.JobAdmitted {
					ledger.Leases[j.ID] = []lease.Claim{{Queue: "q-d", Count: 1}, {Queue: "q-ctl", Count: 1}}
				}
			}
			g := gate{finals: tc.finals, maxParallel: map[string]int{"arr-1": 2}}
			p := planPass(ledger, queues, jobs, t0, g)
			p.change.Releases = nil // final jobs' leases: not what this test is about
			got := summarize(p)
			for _, c := range p.depCancels {
				got.Cancels = append(got.Cancels, c.id+" "+c.reason)
			}
			slices.Sort(got.Cancels)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("planPass() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDependencyMessages: a held job's message names the jobs it waits for,
// or those that can no longer meet their condition, up to maxListed of
// them, so that a long depends_on is not cut off mid-id.
func TestDependencyMessages(t *testing.T) {
	ids := func(prefix string, n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("%s%03d", prefix, i))
		}
		return out
	}
	cases := map[string]struct {
		succeeded, finished []string
		finals              map[string]string
		wantWait, wantFail  bool
		want                string
	}{
		"one": {succeeded: []string{"job-a"}, wantWait: true, want: "waiting for job-a to succeed"},
		"a few, of both conditions": {succeeded: []string{"job-a", "job-b"}, finished: []string{"job-c"}, wantWait: true,
			want: "waiting for 3 jobs: job-a to succeed, job-b to succeed, job-c to finish"},
		"a hundred": {succeeded: ids("job-", 100), wantWait: true,
			want: "waiting for 100 jobs: job-000 to succeed, job-001 to succeed, job-002 to succeed, job-003 to succeed, job-004 to succeed, " +
				"job-005 to succeed, job-006 to succeed, job-007 to succeed, job-008 to succeed, job-009 to succeed and 90 more"},
		"met ones are not counted": {succeeded: ids("job-", 12), finals: map[string]string{"job-000": events.JobSucceeded, "job-001": events.JobSucceeded},
			wantWait: true, want: "waiting for 10 jobs: job-002 to succeed, job-003 to succeed, job-004 to succeed, job-005 to succeed, " +
				"job-006 to succeed, job-007 to succeed, job-008 to succeed, job-009 to succeed, job-010 to succeed, job-011 to succeed"},
		"one broken": {succeeded: []string{"job-a", "job-b"}, finals: map[string]string{"job-a": events.JobFailed}, wantFail: true,
			want: "dependency can no longer succeed: job-a failed"},
		"a hundred broken": {succeeded: ids("job-", 100), finals: func() map[string]string {
			f := map[string]string{}
			for _, id := range ids("job-", 100) {
				f[id] = events.JobCancelled
			}
			return f
		}(), wantFail: true,
			want: "100 dependencies can no longer succeed: job-000 was cancelled, job-001 was cancelled, job-002 was cancelled, " +
				"job-003 was cancelled, job-004 was cancelled, job-005 was cancelled, job-006 was cancelled, job-007 was cancelled, " +
				"job-008 was cancelled, job-009 was cancelled and 90 more"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			j := &events.Job{Meta: events.Meta{ID: "j"}}
			for _, id := range tc.succeeded {
				j.DependsOn = append(j.DependsOn, events.JobDependency{JobID: id, Condition: events.DependencySucceeded})
			}
			for _, id := range tc.finished {
				j.DependsOn = append(j.DependsOn, events.JobDependency{JobID: id, Condition: events.DependencyFinished})
			}
			wait, failed, msg := gate{finals: tc.finals}.depHold(j, map[string]*events.Job{})
			if diff := cmp.Diff([]any{tc.wantWait, tc.wantFail, tc.want}, []any{wait, failed, msg}); diff != "" {
				t.Errorf("depHold() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
