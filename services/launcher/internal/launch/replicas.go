package launch

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/avxrm/rm/pkg/events/ledger"
)

// Replicas hold leases. The scheduler admits each replica slot k of a
// deployment as a lease "<deployment id>/replica/<k>" of one instance on
// the deployment's queue (services/scheduler/deployments.go); the launcher
// starts only the slots that hold one, and says in the deployment's status
// how many wait and why.

// replicaInfix names a replica's lease in the scheduler's ledger.
const replicaInfix = "/replica/"

// replicaWait is how soon a deployment with replicas not yet admitted is
// looked at again: a grant sends no event the launcher consumes.
const replicaWait = 500 * time.Millisecond

// replicaLeases is what the ledger says of a deployment's replicas.
type replicaLeases struct {
	admitted map[int]bool // slots holding a lease
	inUse    int          // instances leased on the deployment's queue, by anyone
}

// readReplicaLeases reads the ledger for deployment id on queue queueID.
func (s *Service) readReplicaLeases(ctx context.Context, id, queueID string) (replicaLeases, error) {
	r := replicaLeases{admitted: map[int]bool{}}
	leases, err := ledger.Read(ctx, s.deps.DB) // the scheduler's (docs/scheduling.md)
	if err != nil {
		return r, err
	}
	for holder, claims := range leases {
		onQueue := false
		for _, c := range claims {
			if c.Queue == queueID {
				r.inUse += c.Count
				onQueue = true
			}
		}
		dep, slot, ok := strings.Cut(holder, replicaInfix)
		if !ok || dep != id || !onQueue {
			continue // a lease on another queue: the deployment moved; the scheduler releases it
		}
		if k, err := strconv.Atoi(slot); err == nil {
			r.admitted[k] = true
		}
	}
	return r, nil
}

// admissionCondition says whether every wanted replica of d is admitted,
// and if not, how many are and what the queue has.
func (s *Service) admissionCondition(ctx context.Context, d *deployment, l replicaLeases, status *deploymentStatus, now time.Time) {
	n := 0
	for k := range d.Replicas {
		if l.admitted[k] {
			n++
		}
	}
	if n >= d.Replicas {
		setDepCondition(status, "Admitted", "True", "Admitted", fmt.Sprintf("%d of %d replicas admitted", n, d.Replicas), now)
		return
	}
	name, limit := d.QueueID, -1
	if q, err := s.queue(ctx, d.QueueID); err == nil {
		name = q.Name
		if q.MaximumAllowedWorkerInstances != nil {
			limit = *q.MaximumAllowedWorkerInstances
		}
	}
	msg := fmt.Sprintf("%d of %d replicas admitted, %d pending: ", n, d.Replicas, d.Replicas-n)
	if limit < 0 {
		msg += fmt.Sprintf("queue %s has no limit; the scheduler has not admitted them yet", name)
	} else {
		msg += fmt.Sprintf("queue %s allows %d %s, %d in use, each replica needs 1", name, limit, plural(limit, "worker instance", "worker instances"), l.inUse)
	}
	setDepCondition(status, "Admitted", "False", "InsufficientWorkerCapacity", msg, now)
}
