package httpapi

import (
	"context"
	"errors"
	"fmt"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/pkg/events/ledger"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/api/internal/store"
)

// fillUsage sets the read-only usage of q: allocated instances from the live
// leases (the scheduler's ledger, so it is exactly what admission counts),
// running jobs (admitted or running), and pending jobs and the workers they
// ask for (submitted or pending, not being cancelled).
func (s *Server) fillUsage(ctx context.Context, q *events.Queue) error {
	u := &events.QueueUsage{}
	db := s.opts.Store.DB
	// The scheduler's lease ledger (docs/scheduling.md): exactly what
	// admission counts.
	leases, err := ledger.Read(ctx, db)
	if err != nil {
		return fmt.Errorf("usage of queue %s: %w", q.ID, err)
	}
	u.AllocatedWorkerInstances = ledger.Allocated(leases)[q.ID]
	// The queue's active jobs by an index (package indexed): the jobs that
	// finished are not read, however many there are, nor, on the embedded
	// store, the active ones: counts and worker_instances come from the
	// index's rows. Reading 10,000 waiting jobs took a GET /queues/{id} over
	// a second.
	running, err := s.active.Count(ctx, queueJobs(q.ID, events.JobAdmitted, events.JobRunning))
	if err != nil {
		return fmt.Errorf("usage of queue %s: active jobs: %w", q.ID, err)
	}
	waiting, err := s.active.Values(ctx, queueJobs(q.ID, events.JobSubmitted, events.JobPending), "worker_instances")
	if err != nil {
		return fmt.Errorf("usage of queue %s: waiting jobs: %w", q.ID, err)
	}
	// Those being cancelled are not pending: their _ids by the index too.
	cancelling := queueJobs(q.ID, events.JobSubmitted, events.JobPending)
	cancelling.All = append(cancelling.All, indexed.Cond{Path: "cancel_requested", In: []any{true}})
	leaving, err := s.active.IDs(ctx, cancelling)
	if err != nil {
		return fmt.Errorf("usage of queue %s: jobs being cancelled: %w", q.ID, err)
	}
	for _, id := range leaving {
		delete(waiting, id)
	}
	u.RunningJobs, u.PendingJobs = running, len(waiting)
	for _, n := range waiting {
		u.PendingWorkerInstances += int(n)
	}
	q.Usage = u
	return nil
}

// queueJobs selects queue queueID's jobs in one of statuses (active ones),
// not deleted: by the index of the active jobs, with the queue checked on
// those only (an index on the queue too would cost every job write).
func queueJobs(queueID string, statuses ...string) indexed.Filter {
	return indexed.Filter{
		All: []indexed.Cond{outbox.NotDeletedCond(), {Path: "queue_id", In: []any{queueID}}},
		Any: []indexed.Clause{{jobdoc.ActiveStatus(statuses...)}},
	}
}

// PrepareIndexes asks once for what the API reads by index (a queue's
// active jobs, an array's jobs, the ended jobs of a status, an owner or a
// queue, a job's artifacts and exports, the cancelled arrays, the
// idempotency keys' expiries), with ids that match nothing where it can, so
// that on the embedded store the indexes they read are made now, before
// the API serves, and not by the first such request: made then on a store
// of 100,000 jobs, a build holds SQLite's write lock for seconds while
// every write waits. Each is made once per store (it persists). Without a
// Lookup (MongoDB) there is nothing to make: EnsureIndexes made the API's.
// A label's index is made by the first list by its key.
func (s *Server) PrepareIndexes(ctx context.Context) error {
	l := s.opts.Lookup
	if l == nil {
		return nil
	}
	if _, err := s.active.IDs(ctx, queueJobs("", events.JobActiveStatuses()...)); err != nil {
		return fmt.Errorf("prepare the active jobs' index: %w", err)
	}
	if _, err := s.active.IDs(ctx, jobdoc.ArrayJobs("", events.JobSubmitted)); err != nil {
		return fmt.Errorf("prepare the array jobs' index: %w", err)
	}
	ended := events.JobFinalStatuses()
	pages := map[string][]indexed.Clause{ // read a page at a time (MatchingIDsAfter)
		store.Jobs:      append(jobdoc.OwnedEnded("", ended...), jobdoc.EndedStatus(ended...), jobdoc.QueueEnded("", ended...)),
		store.Artifacts: {ofJob("")},
		store.Exports:   {ofJob("")},
	}
	for coll, clauses := range pages {
		for _, c := range clauses {
			if _, err := l.MatchingIDsAfter(ctx, coll, c, "", 1); err != nil && !errors.Is(err, errors.ErrUnsupported) {
				return fmt.Errorf("prepare an index of %s: %w", coll, err)
			}
		}
	}
	if _, err := s.cancelledArrays(ctx); err != nil {
		return fmt.Errorf("prepare the index of the cancelled arrays: %w", err)
	}
	if _, err := l.MatchingVersions(ctx, store.IdempotencyKeys, keysAll, nil, "expires_at"); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("prepare the index of the idempotency keys: %w", err)
	}
	return nil
}
