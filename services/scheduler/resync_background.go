package scheduler

import (
	"context"
	"fmt"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/scheduler/internal/lease"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// The periodic resync reads MongoDB in the background and the loop applies
// what it read. Finding the active jobs used to read every job on a store
// that cannot use an index for the filter (FerretDB/SQLite decodes each
// document): with 20,000 finished jobs it took seconds, and a resync read by
// the loop itself held every admission back for that long every
// ResyncInterval. It reads by index now (activeJobs, package indexed), so
// it costs what the active jobs cost; it still runs beside the loop. The
// first resync of a leadership reads before the loop starts.

// resyncSnapshot is what a resync read.
type resyncSnapshot struct {
	ledger lease.Ledger
	queues []*events.Queue
	jobs   []*events.Job
	// same are the active jobs stored at the version the picture had when
	// the read began: not read (indexed.Reader.FindChanged). With a
	// backlog of thousands of waiting jobs, reading each of them every
	// ResyncInterval was most of what the scheduler asked of the store.
	same []string
	err  error
}

// backgroundResync is a snapshot read while the loop went on, with the
// versions of the jobs the picture held when the read began.
type backgroundResync struct {
	snapshot resyncSnapshot
	base     *resyncBase
}

// resyncBase is the picture's versions when a background read began.
type resyncBase struct {
	ledger int64
	jobs   map[string]int64
}

// readResync reads the ledger, the queues and the jobs that need the
// scheduler, but not the jobs stored at the version known (by id) has. It
// touches nothing of the picture, so it may run beside the loop.
func (s *Scheduler) readResync(ctx context.Context, known map[string]int64) resyncSnapshot {
	var r resyncSnapshot
	if r.ledger, r.err = s.ledger.Load(ctx); r.err != nil {
		return r
	}
	cur, err := s.queues.Find(ctx, bson.D{{Key: "_deleted", Value: bson.D{{Key: "$exists", Value: false}}}})
	if err == nil {
		err = cur.All(ctx, &r.queues)
	}
	if err != nil {
		r.err = fmt.Errorf("resync queues: %w", err)
		return r
	}
	docs, same, err := s.active.FindChanged(ctx, activeJobs(r.ledger.Holders()), "version", known)
	if err != nil {
		r.err = fmt.Errorf("resync jobs: %w", err)
		return r
	}
	r.same = same
	s.metrics.resyncs.Inc()
	s.metrics.resyncRead.Add(float64(len(docs)))
	r.jobs = make([]*events.Job, len(docs))
	for i, d := range docs {
		if err := bson.Unmarshal(d, &r.jobs[i]); err != nil {
			r.err = fmt.Errorf("resync jobs: decode: %w", err)
			return r
		}
	}
	return r
}

// startResync reads a snapshot in the background; the channel delivers it.
func (t *term) startResync(ctx context.Context) <-chan backgroundResync {
	t.s.record.ForgetAll() // a resync is the net under lost events: writes start from the store
	base := &resyncBase{ledger: t.ledger.Version, jobs: t.versions()}
	ch := make(chan backgroundResync, 1)
	go func() { ch <- backgroundResync{snapshot: t.s.readResync(ctx, base.jobs), base: base} }()
	return ch
}

// versions are the picture's jobs' versions, by id.
func (t *term) versions() map[string]int64 {
	v := make(map[string]int64, len(t.jobs))
	for id, j := range t.jobs {
		v[id] = j.Version
	}
	return v
}

// applyResync makes a snapshot the picture: MongoDB is the truth, except
// for queues, where the newer version wins. base nil: nothing changed since
// the read began (the loop waited for it). Otherwise base holds the versions
// the picture had then, and what changed since is newer than the snapshot:
// a job that left the picture meanwhile (retired with a version at least
// the snapshot's) stays out, one that entered or changed meanwhile stays as
// it is, and so does the ledger if this loop wrote it meanwhile.
func (t *term) applyResync(r resyncSnapshot, base *resyncBase) error {
	if r.err != nil {
		return r.err
	}
	l := r.ledger
	if l.Epoch != t.epoch {
		return fmt.Errorf("resync: ledger at epoch %d, mine is %d: %w", l.Epoch, t.epoch, lease.ErrFenced)
	}
	switch {
	case base != nil && t.ledger.Version != base.ledger && t.ledger.Version > l.Version:
		l = t.ledger // written by this loop after the read
	case t.ledger.Version != 0 && l.Version != t.ledger.Version:
		t.log.Warn("ledger changed behind this scheduler's back; taking the stored one", "mine", t.ledger.Version, "stored", l.Version)
	}
	t.ledger = l
	qs := make(map[string]*events.Queue, len(r.queues))
	for _, q := range r.queues {
		if cur := t.queues[q.ID]; cur != nil && cur.Version > q.Version {
			q = cur
		}
		qs[q.ID] = q
	}
	t.queues = qs
	js := make(map[string]*events.Job, len(r.jobs)+len(r.same))
	for _, id := range r.same {
		// Stored at the version the picture had when the read began: the
		// picture's copy is the stored job, or newer if it changed since.
		// One that left the picture meanwhile stays out.
		if cur := t.jobs[id]; cur != nil {
			js[id] = cur
		}
	}
	for _, j := range r.jobs {
		if v, gone := t.retired[j.ID]; base != nil && gone && v >= j.Version {
			continue // final or deleted since the read began
		}
		if cur := t.jobs[j.ID]; cur != nil && cur.Version > j.Version {
			if base != nil && base.jobs[j.ID] != cur.Version {
				js[j.ID] = cur // changed since the read began
				continue
			}
			// MongoDB is the truth. A stored job older than the picture means
			// a write of ours was lost (a store without atomic conditional
			// updates); the next pass makes it again.
			t.log.Warn("job older in MongoDB than in memory; taking the stored one", "job", j.ID, "memory", cur.Version, "stored", j.Version)
		}
		js[j.ID] = j
		delete(t.retired, j.ID)
	}
	for id, j := range t.jobs {
		if _, ok := js[id]; ok {
			continue
		}
		if v, known := base.jobsVersion(id); base != nil && (!known || v != j.Version) {
			js[id] = j // entered or changed after the read began
			continue
		}
		// No longer active in MongoDB (final, or deleted): keep out stale events.
		t.retired[id] = max(t.retired[id], j.Version)
	}
	t.jobs = js
	return nil
}

func (b *resyncBase) jobsVersion(id string) (int64, bool) {
	if b == nil {
		return 0, false
	}
	v, ok := b.jobs[id]
	return v, ok
}
