package scheduler

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/services/scheduler/internal/admit"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Jobs that wait for other jobs (depends_on) and jobs of arrays
// (max_parallel) are held back before admit sees them: a held job is not a
// request for capacity. A job whose dependency can no longer meet its
// condition is cancelled by the scheduler, which cancels what it never
// admitted (docs/job-record.md).
//
// What the scheduler knows of a dependency: the job itself while it is in
// the picture (active), else its final status, remembered from its final
// event (noteFinal) or read once from MongoDB (loadGates) when no event
// told it, e.g. after a resync or for a job that ended before this
// leadership. So a dependency's final event starts the pass that admits or
// cancels its dependents; no job is polled.

// Reasons of the Admitted condition for held jobs.
const (
	reasonWaitingForDependency = "WaitingForDependency"
	reasonDependencyFailed     = "DependencyFailed"
	reasonArrayMaxParallel     = "ArrayMaxParallel"
)

// gone is the final status remembered for a job that no longer exists.
const gone = "deleted"

// gate is what the plan needs besides the picture to hold jobs back.
type gate struct {
	finals      map[string]string // final status of jobs out of the picture, or gone
	maxParallel map[string]int    // by array id; absent or 0: no limit
	cancelled   map[string]bool   // arrays whose cancel was asked, by id
	cancelSeen  map[string]bool   // jobs asking to cancel whose array was read since
}

// gate returns what this leadership knows for the gate; it keeps it from
// pass to pass, filled in by noteFinal and loadGates.
func (t *term) gate() gate {
	if t.g == nil {
		t.g = &gate{finals: map[string]string{}, maxParallel: map[string]int{}, cancelled: map[string]bool{}, cancelSeen: map[string]bool{}}
	}
	return *t.g
}

// noteFinal remembers the outcome of a job that ended or was deleted, for
// the jobs that depend on it once it has left the picture.
func (t *term) noteFinal(j *events.Job, deleted bool) {
	g := t.gate()
	switch {
	case deleted:
		g.finals[j.ID] = gone
	case events.JobFinal(j.Status):
		g.finals[j.ID] = j.Status
	}
}

// loadGates reads what the next plan needs and the picture lacks: the
// status of dependencies neither in the picture nor remembered, the
// max_parallel of arrays not seen yet, and the cancel of an array one of
// whose jobs asks to cancel (arrays.go); and forgets outcomes no waiting
// job refers to any more.
func (t *term) loadGates(ctx context.Context) error {
	g := t.gate()
	wanted := map[string]bool{}
	var deps, arrays bson.A
	loading := map[string]bool{} // arrays to read
	for _, j := range t.jobs {
		if j.ArrayID != "" {
			_, known := g.maxParallel[j.ArrayID]
			if j.CancelRequested && !g.cancelled[j.ArrayID] && !g.cancelSeen[j.ID] {
				g.cancelSeen[j.ID] = true
				known = false
			}
			if !known && !loading[j.ArrayID] {
				loading[j.ArrayID] = true
				arrays = append(arrays, j.ArrayID)
			}
		}
		if !notAdmitted(j) {
			continue
		}
		for _, d := range j.DependsOn {
			wanted[d.JobID] = true
			if _, ok := g.finals[d.JobID]; !ok && t.jobs[d.JobID] == nil {
				deps = append(deps, d.JobID)
			}
		}
	}
	for id := range g.finals {
		if !wanted[id] {
			delete(g.finals, id)
		}
	}
	for id := range g.cancelSeen {
		if t.jobs[id] == nil {
			delete(g.cancelSeen, id)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	if len(deps) > 0 {
		if err := t.loadFinals(ctx, deps); err != nil {
			return err
		}
	}
	if len(arrays) > 0 {
		return t.loadArrays(ctx, arrays)
	}
	return nil
}

func (t *term) loadFinals(ctx context.Context, ids bson.A) error {
	cur, err := t.s.jobs.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}},
		options.Find().SetProjection(bson.D{{Key: "status", Value: 1}, {Key: "_deleted", Value: 1}}))
	if err != nil {
		return fmt.Errorf("read dependencies: %w", err)
	}
	var docs []struct {
		ID      string `bson:"_id"`
		Status  string `bson:"status"`
		Deleted bool   `bson:"_deleted"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return fmt.Errorf("read dependencies: %w", err)
	}
	found := map[string]bool{}
	for _, d := range docs {
		found[d.ID] = true
		switch {
		case d.Deleted:
			t.g.finals[d.ID] = gone
		case events.JobFinal(d.Status):
			t.g.finals[d.ID] = d.Status
		}
		// Active but not in the picture yet: its event is on its way.
	}
	for _, id := range ids {
		if !found[id.(string)] {
			t.g.finals[id.(string)] = gone
		}
	}
	return nil
}

// endedAs says how a dependency that can no longer succeed ended.
var endedAs = map[string]string{events.JobFailed: "failed", events.JobCancelled: "was cancelled", gone: "was deleted"}

// depHold says whether job j waits for its dependencies (wait) or can
// never be admitted because one can no longer meet its condition (failed),
// with the message; neither when every dependency is met.
func (g gate) depHold(j *events.Job, jobs map[string]*events.Job) (wait, failed bool, message string) {
	var waiting, broken []string
	for _, d := range j.DependsOn {
		status, known := "", false
		if dj := jobs[d.JobID]; dj != nil {
			status, known = dj.Status, true
		} else {
			status, known = g.finals[d.JobID]
		}
		final := known && (status == gone || events.JobFinal(status))
		switch {
		case d.Condition == events.DependencyFinished && final:
		case d.Condition != events.DependencyFinished && status == events.JobSucceeded:
		case d.Condition != events.DependencyFinished && final:
			broken = append(broken, d.JobID+" "+endedAs[status])
		case d.Condition == events.DependencyFinished:
			waiting = append(waiting, d.JobID+" to finish")
		default:
			waiting = append(waiting, d.JobID+" to succeed")
		}
	}
	switch {
	case len(broken) == 1:
		return false, true, "dependency can no longer succeed: " + broken[0]
	case len(broken) > 0:
		return false, true, fmt.Sprintf("%d dependencies can no longer succeed: %s", len(broken), listed(broken))
	case len(waiting) == 1:
		return true, false, "waiting for " + waiting[0]
	case len(waiting) > 0:
		return true, false, fmt.Sprintf("waiting for %d jobs: %s", len(waiting), listed(waiting))
	}
	return false, false, ""
}

// maxListed is how many dependencies a message names; a condition's message
// holds at most 1 KiB, which 100 of them would overrun mid-id.
const maxListed = 10

// listed joins the first maxListed of items and counts the rest.
func listed(items []string) string {
	if len(items) <= maxListed {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:maxListed], ", "), len(items)-maxListed)
}

// gated reports whether job j, not admitted and not asking out, is held
// back by its array's cancel, by its dependencies (it then waits or is
// cancelled) or by its array's max_parallel (it then goes to arrayJobs,
// for admitArrays).
func (p *plan) gated(j *events.Job, jobs map[string]*events.Job) bool {
	if j.ArrayID != "" && p.gate.cancelled[j.ArrayID] {
		// Its array is being cancelled: the API asks it to cancel next,
		// and it is not admitted meanwhile (nor is a wait written).
		p.pendingByQueue[j.QueueID]++
		return true
	}
	if len(j.DependsOn) > 0 {
		wait, failed, msg := p.gate.depHold(j, jobs)
		if failed {
			p.depCancels = append(p.depCancels, waiting{j.ID, reasonDependencyFailed, msg})
			return true
		}
		if wait {
			p.waits = append(p.waits, waiting{j.ID, reasonWaitingForDependency, msg})
			p.pendingByQueue[j.QueueID]++
			return true
		}
	}
	if j.ArrayID != "" && p.gate.maxParallel[j.ArrayID] > 0 {
		if p.arrayJobs == nil {
			p.arrayJobs = map[string][]*events.Job{}
		}
		p.arrayJobs[j.ArrayID] = append(p.arrayJobs[j.ArrayID], j)
		p.pendingByQueue[j.QueueID]++
		return true
	}
	return false
}

// jobRequest is what job j asks of admit: its workers and one controller.
func jobRequest(j *events.Job, ctlQueue string) admit.Request {
	return admit.Request{
		ID: j.ID, Kind: admit.KindJob, Priority: j.Priority, SubmittedAt: j.SubmittedAt,
		Claims: []admit.Claim{{Queue: j.QueueID, Count: j.WorkerInstances}, {Queue: ctlQueue, Count: 1}},
	}
}

// cancelForDependency cancels job id, never admitted, whose dependency can
// no longer meet its condition; leased says whether the ledger held its
// lease when the pass decided.
func (t *term) cancelForDependency(ctx context.Context, id, message string, leased bool) (*events.Job, error) {
	return t.update(ctx, id, func(j *events.Job, now time.Time) []string {
		if !notAdmitted(j) || leased {
			return nil
		}
		j.Status = events.JobCancelled
		j.FinishedAt = &now
		jobdoc.SetCondition(j, condAdmitted, "False", reasonDependencyFailed, message, now)
		jobdoc.SetCondition(j, jobdoc.CondCancelled, "True", reasonDependencyFailed, message, now)
		return []string{events.TypeJobCancelled}
	})
}
