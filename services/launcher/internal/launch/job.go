package launch

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/services/launcher/internal/driver"
	"golang.org/x/sync/errgroup"
)

// What the launcher writes of a job (docs/job-record.md): it moves an
// admitted job to running, succeeded or failed, an admitted or running job
// with cancel_requested to cancelled, and records the instances and the
// post controller's running and stopped. The API and the scheduler write
// the rest; jobdoc.Update refuses anything else.

// Post controller statuses.
const (
	pcAdmitted = events.PostControllerAdmitted
	pcRunning  = events.PostControllerRunning
	pcStopped  = events.PostControllerStopped
)

// Conditions the launcher sets.
const (
	condFailed           = jobdoc.CondFailed
	condCancelled        = jobdoc.CondCancelled
	reasonInstanceFailed = "InstanceFailed"
	reasonStartFailed    = "StartFailed"
	reasonInstanceLost   = "InstanceLost"
	reasonCancelled      = "CancelRequested"
)

// lostMessage is the message of an instance that had started and that no
// driver knows any more (the simulated driver after a restart, a container
// removed behind the launcher's back).
const lostMessage = "lost: the runtime no longer knows this instance"

// syncJob brings job id and its instances in line with each other, in one
// write through the job record's update loop.
func (s *Service) syncJob(ctx context.Context, id string) (after time.Duration, err error) {
	var before string
	j, err := s.record.Update(ctx, id, func(j *events.Job, now time.Time) ([]string, error) {
		before = j.Status
		return s.reconcileJob(ctx, j, now)
	})
	if err == nil {
		// A start retry, start timeout or deadline comes due (attempts.go).
		defer func() { after = s.wakeAfter(ctx, j) }()
	}
	switch {
	case errors.Is(err, jobdoc.ErrNotFound):
		// Deleted (or never was): nothing of it may keep running, and of a
		// job whose deletion was announced nothing is kept (the local
		// driver's logs): nothing can read them any more.
		gone, _ := s.deleted.Load(id)
		j, _ := gone.(*events.Job)
		if err := s.removeFromDrivers(ctx, id, s.pool.refsOf(id), j, j != nil); err != nil {
			return 0, err
		}
		// Only the deletion this round carried out is forgotten: one
		// announced while it ran (the record gone before its event came,
		// as a running job the API deletes) is the next round's to purge.
		if j != nil {
			s.deleted.CompareAndDelete(id, gone)
		}
		return 0, nil
	case errors.Is(err, jobdoc.ErrConflict):
		return 0, errConflict
	case err != nil:
		return 0, err
	}
	if j.Status != before {
		s.observeWrite(j, before)
		// What a new status asks for (stop the others of a failed job,
		// remove what a cleaned one had) is done by the next round.
		s.wq.Add(jobKey + id)
	}
	return 0, nil
}

// reconcileJob is syncJob's change: it does what j's status and requests
// ask of the drivers and records what they report.
func (s *Service) reconcileJob(ctx context.Context, j *events.Job, now time.Time) ([]string, error) {
	rs := newRecords(j)
	obs := s.pool.refsOf(j.ID)
	var types []string
	var err error
	switch {
	case j.Status == events.JobAdmitted || j.Status == events.JobRunning:
		if j.CancelRequested || j.CleanupRequested {
			types, err = s.cancelJob(ctx, rs, obs, now)
		} else {
			types, err = s.runJob(ctx, rs, obs, now)
		}
	case events.JobFinal(j.Status):
		types, err = s.finishedJob(ctx, rs, obs, now)
	}
	if err != nil {
		return nil, err
	}
	pcTypes, err := s.syncPostController(ctx, rs, obs, now)
	if err != nil {
		return nil, err
	}
	for _, t := range pcTypes {
		if !slices.Contains(types, t) && !(t == events.TypeJobUpdated && len(types) > 0) {
			types = append(types, t)
		}
	}
	return types, nil
}

// observeWrite updates the metrics after a job write.
func (s *Service) observeWrite(j *events.Job, before string) {
	if j.Status == before || !events.JobFinal(j.Status) {
		return
	}
	if j.StartedAt != nil && j.FinishedAt != nil {
		s.metrics.runDuration.WithLabelValues(j.Status).Observe(j.FinishedAt.Sub(*j.StartedAt).Seconds())
	}
}

// runJob starts what is missing of an admitted or running job, records what
// the drivers report and moves the job to running, succeeded or failed.
func (s *Service) runJob(ctx context.Context, rs *records, obs map[driver.Ref]observed, now time.Time) ([]string, error) {
	j := rs.j
	recorded := recordedEnds(j)
	if unseenStarted(rs, obs) {
		var err error
		if obs, err = s.refreshObserved(ctx, j); err != nil {
			return nil, err
		}
	}
	stale := dropStaleRetry(j)
	missing, changed := observeMain(rs, obs, now)
	changed = stale || changed
	remain, err := s.reapEnded(ctx, obs, recorded)
	if err != nil {
		return nil, err
	}
	if failedRecord(j) == nil {
		if types := s.overdue(ctx, rs, obs, now); len(types) > 0 {
			return types, nil // its instances are stopped by the next round
		}
	}
	tried := len(missing) > 0 && failedRecord(j) == nil && s.startDue(j.ID, now)
	if tried {
		startChanged, err := s.startJobInstances(ctx, rs, missing, now)
		if err != nil {
			return nil, err
		}
		changed = startChanged || changed
	}
	if f := failedRecord(j); f != nil {
		if types, ok, err := s.retryJob(ctx, rs, obs, f, now); ok {
			return types, err
		}
		s.metrics.failures.WithLabelValues(f.Role).Inc()
		if f.StartedAt == nil && f.Message != lostMessage {
			jobdoc.SetCondition(j, jobdoc.CondStarted, "False", reasonStartFailed, failureMessage(f), now)
		}
		return failJob(j, f, now), nil
	}
	types := progress(rs, now, !remain)
	changed = s.noteStart(rs, tried, rs.troubles, pendingTroubles(rs, obs), now) || changed
	if len(types) == 0 && changed {
		types = append(types, events.TypeJobUpdated)
	}
	return types, nil
}

// refreshObserved creates the drivers of j's queues if they do not exist
// yet, then returns what every driver reports of j's instances.
func (s *Service) refreshObserved(ctx context.Context, j *events.Job) (map[driver.Ref]observed, error) {
	for _, ref := range []string{j.QueueID, events.ControllerQueue} {
		q, err := s.queue(ctx, ref)
		if err != nil {
			if permanent(err) {
				continue // nothing can run there: lost it is
			}
			return nil, err
		}
		if _, err := s.driverFor(ctx, q); err != nil && !permanent(err) {
			return nil, err
		}
	}
	return s.pool.refsOf(j.ID), nil
}

// jobDrivers are the queues and drivers a job's instances start on.
type jobDrivers struct {
	ctlQ, workQ *events.Queue
	ctlD, workD *pooled
}

// unordered reports whether the job's controller may start together with
// its workers: neither driver needs it first.
func (d jobDrivers) unordered() bool {
	_, ctl := d.ctlD.d.(driver.Unordered)
	_, work := d.workD.d.(driver.Unordered)
	return ctl && work
}

func (s *Service) jobDrivers(ctx context.Context, j *events.Job) (jobDrivers, error) {
	var d jobDrivers
	var err error
	if d.ctlQ, err = s.queue(ctx, events.ControllerQueue); err != nil {
		return d, err
	}
	if d.workQ, err = s.queue(ctx, j.QueueID); err != nil {
		return d, err
	}
	if d.ctlD, err = s.driverFor(ctx, d.ctlQ); err != nil {
		return d, err
	}
	if d.workQ.PluginID == d.ctlQ.PluginID { // the same plugin: read once per job
		d.workD = d.ctlD
		return d, nil
	}
	d.workD, err = s.driverFor(ctx, d.workQ)
	return d, err
}

// startJobInstances starts the missing instances of j: the controller
// first (kubernetes workers are owned by it), then the workers; on drivers
// where the order does not matter (driver.Unordered) all of them at once.
// A start that cannot succeed is recorded as a failed instance, which
// fails the job; any other error is returned for a retry.
func (s *Service) startJobInstances(ctx context.Context, rs *records, missing []driver.Ref, now time.Time) (bool, error) {
	j := rs.j
	d, err := s.jobDrivers(ctx, j)
	var pending *tryUnderWay
	if errors.As(err, &pending) {
		return false, err // no trouble: the job comes back when the try ends
	}
	if err != nil {
		return startFailed(rs, blamed(missing, d), err, now)
	}
	ctlRef := driver.Ref{JobID: j.ID, Role: driver.RoleController}
	var owner *driver.Ref
	if d.ctlD == d.workD {
		owner = &ctlRef
	}
	start := func(ref driver.Ref) error {
		q, pd := d.workQ, d.workD
		if ref.Role == driver.RoleController {
			q, pd = d.ctlQ, d.ctlD
		}
		spec := jobSpec(j, string(ref.Role), ref.Index, q, s.cfg.APIURL)
		if ref.Role == driver.RoleWorker {
			spec.Owner = owner
		}
		if err := pd.start(ctx, spec); err != nil {
			return err
		}
		s.metrics.starts.WithLabelValues(string(ref.Role)).Inc()
		return nil
	}
	together := missing // the workers, and the controller when the order does not matter
	if missing[0] == ctlRef && !d.unordered() {
		if err := start(ctlRef); err != nil {
			return startFailed(rs, ctlRef, err, now)
		}
		rs.get(ctlRef)
		together = missing[1:]
	}
	errs := make([]error, len(together))
	parallel(s.cfg.StartParallelism, len(together), func(i int) { errs[i] = start(together[i]) })
	changed := false
	for i, err := range errs {
		rs.get(together[i])
		if err != nil {
			c, _ := startFailed(rs, together[i], err, now)
			changed = c || changed
		}
	}
	if failedRecord(j) != nil {
		return true, nil
	}
	return changed, nil
}

// startFailed records a start of ref that failed with err: as a failed
// instance if retrying cannot help, else as trouble to report and retry
// after a back-off (attempts.go).
func startFailed(rs *records, ref driver.Ref, err error, now time.Time) (bool, error) {
	if !permanent(err) {
		rs.troubles = append(rs.troubles, troubleOf(ref, err))
		return true, nil
	}
	rec := rs.get(ref)
	rec.Status, rec.Message, rec.FinishedAt = events.InstanceFailed, "start failed: "+err.Error(), &now
	return true, nil
}

func permanent(err error) bool {
	var p errPermanent
	return errors.As(err, &p) || errors.Is(err, driver.ErrInvalidSpec) || errors.Is(err, driver.ErrInvalidConfig)
}

// cancelJob stops every instance of an admitted or running job asked to be
// cancelled (or cleaned), removes them when a cleanup was asked, then
// records it cancelled; the scheduler then releases its lease and, for a
// cleanup, records it cleaned.
func (s *Service) cancelJob(ctx context.Context, rs *records, obs map[driver.Ref]observed, now time.Time) ([]string, error) {
	j := rs.j
	withPC := j.CleanupRequested
	if err := s.stopAll(ctx, obs, func(r driver.Ref) bool { return isMain(r) || withPC }); err != nil {
		return nil, err
	}
	// A stop returns once its instance has ended, up to the grace period
	// after the round began: how they ended is what the drivers report
	// now, and an instance whose end has not reached the cache yet ended
	// by now, not at the round's start (which recorded a program that
	// ignored SIGTERM as ended 10 s before it was killed).
	if t := s.deps.Now().UTC().Truncate(time.Millisecond); t.After(now) {
		now = t
	}
	maps.Copy(obs, s.pool.refsOf(j.ID))
	for ref, o := range obs {
		if isMain(ref) {
			apply(rs.get(ref), o.st, true)
		}
	}
	stopRecords(j, now, withPC)
	j.Status, j.FinishedAt = events.JobCancelled, &now
	jobdoc.SetCondition(j, condCancelled, "True", reasonCancelled, "cancelled: its instances were stopped", now)
	if j.CleanupRequested {
		if err := s.cleanupDrivers(ctx, j.ID, obs, j); err != nil {
			return nil, err
		}
		stopPostController(j, now)
	}
	return []string{events.TypeJobCancelled}, nil
}

// finishedJob makes sure nothing of a final job still runs (the others of
// a failed job, the instances of a job someone else finished), records how
// they ended, and removes everything once a cleanup was asked.
func (s *Service) finishedJob(ctx context.Context, rs *records, obs map[driver.Ref]observed, now time.Time) ([]string, error) {
	j := rs.j
	recorded := recordedEnds(j)
	if err := s.stopAll(ctx, obs, isMain); err != nil {
		return nil, err
	}
	changed := false
	for ref, o := range obs {
		if isMain(ref) {
			changed = apply(rs.get(ref), o.st, true) || changed
		}
	}
	if j.CleanupRequested || j.CleanedAt != nil {
		if len(obs) > 0 || j.CleanedAt == nil {
			if err := s.stopAll(ctx, obs, func(driver.Ref) bool { return true }); err != nil {
				return nil, err
			}
			if err := s.cleanupDrivers(ctx, j.ID, obs, j); err != nil {
				return nil, err
			}
		}
		changed = stopRecords(j, now, true) || changed
		changed = stopPostController(j, now) || changed
	} else {
		if _, err := s.reapEnded(ctx, obs, recorded); err != nil {
			return nil, err
		}
		// Instances no driver reports any more cannot be running.
		for i := range j.Instances {
			rec := &j.Instances[i]
			ref := refOf(j.ID, *rec)
			if _, ok := obs[ref]; !ok && isMain(ref) && !isFinalInstance(rec.Status) {
				rec.Status, rec.FinishedAt = events.InstanceStopped, &now
				changed = true
			}
		}
	}
	if changed {
		return []string{events.TypeJobUpdated}, nil
	}
	return nil, nil
}

// stopAll stops, in parallel, every observed instance that is not final
// and that which selects.
func (s *Service) stopAll(ctx context.Context, obs map[driver.Ref]observed, which func(driver.Ref) bool) error {
	var todo []observed
	for ref, o := range obs {
		if which(ref) && !o.st.State.Final() {
			todo = append(todo, o)
		}
	}
	errs := make([]error, len(todo))
	parallel(s.cfg.StartParallelism, len(todo), func(i int) {
		if err := todo[i].pd.stop(ctx, todo[i].st.Ref); err != nil {
			errs[i] = fmt.Errorf("stop %s: %w", todo[i].st.Ref, err)
		}
	})
	return errors.Join(errs...)
}

// cleanupDrivers removes everything of job id from every driver that
// reports an instance of it and, when the job is known, from the drivers
// of its queues (which may hold what a crash left half started, or what a
// runtime that could not be reached since the launcher's start holds).
// While the driver of a queue that may hold the job's instances cannot be
// made (its runtime down, the store unreadable), the cleanup fails, to be
// tried again with the work queue's back-off: counted done, it left the
// job's containers behind on that runtime. A queue or plugin that no
// longer exists has no driver to reach, and is passed over
// (docs/launcher.md).
func (s *Service) cleanupDrivers(ctx context.Context, id string, obs map[driver.Ref]observed, j *events.Job) error {
	return s.removeFromDrivers(ctx, id, obs, j, false)
}

// removeFromDrivers is cleanupDrivers; with purge, of a deleted job, it
// removes what a cleanup keeps too (driver.Purger).
func (s *Service) removeFromDrivers(ctx context.Context, id string, obs map[driver.Ref]observed, j *events.Job, purge bool) error {
	pds := map[*pooled]bool{}
	for _, o := range obs {
		pds[o.pd] = true
	}
	if j != nil {
		ran := j.AdmittedAt != nil || len(j.Instances) > 0
		pcRan := j.PostController != nil && j.PostController.Status != events.PostControllerPending
		for _, qr := range []struct {
			ref     string
			mayHold bool
		}{{j.QueueID, ran}, {events.ControllerQueue, ran}, {events.PostControllerQueue, pcRan}} {
			pd, err := s.queueDriver(ctx, qr.ref)
			switch {
			case err == nil:
				pds[pd] = true
			case permanent(err) || !qr.mayHold:
				// No driver to reach, or none that can hold anything of
				// the job: it never started there.
			default:
				return fmt.Errorf("cleanup %s: the driver of queue %s may hold its instances: %w", id, qr.ref, err)
			}
		}
	}
	var errs []error
	for pd := range pds {
		remove := pd.cleanup
		if purge {
			remove = pd.purge
		}
		if err := remove(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("cleanup %s on %s: %w", id, pd.plugins(), err))
			continue
		}
		pd.forget(id)
	}
	return errors.Join(errs...)
}

// queueDriver returns the driver of the queue with id or name ref.
func (s *Service) queueDriver(ctx context.Context, ref string) (*pooled, error) {
	q, err := s.queue(ctx, ref)
	if err != nil {
		return nil, err
	}
	return s.driverFor(ctx, q)
}

// parallel runs f(0..n-1) on at most limit goroutines.
func parallel(limit, n int, f func(i int)) {
	var g errgroup.Group
	g.SetLimit(max(limit, 1))
	for i := range n {
		g.Go(func() error { f(i); return nil })
	}
	_ = g.Wait()
}
