package scheduler

import (
	"slices"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/scheduler/internal/lease"
	"github.com/google/go-cmp/cmp"
)

// planSummary is what a test compares of a plan.
type planSummary struct {
	Grants, Releases, AdmitJobs, AdmitPCs, Cancels, Waits, Cleans, Requeues []string
}

func summarize(p plan) planSummary {
	var s planSummary
	for h := range p.change.Grants {
		s.Grants = append(s.Grants, h)
	}
	s.Releases = p.change.Releases
	s.AdmitJobs, s.AdmitPCs, s.Cancels, s.Cleans = p.admitJobs, p.admitPCs, p.cancels, p.cleans
	s.Requeues = p.requeues
	for _, w := range p.waits {
		s.Waits = append(s.Waits, w.id+" "+w.reason)
	}
	for _, l := range [][]string{s.Grants, s.Releases, s.AdmitJobs, s.AdmitPCs, s.Cancels, s.Waits, s.Cleans} {
		slices.Sort(l)
	}
	return s
}

// limitedQueues are the queues of the plan tests: Default ("q-d") limited to
// limit workers and the controller queue ("q-ctl").
func limitedQueues(limit int) map[string]*events.Queue {
	return map[string]*events.Queue{
		"q-d":   {Meta: events.Meta{ID: "q-d"}, Name: "Default", MaximumAllowedWorkerInstances: &limit},
		"q-ctl": {Meta: events.Meta{ID: "q-ctl"}, Name: events.ControllerQueue},
	}
}

func TestPlanPass(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	queues := limitedQueues(10)
	queues["q-pc"] = &events.Queue{Meta: events.Meta{ID: "q-pc"}, Name: events.PostControllerQueue}
	job := func(id, status string, workers int, f ...func(*events.Job)) *events.Job {
		j := &events.Job{Meta: events.Meta{ID: id}, QueueID: "q-d", Status: status, WorkerInstances: workers, SubmittedAt: t0}
		for _, g := range f {
			g(j)
		}
		return j
	}
	held := func(holders ...string) lease.Ledger {
		l := lease.Ledger{Leases: map[string][]lease.Claim{}}
		for _, h := range holders {
			l.Leases[h] = []lease.Claim{{Queue: "q-d", Count: 8}, {Queue: "q-ctl", Count: 1}}
		}
		return l
	}
	cases := map[string]struct {
		ledger lease.Ledger
		jobs   []*events.Job
		want   planSummary
	}{
		"a job that fits is granted and recorded": {
			ledger: held(), jobs: []*events.Job{job("j1", events.JobSubmitted, 8)},
			want: planSummary{Grants: []string{"j1"}, AdmitJobs: []string{"j1"}},
		},
		"a job that does not fit waits": {
			ledger: held("j1"), jobs: []*events.Job{job("j1", events.JobRunning, 8), job("j2", events.JobPending, 8)},
			want: planSummary{Waits: []string{"j2 InsufficientWorkerCapacity"}},
		},
		"a final job's lease is released and its capacity reused in the same pass": {
			ledger: held("j1"), jobs: []*events.Job{job("j1", events.JobSucceeded, 8), job("j2", events.JobPending, 8)},
			want: planSummary{Grants: []string{"j2"}, Releases: []string{"j1"}, AdmitJobs: []string{"j2"}},
		},
		"a job cancelled before admission is cancelled, not admitted": {
			ledger: held(), jobs: []*events.Job{job("j1", events.JobPending, 1, func(j *events.Job) { j.CancelRequested = true })},
			want: planSummary{Cancels: []string{"j1"}},
		},
		"a granted job not yet recorded is recorded": {
			ledger: held("j1"), jobs: []*events.Job{job("j1", events.JobSubmitted, 8)},
			want: planSummary{AdmitJobs: []string{"j1"}},
		},
		"a retried job's old lease is released, not recorded again, and the job asks anew next pass": {
			ledger: held("j1"), jobs: []*events.Job{job("j1", events.JobSubmitted, 8, func(j *events.Job) {
				j.AdmittedAt, j.Attempt = &t0, 2
				j.Attempts = []events.JobAttempt{{Attempt: 1, Outcome: events.RetryOnFailed, AdmittedAt: &t0, FinishedAt: t0}}
			})},
			want: planSummary{Releases: []string{"j1"}, Requeues: []string{"j1"}},
		},
		"a retried job granted anew but not yet recorded is recorded": {
			ledger: held("j1"), jobs: []*events.Job{job("j1", events.JobPending, 8, func(j *events.Job) {
				j.Attempt = 2
				j.Attempts = []events.JobAttempt{{Attempt: 1, Outcome: events.RetryOnFailed, AdmittedAt: &t0, FinishedAt: t0}}
			})},
			want: planSummary{AdmitJobs: []string{"j1"}},
		},
		"a final job asked to be cleaned is cleaned once its lease goes": {
			ledger: held("j1"), jobs: []*events.Job{job("j1", events.JobFailed, 8, func(j *events.Job) { j.CleanupRequested = true })},
			want: planSummary{Releases: []string{"j1"}, Cleans: []string{"j1"}},
		},
		"a post controller asked for is granted": {
			ledger: held(), jobs: []*events.Job{job("j1", events.JobSucceeded, 1, func(j *events.Job) {
				j.PostController = &events.PostController{Status: pcPending, RequestedAt: t0}
			})},
			want: planSummary{Grants: []string{"j1" + postControllerSuffix}, AdmitPCs: []string{"j1"}},
		},
		"a post controller asked to stop gives its lease back": {
			ledger: held("j1" + postControllerSuffix), jobs: []*events.Job{job("j1", events.JobSucceeded, 1, func(j *events.Job) {
				j.PostController = &events.PostController{Status: pcAdmitted, RequestedAt: t0, StopRequested: true}
			})},
			want: planSummary{Releases: []string{"j1" + postControllerSuffix}},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			jobs := map[string]*events.Job{}
			for _, j := range tc.jobs {
				jobs[j.ID] = j
			}
			got := summarize(planPass(tc.ledger, queues, jobs, t0, gate{}))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("planPass() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
