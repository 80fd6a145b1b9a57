package scheduler

import (
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/scheduler/internal/admit"
	"github.com/avxrm/rm/services/scheduler/internal/lease"
)

// plan is what one pass decides: the one ledger change (grants and
// releases) and the job writes that follow it.
type plan struct {
	change    lease.Change
	admitJobs []string  // granted, to record on the job
	admitPCs  []string  // jobs whose post controller was granted
	cancels   []string  // jobs cancelled before admission
	waits     []waiting // jobs (or post controllers) that wait, and why
	cleans    []string  // final jobs asked to be cleaned that will hold nothing
	requeues  []string  // retried jobs whose old attempt's lease is released (retry.go)

	gate       gate                     // holds jobs back for dependencies and arrays (deps.go)
	depCancels []waiting                // jobs cancelled because a dependency failed
	arrayJobs  map[string][]*events.Job // array jobs held back until admitArrays

	pendingByQueue map[string]int // for the gauges

	replicas replicaPlan // deployments' replicas (deployments.go)
}

type waiting struct{ id, reason, message string }

// planPass decides one pass from the picture: release what must be
// released, admit what fits (admit.Admit), and say which jobs to write. It
// is pure: no I/O, nothing of the picture changed.
func planPass(ledger lease.Ledger, queues map[string]*events.Queue, jobs map[string]*events.Job, now time.Time, g gate) plan {
	return planPassWith(ledger, queues, jobs, nil, now, g)
}

// planPassWith is planPass with the deployments, whose replicas hold leases too.
func planPassWith(ledger lease.Ledger, queues map[string]*events.Queue, jobs map[string]*events.Job, deployments map[string]*deployment, now time.Time, g gate) plan {
	p := plan{change: lease.Change{Grants: map[string][]lease.Claim{}}, pendingByQueue: map[string]int{}, replicas: replicaPlan{deployments: deployments}, gate: g}
	p.followLedger(ledger, jobs)
	reqs := append(p.requests(ledger, queues, jobs), p.replicaRequests(ledger.Leases)...)
	for _, d := range admit.Admit(snapshot(ledger, p.change.Releases, queues, now), reqs) {
		if p.replicaDecision(d) {
			continue
		}
		if !d.Admit {
			p.waits = append(p.waits, waiting{d.ID, d.Reason, d.Message})
			continue
		}
		claims := make([]lease.Claim, len(d.Grants))
		for i, g := range d.Grants {
			claims[i] = lease.Claim{Queue: g.Queue, Count: g.Count}
		}
		p.change.Grants[d.ID] = claims
		if isPostControllerHolder(d.ID) {
			p.admitPCs = append(p.admitPCs, jobOf(d.ID))
		} else {
			p.admitJobs = append(p.admitJobs, d.ID)
			p.pendingByQueue[jobs[d.ID].QueueID]--
		}
	}
	for _, j := range jobs {
		if j.CleanupRequested && j.CleanedAt == nil && events.JobFinal(j.Status) && !p.holdsAfter(ledger, j.ID) {
			p.cleans = append(p.cleans, j.ID)
		}
	}
	return p
}

// followLedger releases the leases that must end and finds the grants not
// yet recorded on their jobs.
func (p *plan) followLedger(ledger lease.Ledger, jobs map[string]*events.Job) {
	for _, h := range ledger.Holders() {
		if isReplicaHolder(h) {
			p.followReplica(h, ledger.Leases[h])
			continue
		}
		j := jobs[jobOf(h)]
		switch {
		case releasable(jobs, h):
			p.change.Releases = append(p.change.Releases, h)
		case isPostControllerHolder(h):
			if j.PostController.Status == pcPending {
				p.admitPCs = append(p.admitPCs, j.ID)
			}
		case notAdmitted(j) && wantsOut(j):
			p.cancels = append(p.cancels, j.ID) // cancelled first, released next pass
		case notAdmitted(j) && staleAdmission(j):
			p.change.Releases = append(p.change.Releases, h)
			p.requeues = append(p.requeues, j.ID)
		case notAdmitted(j):
			p.admitJobs = append(p.admitJobs, j.ID)
		}
	}
}

// requests are the jobs and post controllers that ask for capacity; jobs
// not admitted that asked out are cancelled instead.
func (p *plan) requests(ledger lease.Ledger, queues map[string]*events.Queue, jobs map[string]*events.Job) []admit.Request {
	ctlQueue, pcQueue := queueIDIn(queues, events.ControllerQueue), queueIDIn(queues, events.PostControllerQueue)
	var reqs []admit.Request
	for _, j := range jobs {
		if notAdmitted(j) && ledger.Leases[j.ID] == nil {
			if wantsOut(j) {
				p.cancels = append(p.cancels, j.ID)
			} else if !p.gated(j, jobs) {
				reqs = append(reqs, jobRequest(j, ctlQueue))
				p.pendingByQueue[j.QueueID]++
			}
		}
		if pc := j.PostController; pc != nil && pc.Status == pcPending && !pc.StopRequested && j.CleanedAt == nil && !j.CleanupRequested &&
			ledger.Leases[j.ID+postControllerSuffix] == nil {
			reqs = append(reqs, admit.Request{
				ID: j.ID + postControllerSuffix, Kind: admit.KindPostController, Priority: j.Priority,
				SubmittedAt: pc.RequestedAt, Claims: []admit.Claim{{Queue: pcQueue, Count: 1}},
			})
		}
	}
	return append(reqs, p.admitArrays(ledger, jobs, ctlQueue)...)
}

// snapshot is what admit needs of the queues, with the releases of this
// pass already given back.
func snapshot(ledger lease.Ledger, releases []string, queues map[string]*events.Queue, now time.Time) admit.Snapshot {
	alloc, replicas := map[string]int{}, map[string]int{}
	for h, cs := range ledger.Leases {
		replica := isReplicaHolder(h)
		for _, c := range cs {
			alloc[c.Queue] += c.Count
			if replica {
				replicas[c.Queue] += c.Count
			}
		}
	}
	for _, h := range releases {
		replica := isReplicaHolder(h)
		for _, c := range ledger.Leases[h] {
			alloc[c.Queue] -= c.Count
			if replica {
				replicas[c.Queue] -= c.Count
			}
		}
	}
	snap := admit.Snapshot{Now: now, Queues: make(map[string]admit.Queue, len(queues))}
	for id, q := range queues {
		backfill := q.Scheduling.Backfill == nil || *q.Scheduling.Backfill
		snap.Queues[id] = admit.Queue{
			Name: q.Name, Limit: q.MaximumAllowedWorkerInstances, Allocated: alloc[id], Replicas: replicas[id],
			Backfill: backfill, Starvation: starvationOf(q),
		}
	}
	return snap
}

// holdsAfter reports whether job id holds a lease once the plan's change is written.
func (p *plan) holdsAfter(ledger lease.Ledger, id string) bool {
	if _, granted := p.change.Grants[id]; granted {
		return true
	}
	if ledger.Leases[id] == nil {
		return false
	}
	for _, h := range p.change.Releases {
		if h == id {
			return false
		}
	}
	return true
}
