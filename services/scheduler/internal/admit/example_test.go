package admit_test

import (
	"fmt"
	"time"

	"github.com/avxrm/rm/services/scheduler/internal/admit"
	"github.com/avxrm/rm/services/scheduler/internal/lease"
)

// The product documents' example: queue Default allows 10 worker instances; job 1
// takes all of them, so job 2 waits until job 1's lease is released.
func ExampleAdmit() {
	now := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	limit := 10
	var ledger lease.Ledger // what the scheduler keeps; lease.Store.Apply writes it
	snapshot := func() admit.Snapshot {
		return admit.Snapshot{Now: now, Queues: map[string]admit.Queue{
			"Default":                     {Name: "Default", Limit: &limit, Allocated: ledger.Allocated()["Default"]},
			"simulation-controller-queue": {Name: "simulation-controller-queue", Backfill: true},
		}}
	}
	request := func(id string, workers int, submitted time.Time) admit.Request {
		return admit.Request{ID: id, Kind: admit.KindJob, SubmittedAt: submitted, Claims: []admit.Claim{
			{Queue: "Default", Count: workers}, {Queue: "simulation-controller-queue", Count: 1},
		}}
	}
	pending := []admit.Request{request("job-1", 10, now), request("job-2", 8, now.Add(time.Second))}

	for round := 1; round <= 2; round++ {
		var still []admit.Request
		for i, d := range admit.Admit(snapshot(), pending) {
			if d.Admit {
				claims := make([]lease.Claim, len(d.Grants))
				for i, g := range d.Grants {
					claims[i] = lease.Claim{Queue: g.Queue, Count: g.Count}
				}
				ledger.Commit(lease.Change{Grants: map[string][]lease.Claim{d.ID: claims}})
				fmt.Printf("round %d: %s admitted\n", round, d.ID)
				continue
			}
			fmt.Printf("round %d: %s pending: %s: %s\n", round, d.ID, d.Reason, d.Message)
			still = append(still, pending[i])
		}
		pending = still
		ledger.Commit(lease.Change{Releases: []string{"job-1"}}) // job 1 finishes
	}
	// Output:
	// round 1: job-1 admitted
	// round 1: job-2 pending: InsufficientWorkerCapacity: queue Default allows 10 worker instances, 10 in use, job needs 8
	// round 2: job-2 admitted
}
