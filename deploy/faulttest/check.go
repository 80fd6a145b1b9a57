package main

// The invariants, checked after the run from what was recorded: the
// accepted submissions (the clients' 2xx answers), the job events read from
// the JetStream stream from its start, in stream order, and the jobs as
// stored. Pure: no I/O, so check_test.go drives it with made-up histories.

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// jobView is what the checks need of a job, as an event carries it (the
// job as stored by the change it announces) or as the store returns it.
type jobView struct {
	ID              string            `json:"id"`
	QueueID         string            `json:"queue_id"`
	Status          string            `json:"status"`
	Version         int64             `json:"version"`
	WorkerInstances int               `json:"worker_instances"`
	Labels          map[string]string `json:"labels"`
	UpdatedAt       time.Time         `json:"updated_at"`
	Conditions      []struct {
		Type, Reason, Message string
	} `json:"conditions"`
}

// finishedReason is the reason and message of a job's Finished condition.
func (j jobView) finishedReason() (string, string) {
	for _, c := range j.Conditions {
		if c.Type == "Finished" {
			return c.Reason, c.Message
		}
	}
	return "", ""
}

// event is one job event of the stream.
type event struct {
	Seq  uint64    // stream sequence
	ID   string    // CloudEvents id (Nats-Msg-Id)
	Type string    // rm.job.*
	Time time.Time // ce-time: when the change was committed
	Job  jobView
}

// submission is one accepted submission: its Idempotency-Key and the job
// the 2xx answer named.
type submission struct {
	Key   string
	JobID string
	At    time.Time // when the 2xx came
}

// fault is one injected fault.
type fault struct {
	Name string
	At   time.Time // the kill, restart or disconnect
	Back time.Time // when the service was back (restarted, reconnected)
}

// Invariant names, the table's columns.
const (
	invOnce     = "exactly once"
	invFinal    = "final"
	invAdmit    = "admitted once"
	invLimit    = "limit"
	invEvents   = "events = changes"
	invRecovery = "recovery ≤ 10s"
)

var invariants = []string{invOnce, invFinal, invAdmit, invLimit, invEvents, invRecovery}

// finding is one violation: which invariant, when (to blame the fault
// whose window it falls in), and what exactly.
type finding struct {
	Invariant string
	At        time.Time
	Job       string
	Detail    string
}

// recovery is, for one fault, the time to the first admission and the
// first start (rm.job.running) committed after it; zero when none came.
type recovery struct {
	Admission, Start time.Duration
}

// report is the outcome of check.
type report struct {
	Findings   []finding
	Recovery   []recovery // by fault
	Events     int        // distinct job events
	Duplicates int        // events delivered more than once (same id)
	Jobs       int        // jobs of the run in the store
	Statuses   map[string]int
	// Failed counts the failed jobs by the reason of their Finished
	// condition, with one message for each reason.
	Failed map[string]failedReason
}

// failedReason is how many failed jobs have a reason, and one's message.
type failedReason struct {
	Jobs    int
	Example string
}

func final(status string) bool {
	return status == "succeeded" || status == "failed" || status == "cancelled"
}

// check runs every invariant. limits are the queues' worker limits by
// queue id; stored are the run's jobs in the store by id; keyLabel is the
// label that carries a job's Idempotency-Key.
func check(subs []submission, evs []event, stored map[string]jobView, limits map[string]int, faults []fault, keyLabel string, maxRecovery time.Duration) report {
	r := report{Jobs: len(stored), Statuses: map[string]int{}, Failed: map[string]failedReason{}}
	add := func(inv string, at time.Time, job, format string, args ...any) {
		r.Findings = append(r.Findings, finding{inv, at, job, fmt.Sprintf(format, args...)})
	}
	for _, j := range stored {
		r.Statuses[j.Status]++
		if j.Status == "failed" {
			reason, msg := j.finishedReason()
			f := r.Failed[reason]
			f.Jobs++
			if f.Example == "" {
				f.Example = j.ID + ": " + msg
			}
			r.Failed[reason] = f
		}
	}

	// Distinct events, in stream order.
	seen := map[string]bool{}
	var uniq []event
	for _, e := range evs {
		if seen[e.ID] {
			r.Duplicates++
			continue
		}
		seen[e.ID] = true
		uniq = append(uniq, e)
	}
	r.Events = len(uniq)
	byJob := map[string][]event{}
	for _, e := range uniq {
		byJob[e.Job.ID] = append(byJob[e.Job.ID], e)
	}

	// Every accepted submission exists exactly once and is final.
	byKey := map[string][]string{}
	for id, j := range stored {
		if k := j.Labels[keyLabel]; k != "" {
			byKey[k] = append(byKey[k], id)
		}
	}
	accepted := map[string]bool{}
	for _, s := range subs {
		accepted[s.Key] = true
		ids := byKey[s.Key]
		slices.Sort(ids)
		j, ok := stored[s.JobID]
		switch {
		case !ok:
			add(invOnce, s.At, s.JobID, "accepted (key %s) but not in the store; jobs with its key: %v", s.Key, ids)
		case len(ids) != 1:
			add(invOnce, s.At, s.JobID, "key %s: %d jobs in the store %v (answered %s)", s.Key, len(ids), ids, s.JobID)
		}
		if ok && !final(j.Status) {
			add(invFinal, s.At, s.JobID, "status %s at version %d", j.Status, j.Version)
		}
	}
	for k, ids := range byKey {
		if !accepted[k] {
			add(invOnce, stored[ids[0]].UpdatedAt, ids[0], "key %s was never accepted, yet the store holds %v", k, ids)
		}
	}

	// No job admitted twice.
	for id, es := range byJob {
		var adm []event
		for _, e := range es {
			if e.Type == "rm.job.admitted" {
				adm = append(adm, e)
			}
		}
		if len(adm) > 1 {
			add(invAdmit, adm[1].Time, id, "admitted %d times: %s", len(adm), describe(adm))
		}
	}

	// At no instant more workers admitted on a queue than its limit:
	// replay admissions and final statuses in stream order. A job's
	// admission that reaches the stream after its end (relayed late) holds
	// nothing: the job had released its workers by then.
	used := map[string]int{}
	holding := map[string]bool{}
	ended := map[string]bool{}
	over := map[string]bool{} // report a queue once per excursion
	for _, e := range uniq {
		q, w := e.Job.QueueID, e.Job.WorkerInstances
		switch {
		case e.Type == "rm.job.admitted" && !holding[e.Job.ID] && !ended[e.Job.ID]:
			holding[e.Job.ID] = true
			used[q] += w
		case final(e.Job.Status):
			ended[e.Job.ID] = true
			if holding[e.Job.ID] {
				delete(holding, e.Job.ID)
				used[q] -= w
			}
		}
		lim, limited := limits[q]
		if !limited {
			continue
		}
		if used[q] > lim && !over[q] {
			var holders []string
			for id := range holding {
				if stored[id].QueueID == q || jobQueue(byJob[id]) == q {
					holders = append(holders, id)
				}
			}
			sort.Strings(holders)
			add(invLimit, e.Time, e.Job.ID, "queue %s: %d workers admitted, limit %d, at stream seq %d (%s of %s); holding: %v",
				q, used[q], lim, e.Seq, e.Type, e.Job.ID, holders)
		}
		over[q] = used[q] > lim
	}

	// Every stored change has its event and no event lacks its change:
	// the versions announced are exactly 1..stored version, one job state
	// per version, and the last one is the job as stored.
	for id, j := range stored {
		es := byJob[id]
		states := map[int64]jobView{}
		for _, e := range es {
			v := e.Job.Version
			if prev, ok := states[v]; ok && (prev.Status != e.Job.Status || !prev.UpdatedAt.Equal(e.Job.UpdatedAt)) {
				add(invEvents, e.Time, id, "two changes announced as version %d: %s at %s and %s at %s (seq %d); stored version %d (%s); events: %s",
					v, prev.Status, prev.UpdatedAt.Format(time.RFC3339Nano), e.Job.Status, e.Job.UpdatedAt.Format(time.RFC3339Nano), e.Seq,
					j.Version, j.Status, describe(es))
			}
			states[v] = e.Job
			if v > j.Version {
				add(invEvents, e.Time, id, "event %s (seq %d) announces version %d (%s); the store holds version %d", e.Type, e.Seq, v, e.Job.Status, j.Version)
			}
		}
		var missing []int64
		for v := int64(1); v <= j.Version; v++ {
			if _, ok := states[v]; !ok {
				missing = append(missing, v)
			}
		}
		if len(missing) > 0 {
			add(invEvents, j.UpdatedAt, id, "stored version %d (%s); no event for versions %v; events: %s", j.Version, j.Status, missing, describe(es))
		} else if last := states[j.Version]; last.Status != j.Status || !last.UpdatedAt.Equal(j.UpdatedAt) {
			add(invEvents, j.UpdatedAt, id, "stored version %d is %s at %s, its event says %s at %s",
				j.Version, j.Status, j.UpdatedAt.Format(time.RFC3339Nano), last.Status, last.UpdatedAt.Format(time.RFC3339Nano))
		}
	}
	for id, es := range byJob {
		if _, ok := stored[id]; !ok && labelled(es, keyLabel) {
			add(invEvents, es[0].Time, id, "events for a job the store does not hold: %s", describe(es))
		}
	}

	// Recovery: the first admission (and start) committed after each fault.
	for _, f := range faults {
		var rec recovery
		for _, e := range uniq {
			if !e.Time.After(f.At) {
				continue
			}
			if rec.Admission == 0 && e.Type == "rm.job.admitted" {
				rec.Admission = e.Time.Sub(f.At)
			}
			if rec.Start == 0 && e.Type == "rm.job.running" {
				rec.Start = e.Time.Sub(f.At)
			}
		}
		switch {
		case rec.Admission == 0:
			add(invRecovery, f.At, "", "%s: no admission after it", f.Name)
		case rec.Admission > maxRecovery:
			add(invRecovery, f.At, "", "%s: first admission %v after it", f.Name, rec.Admission.Round(time.Millisecond))
		}
		r.Recovery = append(r.Recovery, rec)
	}
	return r
}

func jobQueue(es []event) string {
	if len(es) == 0 {
		return ""
	}
	return es[0].Job.QueueID
}

func labelled(es []event, key string) bool {
	return len(es) > 0 && es[0].Job.Labels[key] != ""
}

func describe(es []event) string {
	s := ""
	for i, e := range es {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("seq %d %s v%d %s", e.Seq, e.Type, e.Job.Version, e.Time.Format("15:04:05.000"))
	}
	return s
}

// blame is the index of the fault whose window holds t (from its start to
// the next fault's start), -1 before the first.
func blame(faults []fault, t time.Time) int {
	n := -1
	for i, f := range faults {
		if !t.Before(f.At) {
			n = i
		}
	}
	return n
}
