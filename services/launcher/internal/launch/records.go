package launch

import (
	"fmt"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/services/launcher/internal/driver"
)

// This file is the pure part of a job's reconciliation: instance records
// against what the drivers report, and what the records say of the job.
// No I/O; the callers in job.go and postcontroller.go do that.

// records indexes a job's instance records by ref, so that reconciling a
// job of 100,000 workers takes one pass over them, not one per worker.
// Records are appended unsorted; the job record (jobdoc) sorts them.
type records struct {
	j   *events.Job
	pos map[driver.Ref]int
	// troubles are the starts of this round that failed for a reason
	// retrying may cure (attempts.go).
	troubles []startTrouble
}

func newRecords(j *events.Job) *records {
	r := &records{j: j, pos: make(map[driver.Ref]int, len(j.Instances))}
	for i, in := range j.Instances {
		r.pos[refOf(j.ID, in)] = i
	}
	return r
}

func refOf(jobID string, in events.Instance) driver.Ref {
	return driver.Ref{JobID: jobID, Role: driver.Role(in.Role), Index: in.Index}
}

// find returns the record of ref, nil if none. The pointer is valid until
// the next get adds a record.
func (r *records) find(ref driver.Ref) *events.Instance {
	if i, ok := r.pos[ref]; ok {
		return &r.j.Instances[i]
	}
	return nil
}

// get returns the record of ref, adding a pending one if there is none.
func (r *records) get(ref driver.Ref) *events.Instance {
	if rec := r.find(ref); rec != nil {
		return rec
	}
	r.j.Instances = append(r.j.Instances, events.Instance{Role: string(ref.Role), Index: ref.Index, Status: events.InstancePending})
	r.pos[ref] = len(r.j.Instances) - 1
	return &r.j.Instances[len(r.j.Instances)-1]
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

func isFinalInstance(status string) bool {
	return status == events.InstanceSucceeded || status == events.InstanceFailed || status == events.InstanceStopped
}

// observeMain copies what the drivers report (obs) into the records of the
// controller and the workers, marks lost the started ones no driver knows
// any more, and returns those never started. It reports whether any record
// changed.
func observeMain(rs *records, obs map[driver.Ref]observed, now time.Time) (missing []driver.Ref, changed bool) {
	for _, ref := range mainRefs(rs.j) {
		if o, ok := obs[ref]; ok {
			changed = apply(rs.get(ref), o.st, false) || changed
			continue
		}
		rec := rs.find(ref)
		switch {
		case rec != nil && isFinalInstance(rec.Status):
		case rec != nil && rec.StartedAt != nil:
			rec.Status, rec.Message, rec.FinishedAt = events.InstanceFailed, lostMessage, &now
			changed = true
		default:
			missing = append(missing, ref)
		}
	}
	return missing, changed
}

// unseenStarted reports whether a started, unfinished controller or worker
// is missing from obs: before calling it lost, the caller makes sure the
// drivers of the job's queues exist (and so have listed what runs).
func unseenStarted(rs *records, obs map[driver.Ref]observed) bool {
	for _, ref := range mainRefs(rs.j) {
		if rec := rs.find(ref); rec != nil && rec.StartedAt != nil && !isFinalInstance(rec.Status) {
			if _, ok := obs[ref]; !ok {
				return true
			}
		}
	}
	return false
}

// progress moves an admitted or running job whose records say so to
// running, then succeeded (once gone: no instance of it remains in a
// runtime that removes ended ones, reap.go), and returns the event types;
// failures are failJob's.
func progress(rs *records, now time.Time, gone bool) []string {
	j := rs.j
	allStarted, allSucceeded := true, true
	var lastStart time.Time
	for _, ref := range mainRefs(j) {
		rec := rs.find(ref)
		if rec == nil || rec.StartedAt == nil {
			allStarted = false
		} else if rec.StartedAt.After(lastStart) {
			lastStart = *rec.StartedAt
		}
		if rec == nil || rec.Status != events.InstanceSucceeded {
			allSucceeded = false
		}
	}
	var types []string
	if j.Status == events.JobAdmitted && allStarted {
		j.Status, j.StartedAt = events.JobRunning, &lastStart
		types = append(types, events.TypeJobRunning)
	}
	if allSucceeded && gone {
		var last *time.Time
		for _, ref := range mainRefs(j) {
			if f := rs.find(ref).FinishedAt; f == nil {
				last = nil
				break
			} else if last == nil || f.After(*last) {
				last = f
			}
		}
		ended := endedAt(j, last, now)
		j.Status, j.FinishedAt = events.JobSucceeded, &ended
		types = append(types, events.TypeJobSucceeded)
	}
	return types
}

// endedAt is when a job whose instances ended on their own ended: the end
// time the driver reports of an instance (the last one's when the job
// succeeded, the first failed one's when it failed), not the time the
// launcher saw it: a launcher that was not running then (restarted, or
// upgraded) sees it later, and finished_at, the run-duration metric and the
// start estimates built on it would count the gap. now where the instance
// has no end time, and never after now (a runtime's clock ahead of ours) nor
// before the job started.
func endedAt(j *events.Job, instance *time.Time, now time.Time) time.Time {
	if instance == nil || instance.After(now) {
		return now
	}
	if j.StartedAt != nil && instance.Before(*j.StartedAt) {
		return *j.StartedAt
	}
	return *instance
}

// failJob records j failed because of its first failed instance f.
func failJob(j *events.Job, f *events.Instance, now time.Time) []string {
	reason := reasonInstanceFailed
	switch {
	case f.Message == lostMessage:
		reason = reasonInstanceLost
	case f.StartedAt == nil:
		reason = reasonStartFailed
	}
	ended := endedAt(j, f.FinishedAt, now)
	j.Status, j.FinishedAt = events.JobFailed, &ended
	jobdoc.SetCondition(j, condFailed, "True", reason, failureMessage(f), ended)
	return []string{events.TypeJobFailed}
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

// apply copies what a driver reports of an instance into its record;
// stopping says the launcher stopped it (or is stopping it), so that its
// failure is a stop, unless the driver says it ended on its own first
// (driver.ReasonExited). A final record keeps its status. It reports whether
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
		if stopping && st.Reason != driver.ReasonExited {
			rec.Status = events.InstanceStopped
		}
	}
	rec.ExitCode = nil
	if st.ExitCode != nil {
		rec.ExitCode = intPtr(*st.ExitCode)
	}
	rec.Message = st.Message
	if rec.Status == events.InstanceFailed && st.Reason == driver.ReasonLost {
		rec.Message = lostMessage // reason InstanceLost, retried by retry_on "lost"
	}
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
// with code 2", with what the runtime said of it when it said something
// ("controller 0 exited with code 137: out of memory").
func failureMessage(r *events.Instance) string {
	switch {
	case r.ExitCode != nil && r.Message != "":
		return fmt.Sprintf("%s %d exited with code %d: %s", r.Role, r.Index, *r.ExitCode, r.Message)
	case r.ExitCode != nil:
		return fmt.Sprintf("%s %d exited with code %d", r.Role, r.Index, *r.ExitCode)
	case r.Message != "":
		return fmt.Sprintf("%s %d failed: %s", r.Role, r.Index, r.Message)
	}
	return fmt.Sprintf("%s %d failed", r.Role, r.Index)
}

// latestPostController returns the record of j's post controller with the
// highest index, nil if none.
func latestPostController(j *events.Job) *events.Instance {
	var cur *events.Instance
	for i := range j.Instances {
		if r := &j.Instances[i]; r.Role == events.RolePostController && (cur == nil || r.Index > cur.Index) {
			cur = r
		}
	}
	return cur
}

// stopPostController marks the post controller of j stopped.
func stopPostController(j *events.Job, now time.Time) bool {
	if pc := j.PostController; pc != nil && pc.Status != pcStopped {
		pc.Status, pc.StoppedAt = pcStopped, &now
		return true
	}
	return false
}
