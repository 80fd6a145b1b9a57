package scheduler

import (
	"context"
	"fmt"

	"github.com/avxrm/rm/pkg/events"
)

// The stream must respect causality: a job's end must be in the stream
// before the admission of a job given its workers, or anyone replaying the
// stream (the fault suite's limit check, users, the web view) sees a queue
// over its limit. The scheduler usually learns of a job's end from that
// job's final event, so the order holds. But it may learn it from the store
// instead (a resync, the read of its own write) while the writer's event is
// not yet published: after a NATS restart the launcher's relay resends it
// later, after the admissions made meanwhile. So before releasing the lease
// of a job whose end it did not see in the stream, the scheduler publishes
// that job's unsent events itself (outbox.PublishUnsentOf: the same event
// ids, so the stream's duplicate window drops the writer's resend), and
// releases nothing if it cannot.

// noteEndSeen remembers that the end of a job reached this leadership
// through the stream (e.Type is the type of an event it received).
func (t *term) noteEndSeen(typ, id string) {
	switch typ {
	case events.TypeJobSucceeded, events.TypeJobFailed, events.TypeJobCancelled, events.TypeJobDeleted:
	default:
		return
	}
	if t.endSeen == nil {
		t.endSeen = map[string]bool{}
	}
	t.endSeen[id] = true
}

// endAhead reports whether an event of type typ about job j announces an
// end whose own event follows it in the stream: a write that takes a job
// through running to its end (the launcher's, when every instance started
// and ended between two of its rounds) publishes rm.job.running, then the
// end's event, both with the ended job. The picture keeps the job as it was
// until that second event, which releases its workers as any end does;
// taken from the first, the end was one not seen in the stream, whose
// events the pass published again before releasing (a store read and two
// duplicate publications on the way from one job's end to the next one's
// admission, for 7 of 20 such jobs in a bench-compare hand-over run). Should
// the second never come (its writer stopped between the two), the job's
// end reaches the picture at a resync, and its events are published then.
func endAhead(typ string, j *events.Job) bool {
	return typ == events.TypeJobRunning && events.JobFinal(j.Status)
}

// publishUnseenEnds publishes the unsent events of the jobs whose own lease
// this pass may release and whose end was not seen in the stream, and
// returns how many jobs it checked. It runs every pass, so it walks the
// leases as they are (Holders would sort a copy of them): the order among
// different jobs' ends does not matter. A new leader checks every job that
// ended while none led, in one go.
func (t *term) publishUnseenEnds(ctx context.Context) (int, error) {
	var ids []any
	for h := range t.ledger.Leases {
		if isReplicaHolder(h) || isPostControllerHolder(h) || t.endSeen[h] || !releasable(t.jobs, h) {
			continue
		}
		ids = append(ids, h)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	n, err := t.s.deps.Outbox.PublishUnsentOf(ctx, t.s.jobs, ids)
	t.s.metrics.unseenEnds.Add(float64(n))
	if n > 0 {
		t.log.Info("published finished jobs' unsent events before releasing their workers", "jobs", len(ids), "events", n)
	}
	if err != nil {
		return len(ids), fmt.Errorf("publish the ends of %d jobs before releasing their workers: %w", len(ids), err)
	}
	for _, id := range ids {
		t.noteEndSeen(events.TypeJobDeleted, id.(string))
	}
	return len(ids), nil
}

// forgetEnds drops what noteEndSeen remembered of jobs that hold nothing
// and left the picture.
func (t *term) forgetEnds() {
	for id := range t.endSeen {
		if t.jobs[id] == nil && t.ledger.Leases[id] == nil {
			delete(t.endSeen, id)
		}
	}
}
