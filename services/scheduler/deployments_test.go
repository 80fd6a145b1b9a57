package scheduler

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/scheduler/internal/admit"
	"github.com/avxrm/rm/services/scheduler/internal/lease"
)

// TestPlanDeploymentReplicas: a deployment of 3 replicas on a queue limited
// to 4 leaves room for exactly one 1-worker job; scaled to 5 its two new
// replicas wait with the numbers; scaled down and deleted it gives its
// capacity back.
func TestPlanDeploymentReplicas(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	queues := limitedQueues(4)
	dep := &deployment{ID: "dep-1", CreatedAt: t0, QueueID: "q-d", Replicas: 3}
	deps := map[string]*deployment{dep.ID: dep}
	ledger := lease.Ledger{Leases: map[string][]lease.Claim{}}
	jobs := map[string]*events.Job{}
	pass := func() plan {
		p := planPassWith(ledger, queues, jobs, deps, t0.Add(time.Minute), gate{})
		ledger.Commit(p.change)
		return p
	}

	p := pass()
	if got := slices.Sorted(func(yield func(string) bool) {
		for h := range p.change.Grants {
			if !yield(h) {
				return
			}
		}
	}); !slices.Equal(got, []string{"dep-1/replica/0", "dep-1/replica/1", "dep-1/replica/2"}) {
		t.Fatalf("grants %v, want the 3 replicas", got)
	}
	if a := ledger.Allocated()["q-d"]; a != 3 {
		t.Fatalf("allocated on the queue %d, want 3", a)
	}

	for _, id := range []string{"j1", "j2"} {
		jobs[id] = &events.Job{Meta: events.Meta{ID: id}, QueueID: "q-d", Status: events.JobSubmitted, WorkerInstances: 1, SubmittedAt: t0.Add(time.Duration(len(jobs)) * time.Second)}
	}
	p = pass()
	if !slices.Equal(p.admitJobs, []string{"j1"}) || len(p.waits) != 1 || p.waits[0].id != "j2" {
		t.Fatalf("with 3 replicas on a limit of 4: admitted %v, waiting %+v; want j1 admitted, j2 waiting", p.admitJobs, p.waits)
	}
	// What holds the queue is said: here mostly replicas.
	if want := "queue Default allows 4 worker instances, 4 in use (3 by deployments' replicas), job needs 1"; p.waits[0].message != want {
		t.Errorf("j2 waits with %q, want %q", p.waits[0].message, want)
	}
	jobs["j1"].Status = events.JobRunning

	dep.Replicas = 5
	p = pass()
	if len(p.change.Grants) != 0 || p.replicas.waiting != 2 {
		t.Errorf("scaled to 5 on a full queue: grants %v, %d replicas waiting; want none granted, 2 waiting", p.change.Grants, p.replicas.waiting)
	}
	d := admit.Admit(snapshot(ledger, nil, queues, t0), p.replicaRequests(ledger.Leases))
	if d[0].Reason != admit.ReasonInsufficientWorkerCapacity || !strings.Contains(d[0].Message, "queue Default allows 4 worker instances, 4 in use (3 by deployments' replicas), replica needs 1") {
		t.Errorf("a waiting replica's reason: %s %q", d[0].Reason, d[0].Message)
	}

	dep.Replicas = 1
	p = pass()
	if !slices.Equal(slices.Sorted(slices.Values(p.change.Releases)), []string{"dep-1/replica/1", "dep-1/replica/2"}) || !slices.Equal(p.admitJobs, []string{"j2"}) {
		t.Errorf("scaled down to 1: releases %v, admitted %v; want slots 1 and 2 released and j2 admitted in the same pass", p.change.Releases, p.admitJobs)
	}

	delete(deps, dep.ID)
	p = pass()
	if !slices.Equal(p.change.Releases, []string{"dep-1/replica/0"}) {
		t.Errorf("deleted: releases %v, want its last replica", p.change.Releases)
	}
}

// TestPlanDeploymentMovedQueue: a deployment moved to another queue gives
// its leases on the old one back, and its replicas are admitted on the new
// one under that queue's limit. Before, they kept the old queue's leases:
// the old queue stayed full and the new one's limit was never applied.
func TestPlanDeploymentMovedQueue(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	queues := limitedQueues(4)
	one := 1
	queues["q-2"] = &events.Queue{Meta: events.Meta{ID: "q-2"}, Name: "Small", MaximumAllowedWorkerInstances: &one}
	dep := &deployment{ID: "dep-1", CreatedAt: t0, QueueID: "q-d", Replicas: 2}
	deps := map[string]*deployment{dep.ID: dep}
	ledger := lease.Ledger{Leases: map[string][]lease.Claim{}}
	pass := func() plan {
		p := planPassWith(ledger, queues, nil, deps, t0.Add(time.Minute), gate{})
		ledger.Commit(p.change)
		return p
	}
	pass()
	if a := ledger.Allocated()["q-d"]; a != 2 {
		t.Fatalf("allocated on q-d %d, want 2", a)
	}

	dep.QueueID = "q-2"
	p := pass()
	if got := slices.Sorted(slices.Values(p.change.Releases)); !slices.Equal(got, []string{"dep-1/replica/0", "dep-1/replica/1"}) {
		t.Errorf("moved to q-2: releases %v, want both replicas' leases on q-d", got)
	}
	pass()
	if a := ledger.Allocated(); a["q-d"] != 0 || a["q-2"] != 1 {
		t.Errorf("allocated %v after the move, want q-d 0 and q-2 1 (its limit)", a)
	}
	if c := ledger.Leases["dep-1/replica/0"]; len(c) != 1 || c[0].Queue != "q-2" {
		t.Errorf("slot 0's lease %v, want one instance on q-2", c)
	}
}
