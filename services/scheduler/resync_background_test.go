package scheduler

import (
	"log/slog"
	"testing"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/scheduler/internal/lease"
)

// A snapshot read while the loop went on must not undo what the loop
// learned meanwhile, and must still show what it missed.
func TestApplyBackgroundResync(t *testing.T) {
	job := func(id, status string, v int64) *events.Job {
		return &events.Job{Meta: events.Meta{ID: id, Version: v}, Status: status, QueueID: "q"}
	}
	tm := &term{
		epoch: 3, log: slog.Default(),
		ledger:  lease.Ledger{Epoch: 3, Version: 11},
		queues:  map[string]*events.Queue{},
		retired: map[string]int64{"job-finished": 5},
		jobs: map[string]*events.Job{
			"job-unchanged": job("job-unchanged", events.JobPending, 2), // gone from MongoDB before the read
			"job-changed":   job("job-changed", events.JobAdmitted, 3),  // admitted by the loop during the read
			"job-new":       job("job-new", events.JobSubmitted, 1),     // submitted during the read
		},
	}
	base := &resyncBase{ledger: 10, jobs: map[string]int64{"job-unchanged": 2, "job-changed": 2, "job-finished": 4}}
	snap := resyncSnapshot{
		ledger: lease.Ledger{Epoch: 3, Version: 10},
		jobs: []*events.Job{
			job("job-changed", events.JobPending, 2),
			job("job-finished", events.JobRunning, 4), // final since, retired at 5
			job("job-missed", events.JobSubmitted, 1), // its event never came
		},
	}
	if err := tm.applyResync(snap, base); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"job-changed": events.JobAdmitted, "job-new": events.JobSubmitted, "job-missed": events.JobSubmitted}
	if len(tm.jobs) != len(want) {
		t.Errorf("jobs %v, want %v", keys(tm.jobs), want)
	}
	for id, status := range want {
		if j := tm.jobs[id]; j == nil || j.Status != status {
			t.Errorf("job %s = %+v, want status %s", id, j, status)
		}
	}
	if tm.retired["job-unchanged"] != 2 || tm.retired["job-finished"] != 5 {
		t.Errorf("retired %v, want job-unchanged at 2 and job-finished still at 5", tm.retired)
	}
	if tm.ledger.Version != 11 {
		t.Errorf("ledger version %d, want the loop's own 11 kept over the older read", tm.ledger.Version)
	}
	if err := tm.applyResync(resyncSnapshot{ledger: lease.Ledger{Epoch: 4}}, base); err == nil {
		t.Error("a snapshot of a newer epoch was applied; want ErrFenced")
	}
}

func keys(m map[string]*events.Job) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
