package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// history builds a run by hand: one queue q limited to 4, jobs of 2 or 3
// workers, each submitted, admitted, running and succeeded, with the store
// holding the last version.
type history struct {
	t0     time.Time
	seq    uint64
	evs    []event
	stored map[string]jobView
	subs   []submission
}

func newHistory() *history {
	return &history{t0: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC), stored: map[string]jobView{}}
}

func (h *history) at(ms int) time.Time { return h.t0.Add(time.Duration(ms) * time.Millisecond) }

// emit appends an event announcing job id's next version with status.
func (h *history) emit(id, typ, status string, workers, ms int) {
	j := h.stored[id]
	j.ID, j.QueueID, j.WorkerInstances, j.Status = id, "q", workers, status
	j.Version++
	j.UpdatedAt = h.at(ms)
	j.Labels = map[string]string{keyLabel: "k-" + id}
	h.stored[id] = j
	h.seq++
	h.evs = append(h.evs, event{Seq: h.seq, ID: "ev-" + id + "-" + typ + "-" + j.UpdatedAt.Format("150405.000"), Type: typ, Time: j.UpdatedAt, Job: j})
}

func (h *history) job(id string, workers, admitMs, endMs int) {
	h.emit(id, "rm.job.submitted", "submitted", workers, admitMs-10)
	h.subs = append(h.subs, submission{Key: "k-" + id, JobID: id, At: h.at(admitMs - 10)})
	h.emit(id, "rm.job.admitted", "admitted", workers, admitMs)
	h.emit(id, "rm.job.running", "running", workers, admitMs+5)
	h.emit(id, "rm.job.succeeded", "succeeded", workers, endMs)
}

func (h *history) check(faults ...fault) report {
	return check(h.subs, h.evs, h.stored, map[string]int{"q": 4}, faults, keyLabel, 10*time.Second)
}

func findings(r report, inv string) []finding {
	var out []finding
	for _, f := range r.Findings {
		if f.Invariant == inv {
			out = append(out, f)
		}
	}
	return out
}

func TestCheckPassesAGoodHistory(t *testing.T) {
	h := newHistory()
	h.job("a", 2, 100, 500)
	h.job("b", 2, 110, 520)
	h.job("c", 3, 600, 900) // after a's and b's end: 3 ≤ 4
	h.evs = append(h.evs, h.evs[2])
	r := h.check(fault{Name: "kill", At: h.at(550)})
	if len(r.Findings) != 0 {
		t.Fatalf("findings: %+v", r.Findings)
	}
	if r.Duplicates != 1 || r.Events != 12 {
		t.Errorf("events %d, duplicates %d", r.Events, r.Duplicates)
	}
	if r.Recovery[0].Admission != 50*time.Millisecond || r.Recovery[0].Start != 55*time.Millisecond {
		t.Errorf("recovery %+v", r.Recovery[0])
	}
}

// An admission relayed late, after the job's end, must not count the job
// as holding its workers from then on: c fits once a has ended.
func TestLimitReplayIgnoresAnAdmissionAfterTheEnd(t *testing.T) {
	h := newHistory()
	h.emit("a", "rm.job.submitted", "submitted", 2, 90)
	h.subs = append(h.subs, submission{Key: "k-a", JobID: "a", At: h.at(90)})
	admitted := len(h.evs)
	h.emit("a", "rm.job.admitted", "admitted", 2, 100)
	h.emit("a", "rm.job.running", "running", 2, 105)
	h.emit("a", "rm.job.succeeded", "succeeded", 2, 500)
	late := h.evs[admitted] // its publication failed; the relay sent it after the end
	h.evs = append(h.evs[:admitted], h.evs[admitted+1:]...)
	late.Seq = h.seq + 1
	h.seq++
	h.evs = append(h.evs, late)
	h.job("c", 3, 600, 900) // 3 ≤ 4 once a has ended
	if got := findings(h.check(), invLimit); len(got) != 0 {
		t.Errorf("limit findings for a late admission: %+v", got)
	}
}

func TestCheckFindsEachViolation(t *testing.T) {
	for _, tc := range []struct {
		name, inv, want string
		mutate          func(h *history)
	}{
		{"over the limit", invLimit, "5 workers admitted, limit 4", func(h *history) {
			h.emit("a", "rm.job.admitted", "admitted", 2, 100)
			h.emit("b", "rm.job.admitted", "admitted", 3, 200) // a still holds 2
			h.emit("a", "rm.job.succeeded", "succeeded", 2, 500)
		}},
		{"admitted twice", invAdmit, "admitted 2 times", func(h *history) {
			h.job("a", 2, 100, 500)
			h.emit("a", "rm.job.admitted", "admitted", 2, 700)
			h.emit("a", "rm.job.succeeded", "succeeded", 2, 800)
		}},
		{"not final", invFinal, "status running", func(h *history) {
			h.job("a", 2, 100, 500)
			h.evs = h.evs[:len(h.evs)-1]
			j := h.stored["a"]
			j.Version, j.Status, j.UpdatedAt = 3, "running", h.at(105)
			h.stored["a"] = j
		}},
		{"accepted, not stored", invOnce, "not in the store", func(h *history) {
			h.job("a", 2, 100, 500)
			h.subs = append(h.subs, submission{Key: "k-x", JobID: "x", At: h.at(50)})
		}},
		{"two jobs for one key", invOnce, "2 jobs in the store", func(h *history) {
			h.job("a", 2, 100, 500)
			h.job("b", 2, 600, 900)
			j := h.stored["b"]
			j.Labels = map[string]string{keyLabel: "k-a"}
			h.stored["b"] = j
			h.subs = h.subs[:1]
		}},
		{"stored change without its event", invEvents, "no event for versions [4]", func(h *history) {
			h.job("a", 2, 100, 500)
			h.evs = h.evs[:len(h.evs)-1]
		}},
		{"event without its change", invEvents, "the store holds version 3", func(h *history) {
			h.job("a", 2, 100, 500)
			j := h.stored["a"]
			j.Version, j.Status, j.UpdatedAt = 3, "running", h.at(105)
			h.stored["a"] = j
			h.subs[0].JobID = "a"
		}},
		{"two changes one version", invEvents, "two changes announced as version 2", func(h *history) {
			h.job("a", 2, 100, 500)
			e := h.evs[1]
			e.ID, e.Type, e.Job.Status, e.Job.UpdatedAt = "ev-other", "rm.job.cancelled", "cancelled", h.at(101)
			h.evs = append(h.evs, e)
		}},
		{"slow recovery", invRecovery, "first admission 11.9s after it", func(h *history) {
			h.job("a", 2, 100, 500)
			h.job("b", 2, 12000, 12500)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHistory()
			tc.mutate(h)
			r := h.check(fault{Name: "kill", At: h.at(100)})
			got := findings(r, tc.inv)
			if len(got) == 0 || !strings.Contains(got[0].Detail, tc.want) {
				t.Fatalf("%s: want a finding with %q, got %+v", tc.inv, tc.want, r.Findings)
			}
		})
	}
}

func TestBlameNamesTheFaultWindow(t *testing.T) {
	t0 := time.Now()
	fs := []fault{{At: t0}, {At: t0.Add(time.Minute)}}
	for _, c := range []struct {
		d    time.Duration
		want int
	}{{-time.Second, -1}, {0, 0}, {30 * time.Second, 0}, {2 * time.Minute, 1}} {
		if got := blame(fs, t0.Add(c.d)); got != c.want {
			t.Errorf("blame(+%v) = %d, want %d", c.d, got, c.want)
		}
	}
}

// TestReportCountsFailuresByReason: the failed jobs are counted by the
// reason of their Finished condition, so a run's failures are not left
// unexamined.
func TestReportCountsFailuresByReason(t *testing.T) {
	h := newHistory()
	for i, reason := range []string{"InstanceLost", "InstanceLost", "DeadlineExceeded"} {
		id := fmt.Sprintf("f%d", i)
		h.job(id, 1, 100+1000*i, 500+1000*i)
		j := h.stored[id]
		j.Status = "failed"
		j.Conditions = append(j.Conditions, struct{ Type, Reason, Message string }{"Finished", reason, "why " + id})
		h.stored[id] = j
	}
	r := h.check()
	if got := r.Failed["InstanceLost"]; got.Jobs != 2 || !strings.HasPrefix(got.Example, "f") {
		t.Errorf("InstanceLost: %+v, want 2 jobs and an example", got)
	}
	if got := r.Failed["DeadlineExceeded"]; got.Jobs != 1 || got.Example != "f2: why f2" {
		t.Errorf("DeadlineExceeded: %+v", got)
	}
}
