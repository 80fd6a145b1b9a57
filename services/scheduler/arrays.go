package scheduler

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/scheduler/internal/admit"
	"github.com/avxrm/rm/services/scheduler/internal/lease"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// An array (POST /job-arrays) admits at most max_parallel of its jobs at
// once. The scheduler counts the array's jobs that are admitted or running
// (or granted a lease not yet recorded on the job) and lets only as many
// of the others ask admit for capacity as the array has slots free, in
// priority, submission and index order; the rest wait with reason
// ArrayMaxParallel. A job's final event frees its slot and starts the pass
// that fills it. max_parallel never changes, so it is read once per
// leadership (loadArrays).
//
// Cancelling an array (POST /job-arrays/{id}/cancel) records it on the
// array, then asks its jobs one by one, for 10,000 jobs over half a
// minute. None of those not yet asked is admitted meanwhile: a job of an
// array not known to be cancelled that asks to cancel (by its event or a
// resync) has the array read again (loadGates), and the jobs of a
// cancelled array are held (gated). One job's own cancel costs that read.

// loadArrays reads the max_parallel and the cancel of arrays ids. An array
// without a record holds nothing back.
func (t *term) loadArrays(ctx context.Context, ids bson.A) error {
	cur, err := t.s.deps.DB.Collection(events.JobArraysCollection).Find(ctx,
		bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}},
		options.Find().SetProjection(bson.D{{Key: "max_parallel", Value: 1}, {Key: "cancel_requested", Value: 1}}))
	if err != nil {
		return fmt.Errorf("read job arrays: %w", err)
	}
	var docs []struct {
		ID              string `bson:"_id"`
		MaxParallel     int    `bson:"max_parallel"`
		CancelRequested bool   `bson:"cancel_requested"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return fmt.Errorf("read job arrays: %w", err)
	}
	for _, id := range ids {
		t.g.maxParallel[id.(string)] = 0
	}
	for _, d := range docs {
		t.g.maxParallel[d.ID] = d.MaxParallel
		if d.CancelRequested {
			t.g.cancelled[d.ID] = true
		}
	}
	return nil
}

// admitArrays returns the requests of the array jobs gated held back, as
// many per array as it has slots free; the others wait.
func (p *plan) admitArrays(ledger lease.Ledger, jobs map[string]*events.Job, ctlQueue string) []admit.Request {
	if len(p.arrayJobs) == 0 {
		return nil
	}
	active := map[string]int{}
	for _, j := range jobs {
		if j.ArrayID == "" {
			continue
		}
		if j.Status == events.JobAdmitted || j.Status == events.JobRunning || (notAdmitted(j) && ledger.Leases[j.ID] != nil) {
			active[j.ArrayID]++
		}
	}
	var reqs []admit.Request
	for id, js := range p.arrayJobs {
		slices.SortFunc(js, func(a, b *events.Job) int {
			if c := cmp.Compare(b.Priority, a.Priority); c != 0 {
				return c
			}
			if c := a.SubmittedAt.Compare(b.SubmittedAt); c != 0 {
				return c
			}
			if c := cmp.Compare(index(a), index(b)); c != 0 {
				return c
			}
			return cmp.Compare(a.ID, b.ID)
		})
		limit := p.gate.maxParallel[id]
		free := max(limit-active[id], 0)
		for i, j := range js {
			if i < free {
				reqs = append(reqs, jobRequest(j, ctlQueue))
				continue
			}
			p.waits = append(p.waits, waiting{j.ID, reasonArrayMaxParallel, fmt.Sprintf(
				"array %s admits at most %d of its jobs at once (max_parallel)", id, limit)})
		}
	}
	return reqs
}

func index(j *events.Job) int {
	if j.ArrayIndex == nil {
		return -1
	}
	return *j.ArrayIndex
}
