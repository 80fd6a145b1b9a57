package launch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/launcher/internal/driver"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Who writes which job transition (the scheduler and the API write the
// others, see docs/launcher.md): the launcher moves an admitted job to
// running, succeeded or failed, an admitted or running job with
// cancel_requested to cancelled, and records the instances, the post
// controller's running and stopped, and cleaned_at once it has removed
// every instance of a job asked to be cleaned.

// Post controller statuses (the API writes pending and stopped, the
// scheduler admitted, the launcher running and stopped).
const (
	pcAdmitted = "admitted"
	pcRunning  = "running"
	pcStopped  = "stopped"
)

// Conditions the launcher sets.
const (
	condFailed           = "Failed"
	condCancelled        = "Cancelled"
	reasonInstanceFailed = "InstanceFailed"
	reasonStartFailed    = "StartFailed"
	reasonInstanceLost   = "InstanceLost"
	reasonCancelled      = "CancelRequested"
)

// lostMessage is the message of an instance that had started and that no
// driver knows any more (the simulated driver after a restart, a container
// removed behind the launcher's back).
const lostMessage = "lost: the runtime no longer knows this instance"

// readJob reads job id; nil when it does not exist or is being deleted.
func (s *Service) readJob(ctx context.Context, id string) (*events.Job, []outbox.Entry, error) {
	raw, err := s.jobs.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read job %s: %w", id, err)
	}
	var env outbox.Envelope
	if err := bson.Unmarshal(raw, &env); err != nil {
		return nil, nil, fmt.Errorf("decode job %s: %w", id, err)
	}
	if env.Deleted {
		return nil, nil, nil
	}
	var j events.Job
	if err := bson.Unmarshal(raw, &j); err != nil {
		return nil, nil, fmt.Errorf("decode job %s: %w", id, err)
	}
	return &j, env.Outbox, nil
}

// writeJob stores j (read at version prev) with one event per type, in one
// version-conditioned write.
func (s *Service) writeJob(ctx context.Context, j *events.Job, prev int64, pending []outbox.Entry, types []string) error {
	j.Version = prev + 1
	j.UpdatedAt = s.now()
	evs := make([]events.Event, len(types))
	for i, t := range types {
		e, err := events.New(t, Source, j.QueueID, j.ID, j)
		if err != nil {
			return err
		}
		evs[i] = e
	}
	err := s.deps.Outbox.Replace(ctx, s.jobs, j.ID, prev, j.Version, pending, j, evs...)
	if errors.Is(err, outbox.ErrVersionConflict) {
		return errConflict
	}
	if err != nil {
		return fmt.Errorf("%s job %s: %w", types[0], j.ID, err)
	}
	return nil
}

// syncJob brings job id and its instances in line with each other.
func (s *Service) syncJob(ctx context.Context, id string) (time.Duration, error) {
	j, pending, err := s.readJob(ctx, id)
	if err != nil {
		return 0, err
	}
	obs := s.pool.refsOf(id)
	if j == nil {
		// Deleted (or never was): nothing of it may keep running.
		return 0, s.cleanupDrivers(ctx, id, obs, nil)
	}
	prev, status := j.Version, j.Status
	var types []string
	switch {
	case j.Status == events.JobAdmitted || j.Status == events.JobRunning:
		if j.CancelRequested || j.CleanupRequested {
			types, err = s.cancelJob(ctx, j, obs)
		} else {
			types, err = s.runJob(ctx, j, obs)
		}
	case events.JobFinal(j.Status):
		types, err = s.finishedJob(ctx, j, obs)
	}
	if err != nil {
		return 0, err
	}
	pcTypes, err := s.syncPostController(ctx, j, obs)
	if err != nil {
		return 0, err
	}
	for _, t := range pcTypes {
		if !slices.Contains(types, t) && !(t == events.TypeJobUpdated && len(types) > 0) {
			types = append(types, t)
		}
	}
	if len(types) == 0 {
		return 0, nil
	}
	if err := s.writeJob(ctx, j, prev, pending, types); err != nil {
		return 0, err
	}
	s.observeWrite(j, status)
	if j.Status != status {
		// What a new status asks for (stop the others of a failed job,
		// remove what a cleaned one had) is done by the next round.
		s.wq.Add(jobKey + id)
	}
	return 0, nil
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

// mainRefs are the controller and the workers of j.
func mainRefs(j *events.Job) []driver.Ref {
	refs := make([]driver.Ref, 0, j.WorkerInstances+1)
	refs = append(refs, driver.Ref{JobID: j.ID, Role: driver.RoleController})
	for i := range j.WorkerInstances {
		refs = append(refs, driver.Ref{JobID: j.ID, Role: driver.RoleWorker, Index: i})
	}
	return refs
}

func isMain(r driver.Ref) bool { return r.Role == driver.RoleController || r.Role == driver.RoleWorker }

// runJob starts what is missing of an admitted or running job, records what
// the drivers report and moves the job to running, succeeded or failed.
func (s *Service) runJob(ctx context.Context, j *events.Job, obs map[driver.Ref]observed) ([]string, error) {
	now := s.now()
	changed := false
	for _, ref := range mainRefs(j) {
		if rec := findRecord(j, ref); rec != nil && rec.StartedAt != nil && !isFinalInstance(rec.Status) {
			if _, ok := obs[ref]; !ok {
				// Before calling an instance lost, make sure the drivers of
				// the job's queues exist (and so have listed what runs).
				var err error
				if obs, err = s.refreshObserved(ctx, j); err != nil {
					return nil, err
				}
				break
			}
		}
	}
	var missing []driver.Ref
	for _, ref := range mainRefs(j) {
		if o, ok := obs[ref]; ok {
			changed = apply(record(j, ref), o.st, false) || changed
			continue
		}
		rec := findRecord(j, ref)
		switch {
		case rec != nil && isFinalInstance(rec.Status):
		case rec != nil && rec.StartedAt != nil:
			rec.Status, rec.Message, rec.FinishedAt = events.InstanceFailed, lostMessage, &now
			changed = true
		default:
			missing = append(missing, ref)
		}
	}
	if len(missing) > 0 && failedRecord(j) == nil {
		startChanged, err := s.startJobInstances(ctx, j, missing)
		if err != nil {
			return nil, err
		}
		changed = startChanged || changed
	}

	if f := failedRecord(j); f != nil {
		reason := reasonInstanceFailed
		switch {
		case f.Message == lostMessage:
			reason = reasonInstanceLost
		case f.StartedAt == nil:
			reason = reasonStartFailed
		}
		msg := failureMessage(f)
		j.Status, j.FinishedAt = events.JobFailed, &now
		setCondition(j, condFailed, "True", reason, msg, now)
		j.Warnings = append(j.Warnings, msg)
		s.metrics.failures.WithLabelValues(f.Role).Inc()
		return []string{events.TypeJobFailed}, nil
	}

	var types []string
	allStarted, allSucceeded := true, true
	var lastStart time.Time
	for _, ref := range mainRefs(j) {
		rec := findRecord(j, ref)
		if rec == nil || rec.StartedAt == nil {
			allStarted = false
		} else if rec.StartedAt.After(lastStart) {
			lastStart = *rec.StartedAt
		}
		if rec == nil || rec.Status != events.InstanceSucceeded {
			allSucceeded = false
		}
	}
	if j.Status == events.JobAdmitted && allStarted {
		j.Status, j.StartedAt = events.JobRunning, &lastStart
		types = append(types, events.TypeJobRunning)
	}
	if allSucceeded {
		j.Status, j.FinishedAt = events.JobSucceeded, &now
		types = append(types, events.TypeJobSucceeded)
	}
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

// startJobInstances starts the missing instances of j: the controller
// first (kubernetes workers are owned by it), then the workers. A start
// that cannot succeed is recorded as a failed instance, which fails the
// job; any other error is returned for a retry.
func (s *Service) startJobInstances(ctx context.Context, j *events.Job, missing []driver.Ref) (bool, error) {
	ctlQ, err := s.queue(ctx, events.ControllerQueue)
	if err != nil {
		return s.startFailed(j, missing[0], err)
	}
	workQ, err := s.queue(ctx, j.QueueID)
	if err != nil {
		return s.startFailed(j, missing[0], err)
	}
	ctlD, err := s.driverFor(ctx, ctlQ)
	if err != nil {
		return s.startFailed(j, missing[0], err)
	}
	workD, err := s.driverFor(ctx, workQ)
	if err != nil {
		return s.startFailed(j, missing[0], err)
	}
	ctlRef := driver.Ref{JobID: j.ID, Role: driver.RoleController}
	var owner *driver.Ref
	if ctlD == workD {
		owner = &ctlRef
	}
	start := func(ref driver.Ref) error {
		q, pd := workQ, workD
		if ref.Role == driver.RoleController {
			q, pd = ctlQ, ctlD
		}
		spec := jobSpec(j, string(ref.Role), ref.Index, q, s.cfg.APIURL)
		if ref.Role == driver.RoleWorker {
			spec.Owner = owner
		}
		if err := pd.d.Start(ctx, spec); err != nil {
			return err
		}
		s.metrics.starts.WithLabelValues(string(ref.Role)).Inc()
		return nil
	}
	workers := missing
	if missing[0] == ctlRef {
		if err := start(ctlRef); err != nil {
			return s.startFailed(j, ctlRef, err)
		}
		record(j, ctlRef)
		workers = missing[1:]
	}
	errs := make([]error, len(workers))
	parallel(s.cfg.StartParallelism, len(workers), func(i int) { errs[i] = start(workers[i]) })
	var transient []error
	changed := false
	for i, err := range errs {
		record(j, workers[i])
		if err == nil {
			continue
		}
		if permanent(err) {
			c, _ := s.startFailed(j, workers[i], err)
			changed = c || changed
			continue
		}
		transient = append(transient, err)
	}
	if failedRecord(j) != nil {
		return true, nil
	}
	return changed, errors.Join(transient...)
}

// startFailed records a start of ref that failed with err: as a failed
// instance if retrying cannot help, else as an error to retry.
func (s *Service) startFailed(j *events.Job, ref driver.Ref, err error) (bool, error) {
	if !permanent(err) {
		return false, fmt.Errorf("start %s: %w", ref, err)
	}
	now := s.now()
	rec := record(j, ref)
	rec.Status, rec.Message, rec.FinishedAt = events.InstanceFailed, "start failed: "+err.Error(), &now
	return true, nil
}

func permanent(err error) bool {
	var p errPermanent
	return errors.As(err, &p) || errors.Is(err, driver.ErrInvalidSpec) || errors.Is(err, driver.ErrInvalidConfig)
}

// cancelJob stops every instance of an admitted or running job asked to be
// cancelled (or cleaned), then records it cancelled (and cleaned).
func (s *Service) cancelJob(ctx context.Context, j *events.Job, obs map[driver.Ref]observed) ([]string, error) {
	withPC := j.CleanupRequested
	if err := s.stopAll(ctx, obs, func(r driver.Ref) bool { return isMain(r) || withPC }); err != nil {
		return nil, err
	}
	now := s.now()
	for ref, o := range obs {
		if isMain(ref) {
			apply(record(j, ref), o.st, true)
		}
	}
	stopRecords(j, now, withPC)
	j.Status, j.FinishedAt = events.JobCancelled, &now
	setCondition(j, condCancelled, "True", reasonCancelled, "cancelled: its instances were stopped", now)
	j.Warnings = []string{}
	types := []string{events.TypeJobCancelled}
	if j.CleanupRequested {
		if err := s.cleanupDrivers(ctx, j.ID, obs, j); err != nil {
			return nil, err
		}
		if j.CleanedAt == nil {
			j.CleanedAt = &now
			stopPostController(j, now)
			types = append(types, events.TypeJobCleaned)
		}
	}
	return types, nil
}

// finishedJob makes sure nothing of a final job still runs (the others of
// a failed job, the instances of a job someone else finished), records how
// they ended, and removes everything once a cleanup was asked.
func (s *Service) finishedJob(ctx context.Context, j *events.Job, obs map[driver.Ref]observed) ([]string, error) {
	if err := s.stopAll(ctx, obs, isMain); err != nil {
		return nil, err
	}
	now := s.now()
	changed := false
	for ref, o := range obs {
		if isMain(ref) {
			changed = apply(record(j, ref), o.st, true) || changed
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
		if j.CleanedAt == nil {
			j.CleanedAt = &now
			stopPostController(j, now)
			return []string{events.TypeJobCleaned}, nil
		}
	} else {
		// Instances no driver reports any more cannot be running.
		for i := range j.Instances {
			rec := &j.Instances[i]
			ref := driver.Ref{JobID: j.ID, Role: driver.Role(rec.Role), Index: rec.Index}
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

// syncPostController starts, watches and stops the job's post controller
// as post_controller.status says.
func (s *Service) syncPostController(ctx context.Context, j *events.Job, obs map[driver.Ref]observed) ([]string, error) {
	pc := j.PostController
	if pc == nil {
		return nil, nil
	}
	now := s.now()
	var cur *events.Instance
	for i := range j.Instances {
		if r := &j.Instances[i]; r.Role == events.RolePostController && (cur == nil || r.Index > cur.Index) {
			cur = r
		}
	}
	updated := []string{events.TypeJobUpdated}
	wantsStop := pc.Status == pcStopped || j.CleanupRequested || j.CleanedAt != nil
	if wantsStop {
		if cur == nil {
			return nil, nil
		}
		ref := driver.Ref{JobID: j.ID, Role: driver.RolePostController, Index: cur.Index}
		o, ok := obs[ref]
		if ok && !o.st.State.Final() {
			if err := o.pd.d.Stop(ctx, ref); err != nil {
				return nil, fmt.Errorf("stop %s: %w", ref, err)
			}
		}
		changed := false
		if ok {
			changed = apply(cur, o.st, true)
		}
		if !isFinalInstance(cur.Status) {
			cur.Status, cur.FinishedAt = events.InstanceStopped, &now
			changed = true
		}
		if pc.Status != pcStopped {
			pc.Status, pc.StoppedAt = pcStopped, &now
			changed = true
		}
		if changed {
			return updated, nil
		}
		return nil, nil
	}
	if pc.Status != pcAdmitted && pc.Status != pcRunning {
		return nil, nil // pending: the scheduler has not admitted it yet
	}
	idx := 0
	if cur != nil {
		idx = cur.Index
		if cur.StartedAt != nil && cur.StartedAt.Before(pc.RequestedAt) {
			idx++ // that one served an earlier request
		}
	}
	ref := driver.Ref{JobID: j.ID, Role: driver.RolePostController, Index: idx}
	if o, ok := obs[ref]; ok {
		rec := record(j, ref)
		changed := apply(rec, o.st, false)
		switch {
		case o.st.State.Final():
			pc.Status, pc.StoppedAt = pcStopped, &now
			changed = true
		case pc.Status == pcAdmitted && rec.StartedAt != nil:
			pc.Status, pc.StartedAt = pcRunning, rec.StartedAt
			changed = true
		}
		if changed {
			return updated, nil
		}
		return nil, nil
	}
	if rec := findRecord(j, ref); rec != nil && (rec.StartedAt != nil || isFinalInstance(rec.Status)) {
		if !isFinalInstance(rec.Status) {
			rec.Status, rec.Message, rec.FinishedAt = events.InstanceFailed, lostMessage, &now
		}
		pc.Status, pc.StoppedAt = pcStopped, &now
		return updated, nil
	}
	q, err := s.queue(ctx, events.PostControllerQueue)
	var pd *pooled
	if err == nil {
		pd, err = s.driverFor(ctx, q)
	}
	if err == nil {
		err = pd.d.Start(ctx, jobSpec(j, events.RolePostController, idx, q, s.cfg.APIURL))
	}
	if err != nil {
		if !permanent(err) {
			return nil, fmt.Errorf("start %s: %w", ref, err)
		}
		rec := record(j, ref)
		rec.Status, rec.Message, rec.FinishedAt = events.InstanceFailed, "start failed: "+err.Error(), &now
		pc.Status, pc.StoppedAt = pcStopped, &now
		return updated, nil
	}
	s.metrics.starts.WithLabelValues(events.RolePostController).Inc()
	record(j, ref)
	return updated, nil
}

// stopPostController marks the post controller of a cleaned job stopped.
func stopPostController(j *events.Job, now time.Time) {
	if pc := j.PostController; pc != nil && pc.Status != pcStopped {
		pc.Status, pc.StoppedAt = pcStopped, &now
	}
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
		if err := todo[i].pd.d.Stop(ctx, todo[i].st.Ref); err != nil {
			errs[i] = fmt.Errorf("stop %s: %w", todo[i].st.Ref, err)
		}
	})
	return errors.Join(errs...)
}

// cleanupDrivers removes everything of job id from every driver that
// reports an instance of it and, when the job is known, from the drivers
// of its queues (which may hold what a crash left half started).
func (s *Service) cleanupDrivers(ctx context.Context, id string, obs map[driver.Ref]observed, j *events.Job) error {
	pds := map[*pooled]bool{}
	for _, o := range obs {
		pds[o.pd] = true
	}
	if j != nil {
		for _, ref := range []string{j.QueueID, events.ControllerQueue, events.PostControllerQueue} {
			if q, err := s.queue(ctx, ref); err == nil {
				if pd, err := s.driverFor(ctx, q); err == nil {
					pds[pd] = true
				}
			}
		}
	}
	var errs []error
	for pd := range pds {
		if err := pd.d.Cleanup(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("cleanup %s on plugin %s: %w", id, pd.plugin.ID, err))
			continue
		}
		pd.forget(id)
	}
	return errors.Join(errs...)
}

// stopRecords marks every instance record that is not final stopped (the
// post controller's too when withPC). It reports whether any changed.
func stopRecords(j *events.Job, now time.Time, withPC bool) bool {
	changed := false
	for i := range j.Instances {
		rec := &j.Instances[i]
		if isFinalInstance(rec.Status) || (!withPC && rec.Role == events.RolePostController) {
			continue
		}
		rec.Status, rec.FinishedAt = events.InstanceStopped, &now
		changed = true
	}
	return changed
}

// findRecord returns j's record of ref, nil if none.
func findRecord(j *events.Job, ref driver.Ref) *events.Instance {
	for i := range j.Instances {
		if r := &j.Instances[i]; r.Role == string(ref.Role) && r.Index == ref.Index {
			return r
		}
	}
	return nil
}

// record returns j's record of ref, adding a pending one (kept in role,
// index order) if there is none.
func record(j *events.Job, ref driver.Ref) *events.Instance {
	if r := findRecord(j, ref); r != nil {
		return r
	}
	j.Instances = append(j.Instances, events.Instance{Role: string(ref.Role), Index: ref.Index, Status: events.InstancePending})
	slices.SortStableFunc(j.Instances, func(a, b events.Instance) int {
		return cmp.Or(cmp.Compare(roleOrder(a.Role), roleOrder(b.Role)), cmp.Compare(a.Index, b.Index))
	})
	return findRecord(j, ref)
}

func roleOrder(role string) int {
	switch role {
	case events.RoleController:
		return 0
	case events.RoleWorker:
		return 1
	}
	return 2
}

func isFinalInstance(status string) bool {
	return status == events.InstanceSucceeded || status == events.InstanceFailed || status == events.InstanceStopped
}

// apply copies what a driver reports of an instance into its record;
// stopping says the launcher stopped it (or is stopping it), so that its
// failure is a stop. A final record keeps its status. It reports whether
// the record changed.
func apply(rec *events.Instance, st driver.Status, stopping bool) bool {
	before := *rec
	started, finished := timePtr(st.StartedAt), timePtr(st.FinishedAt)
	if isFinalInstance(rec.Status) {
		if rec.ExitCode == nil && st.ExitCode != nil {
			rec.ExitCode = intPtr(*st.ExitCode)
		}
		if rec.StartedAt == nil {
			rec.StartedAt = started
		}
		return !sameInstance(before, *rec)
	}
	switch st.State {
	case driver.Pending:
		rec.Status = events.InstancePending
	case driver.Running:
		rec.Status = events.InstanceRunning
	case driver.Succeeded:
		rec.Status = events.InstanceSucceeded
	case driver.Failed:
		rec.Status = events.InstanceFailed
		if stopping {
			rec.Status = events.InstanceStopped
		}
	}
	rec.ExitCode = nil
	if st.ExitCode != nil {
		rec.ExitCode = intPtr(*st.ExitCode)
	}
	rec.Message = st.Message
	if started != nil {
		rec.StartedAt = started
	}
	rec.FinishedAt = finished
	return !sameInstance(before, *rec)
}

// timePtr is t as stored (UTC, milliseconds), nil for the zero time, so
// that what was read back compares equal to what a driver reports.
func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC().Truncate(time.Millisecond)
	return &t
}

func intPtr(n int) *int { return &n }

func sameInstance(a, b events.Instance) bool {
	eqT := func(x, y *time.Time) bool { return x == nil && y == nil || x != nil && y != nil && x.Equal(*y) }
	eqI := func(x, y *int) bool { return x == nil && y == nil || x != nil && y != nil && *x == *y }
	return a.Role == b.Role && a.Index == b.Index && a.Status == b.Status && a.Message == b.Message &&
		eqI(a.ExitCode, b.ExitCode) && eqT(a.StartedAt, b.StartedAt) && eqT(a.FinishedAt, b.FinishedAt)
}

// failedRecord returns the controller or worker that failed first, nil if
// none did.
func failedRecord(j *events.Job) *events.Instance {
	var first *events.Instance
	for i := range j.Instances {
		r := &j.Instances[i]
		if r.Status != events.InstanceFailed || r.Role == events.RolePostController {
			continue
		}
		if first == nil || (r.FinishedAt != nil && first.FinishedAt != nil && r.FinishedAt.Before(*first.FinishedAt)) {
			first = r
		}
	}
	return first
}

// failureMessage says which instance failed and how: "worker 3 exited
// with code 2".
func failureMessage(r *events.Instance) string {
	switch {
	case r.ExitCode != nil:
		return fmt.Sprintf("%s %d exited with code %d", r.Role, r.Index, *r.ExitCode)
	case r.Message != "":
		return fmt.Sprintf("%s %d failed: %s", r.Role, r.Index, r.Message)
	}
	return fmt.Sprintf("%s %d failed", r.Role, r.Index)
}

// setCondition sets the condition of type typ, moving its transition time
// only when its status changes (Kubernetes semantics).
func setCondition(j *events.Job, typ, status, reason, message string, now time.Time) {
	for i := range j.Conditions {
		c := &j.Conditions[i]
		if c.Type != typ {
			continue
		}
		if c.Status != status {
			c.LastTransitionTime = now
		}
		c.Status, c.Reason, c.Message = status, reason, message
		return
	}
	j.Conditions = append(j.Conditions, events.Condition{Type: typ, Status: status, Reason: reason, Message: message, LastTransitionTime: now})
}

// parallel runs f(0..n-1) on at most limit goroutines.
func parallel(limit, n int, f func(i int)) {
	if n == 0 {
		return
	}
	sem := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			f(i)
		}()
	}
	wg.Wait()
}
