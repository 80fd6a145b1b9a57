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
// index's rows are shared, so they are not changed) with queue_position,
// estimated_start_at and estimate_basis from the queue's snapshot, in the
// scheduler's order: the jobs of the snapshot by their position, a job not
// in it yet (just submitted) where priority, submission and id put it, with
// the position counted from the waiting jobs, no estimate and basis unknown,
// as the API gives it. If the snapshot cannot be read every job is treated
// as not in it.
func (u *UI) placeWaiting(ctx context.Context, queueID string, waiting []*jobView) []*jobView {
	ests, err := events.ReadQueueEstimates(ctx, u.opts.DB, queueID)
	if err != nil {
		u.opts.Logger.Warn("read start estimates", "queue", queueID, "err", err)
	}
	// rank: each job's place among the waiting ones in the scheduler's order.
	byOrder := slices.Clone(waiting)
	slices.SortFunc(byOrder, schedulerOrder)
	rank := make(map[string]int, len(byOrder))
	for i, j := range byOrder {
		rank[j.ID] = i + 1
	}
	var placed, unplaced []*jobView
	for _, j := range byOrder {
		c := *j
		if e, ok := ests[c.ID]; ok {
			pos := e.Position
			c.QueuePosition, c.EstimatedStartAt, c.EstimateBasis = &pos, e.StartAt, e.Basis
			placed = append(placed, &c)
			continue
		}
		pos := rank[c.ID]
		c.QueuePosition, c.EstimatedStartAt, c.EstimateBasis = &pos, nil, events.BasisUnknown
		unplaced = append(unplaced, &c)
	}
	slices.SortStableFunc(placed, func(a, b *jobView) int { return cmp.Compare(*a.QueuePosition, *b.QueuePosition) })
	// Merge: the snapshot's order, with each new job before the first
	// placed job the scheduler would consider after it.
	out := make([]*jobView, 0, len(waiting))
	for len(placed) > 0 || len(unplaced) > 0 {
		if len(unplaced) == 0 || len(placed) > 0 && schedulerOrder(placed[0], unplaced[0]) <= 0 {
			out, placed = append(out, placed[0]), placed[1:]
		} else {
			out, unplaced = append(out, unplaced[0]), unplaced[1:]
		}
	}
	return out
}

// schedulerOrder is the order in which the scheduler considers pending jobs
// (package admit): priority (higher first), submission (older first), id.
func schedulerOrder(a, b *jobView) int {
	return cmp.Or(cmp.Compare(b.Priority, a.Priority), a.SubmittedAt.Compare(b.SubmittedAt), strings.Compare(a.ID, b.ID))
}
