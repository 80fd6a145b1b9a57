package launch

import (
	"context"
	"fmt"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/launcher/internal/driver"
)

// syncPostController starts, watches and stops the job's post controller
// as its request and status say: the API records start and stop requests,
// the scheduler admits it, the launcher runs and stops it.
func (s *Service) syncPostController(ctx context.Context, rs *records, obs map[driver.Ref]observed, now time.Time) ([]string, error) {
	j := rs.j
	pc := j.PostController
	if pc == nil {
		return nil, nil
	}
	var changed bool
	var err error
	switch {
	case pc.StopRequested || pc.Status == pcStopped || j.CleanupRequested || j.CleanedAt != nil:
		changed, err = s.stopPostControllerInstance(ctx, rs, obs, now)
	case pc.Status == pcAdmitted || pc.Status == pcRunning:
		changed, err = s.runPostController(ctx, rs, obs, now)
	default:
		return nil, nil // pending: the scheduler has not admitted it yet
	}
	if err != nil || !changed {
		return nil, err
	}
	return []string{events.TypeJobUpdated}, nil
}

// stopPostControllerInstance stops the latest post controller instance if
// it runs and records it and the post controller stopped.
func (s *Service) stopPostControllerInstance(ctx context.Context, rs *records, obs map[driver.Ref]observed, now time.Time) (bool, error) {
	j := rs.j
	changed := false
	if cur := latestPostController(j); cur != nil {
		ref := refOf(j.ID, *cur)
		o, ok := obs[ref]
		if ok && !o.st.State.Final() {
			if err := o.pd.stop(ctx, ref); err != nil {
				return false, fmt.Errorf("stop %s: %w", ref, err)
			}
		}
		if ok {
			changed = apply(cur, o.st, true)
		}
		if !isFinalInstance(cur.Status) {
			cur.Status, cur.FinishedAt = events.InstanceStopped, &now
			changed = true
		}
	}
	return stopPostController(j, now) || changed, nil
}

// runPostController starts the admitted post controller's instance, or
// records what its driver reports of it.
func (s *Service) runPostController(ctx context.Context, rs *records, obs map[driver.Ref]observed, now time.Time) (bool, error) {
	j := rs.j
	pc := j.PostController
	idx := 0
	if cur := latestPostController(j); cur != nil {
		idx = cur.Index
		if cur.StartedAt != nil && cur.StartedAt.Before(pc.RequestedAt) {
			idx++ // that one served an earlier request
		}
	}
	ref := driver.Ref{JobID: j.ID, Role: driver.RolePostController, Index: idx}
	if o, ok := obs[ref]; ok {
		rec := rs.get(ref)
		changed := apply(rec, o.st, false)
		switch {
		case o.st.State.Final():
			pc.Status, pc.StoppedAt = pcStopped, &now
			changed = true
		case pc.Status == pcAdmitted && rec.StartedAt != nil:
			pc.Status, pc.StartedAt = pcRunning, rec.StartedAt
			changed = true
		}
		return changed, nil
	}
	if rec := rs.find(ref); rec != nil && (rec.StartedAt != nil || isFinalInstance(rec.Status)) {
		if !isFinalInstance(rec.Status) {
			rec.Status, rec.Message, rec.FinishedAt = events.InstanceFailed, lostMessage, &now
		}
		pc.Status, pc.StoppedAt = pcStopped, &now
		return true, nil
	}
	if err := s.startPostController(ctx, j, idx); err != nil {
		if !permanent(err) {
			return false, fmt.Errorf("start %s: %w", ref, err)
		}
		rec := rs.get(ref)
		rec.Status, rec.Message, rec.FinishedAt = events.InstanceFailed, "start failed: "+err.Error(), &now
		pc.Status, pc.StoppedAt = pcStopped, &now
		return true, nil
	}
	rs.get(ref)
	return true, nil
}

func (s *Service) startPostController(ctx context.Context, j *events.Job, idx int) error {
	q, err := s.queue(ctx, events.PostControllerQueue)
	if err != nil {
		return err
	}
	pd, err := s.driverFor(ctx, q)
	if err != nil {
		return err
	}
	if err := pd.start(ctx, jobSpec(j, events.RolePostController, idx, q, s.cfg.APIURL)); err != nil {
		return err
	}
	s.metrics.starts.WithLabelValues(events.RolePostController).Inc()
	return nil
}
