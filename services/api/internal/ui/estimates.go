package ui

import (
	"cmp"
	"context"
	"slices"
	"strings"

	"github.com/avxrm/rm/pkg/events"
)

// Position and start estimate of a queue's waiting jobs. Job events do not
// carry them (they are not stored on the job), so the queue page reads the
// scheduler's snapshot of the queue (collection queue_estimates, one read by
// id) through events.ReadQueueEstimates, as the API does for
// GET /queues/{id}/pending and GET /jobs/{id}. The page reads it again each
// time it is rendered, also when the script refreshes it on a job event.

// placeWaiting returns copies of the waiting jobs of queue queueID (the
// index's rows are shared, so they are not changed) in the scheduler's
// order, each with its queue_position counted in that order (as
// GET /queues/{id}/pending counts it), and estimated_start_at and
// estimate_basis from the queue's snapshot: the snapshot's own positions
// may be seconds old (the scheduler spaces its writes), and a job
// submitted since ahead of others would share a position with one of them. A job not in the snapshot yet
// (just submitted), or every job if the snapshot cannot be read, has no
// estimate and basis unknown.
func (u *UI) placeWaiting(ctx context.Context, queueID string, waiting []*jobView) []*jobView {
	ests, err := events.ReadQueueEstimates(ctx, u.opts.DB, queueID)
	if err != nil {
		u.opts.Logger.Warn("read start estimates", "queue", queueID, "err", err)
	}
	byOrder := slices.Clone(waiting)
	slices.SortFunc(byOrder, schedulerOrder)
	out := make([]*jobView, len(byOrder))
	for i, j := range byOrder {
		c := *j
		pos := i + 1
		c.QueuePosition, c.EstimatedStartAt, c.EstimateBasis = &pos, nil, events.BasisUnknown
		if e, ok := ests[c.ID]; ok {
			c.EstimatedStartAt, c.EstimateBasis = e.StartAt, e.Basis
		}
		out[i] = &c
	}
	return out
}

// schedulerOrder is the order in which the scheduler considers pending jobs
// (package admit): priority (higher first), submission (older first), id.
func schedulerOrder(a, b *jobView) int {
	return cmp.Or(cmp.Compare(b.Priority, a.Priority), a.SubmittedAt.Compare(b.SubmittedAt), strings.Compare(a.ID, b.ID))
}
