package jobdoc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/outbox"
)

// UpdateMatching applies change to every job that f matches (and is not
// deleted), as Update does to one, but in bulk: one read finds them all (by
// index, through the Store's Lookup if it has one), each is stored by one
// conditional write and their events are published with one wait per
// outbox batch (outbox.ReplaceMany), instead of a read, a write and a wait
// per job. A job that changed between the read and its write goes through
// Update. It returns how many jobs changed. Not for the launcher, whose
// writes carry instances.
func (s *Store) UpdateMatching(ctx context.Context, f indexed.Filter, change Mutator) (int, error) {
	if s.writer == Launcher {
		return 0, errors.New("jobdoc: UpdateMatching does not write instances")
	}
	f.All = append(append([]indexed.Cond(nil), f.All...), outbox.NotDeletedCond())
	docs, err := (&indexed.Reader{Coll: s.jobs, Lookup: s.lookup}).Find(ctx, f)
	if err != nil {
		return 0, fmt.Errorf("find jobs to update: %w", err)
	}
	reads := make([]read, 0, len(docs))
	for _, d := range docs {
		r, _, err := decodeRead(d) // tombstones are filtered out
		if err != nil {
			return 0, fmt.Errorf("decode job: %w", err)
		}
		reads = append(reads, r)
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	var (
		rs      []outbox.Replacement
		changed []*events.Job
	)
	for _, r := range reads {
		j := clone(r.job)
		types, err := change(j, now)
		if err != nil {
			return 0, err
		}
		if len(types) == 0 {
			continue
		}
		if err := Check(s.writer, r.job, j); err != nil {
			return 0, err
		}
		evs, err := s.stamp(r.job, j, now, types)
		if err != nil {
			return 0, err
		}
		rs = append(rs, outbox.Replacement{ID: j.ID, PrevVersion: r.job.Version, Pending: r.pending, Doc: j, Events: evs})
		changed = append(changed, j)
	}
	for _, j := range changed { // not kept: ReplaceMany does not say what it stored
		s.drop(j.ID)
	}
	conflicts, err := s.ob.ReplaceMany(ctx, s.jobs, rs)
	if err != nil {
		return 0, err
	}
	return s.settleMatching(ctx, changed, conflicts, change)
}

// settleMatching counts the jobs UpdateMatching stored and runs change
// through Update on those that conflicted.
func (s *Store) settleMatching(ctx context.Context, changed []*events.Job, conflicts []int, change Mutator) (int, error) {
	retry := make(map[int]bool, len(conflicts))
	for _, i := range conflicts {
		retry[i] = true
	}
	n := 0
	for i := range changed {
		if !retry[i] {
			n++
		}
	}
	for i := range retry {
		wrote := false // the last call of change, the one Update stored, changed something
		_, err := s.Update(ctx, changed[i].ID, func(j *events.Job, now time.Time) ([]string, error) {
			types, err := change(j, now)
			wrote = len(types) > 0
			return types, err
		})
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return n, err
		}
		if wrote {
			n++
		}
	}
	return n, nil
}
