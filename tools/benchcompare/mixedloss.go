package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"
)

// mixedJob is what the split of the mixed workload needs of one job: its
// times as the system recorded them (finished: its final write, which gives
// its workers back), and those of its worker instances (the controller runs
// on another queue, outside the limit).
type mixedJob struct {
	workers                        int
	submitted, admitted, finished  time.Time
	firstStart, lastStart, lastEnd time.Time
}

// mixedLoss splits the limit × makespan of the mixed workload, as fractions
// of it that add up to 1 (up to the milliseconds the job record keeps):
//
//   - work: the workers' hold (the utilization bench-compare reports);
//   - starting: workers held from the job's admission until its last worker
//     instance started (the driver's starts, one after another);
//   - running: held while the instances ran past the hold (the instance's
//     own processes starting and ending around it);
//   - ending: held from the last instance's end to the job's final write
//     (its final event; its finished_at is its last instance's end);
//   - fitIdle: free while a waiting job would have fit (the hand-over: the
//     final's event, the release, the admission; and any job the starvation
//     guard holds back);
//   - packIdle: free while jobs waited and none fit;
//   - emptyIdle: free while none waited (before the first admission and
//     the tail, when the last jobs run and nothing is left to admit).
type mixedLoss struct {
	work, starting, running, ending float64
	fitIdle, packIdle, emptyIdle    float64
}

// mixedRun is one run of our mixed workload: its split and its jobs.
type mixedRun struct {
	loss mixedLoss
	jobs []mixedJob
}

// splitMixed computes the split over [start, end] for a limit and a hold.
func splitMixed(jobs []mixedJob, limit int, hold time.Duration, start, end time.Time) mixedLoss {
	var l mixedLoss
	capacity := float64(limit) * end.Sub(start).Seconds()
	if capacity <= 0 {
		return l
	}
	share := func(workers int, d time.Duration) float64 { return float64(workers) * d.Seconds() / capacity }
	for _, j := range jobs {
		l.work += share(j.workers, hold)
		l.starting += share(j.workers, j.lastStart.Sub(j.admitted))
		l.running += share(j.workers, j.lastEnd.Sub(j.lastStart)-hold)
		l.ending += share(j.workers, j.finished.Sub(j.lastEnd))
	}
	// Sweep the moments in [start, end] where the use or the waiting jobs
	// change.
	at := []time.Time{start, end}
	for _, j := range jobs {
		for _, t := range []time.Time{j.submitted, j.admitted, j.finished} {
			if t.After(start) && t.Before(end) {
				at = append(at, t)
			}
		}
	}
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	at = slices.Compact(at)
	for i := 0; i+1 < len(at); i++ {
		t0, t1 := at[i], at[i+1]
		used, smallest := 0, 0
		for _, j := range jobs {
			switch {
			case !t0.Before(j.admitted) && t0.Before(j.finished):
				used += j.workers
			case !t0.Before(j.submitted) && t0.Before(j.admitted):
				if smallest == 0 || j.workers < smallest {
					smallest = j.workers
				}
			}
		}
		free := limit - used
		if free <= 0 {
			continue
		}
		d := share(free, t1.Sub(t0))
		switch {
		case smallest == 0:
			l.emptyIdle += d
		case smallest <= free:
			l.fitIdle += d
		default:
			l.packIdle += d
		}
	}
	return l
}

// readMixed reads the jobs of the mixed workload back from the API.
func (a *allInOne) readMixed(ctx context.Context, ids []string) ([]mixedJob, error) {
	jobs := make([]mixedJob, 0, len(ids))
	for _, id := range ids {
		var j struct {
			Workers     int        `json:"worker_instances"`
			SubmittedAt *time.Time `json:"submitted_at"`
			AdmittedAt  *time.Time `json:"admitted_at"`
			FinishedAt  *time.Time `json:"finished_at"`
			Instances   []struct {
				Role       string     `json:"role"`
				StartedAt  *time.Time `json:"started_at"`
				FinishedAt *time.Time `json:"finished_at"`
			} `json:"instances"`
		}
		if err := a.call(ctx, http.MethodGet, "/jobs/"+id, nil, &j, http.StatusOK); err != nil {
			return nil, err
		}
		if j.SubmittedAt == nil || j.AdmittedAt == nil || j.FinishedAt == nil {
			return nil, fmt.Errorf("job %s lacks its submitted, admitted or finished time", id)
		}
		recorded, err := a.finalEventAt(ctx, id)
		if err != nil {
			return nil, err
		}
		m := mixedJob{workers: j.Workers, submitted: *j.SubmittedAt, admitted: *j.AdmittedAt, finished: recorded}
		n := 0
		for _, in := range j.Instances {
			if in.Role != "worker" {
				continue
			}
			if in.StartedAt == nil || in.FinishedAt == nil {
				return nil, fmt.Errorf("job %s: a worker instance lacks its start or end time", id)
			}
			if n == 0 || in.StartedAt.Before(m.firstStart) {
				m.firstStart = *in.StartedAt
			}
			if in.StartedAt.After(m.lastStart) {
				m.lastStart = *in.StartedAt
			}
			if in.FinishedAt.After(m.lastEnd) {
				m.lastEnd = *in.FinishedAt
			}
			n++
		}
		if n != j.Workers {
			return nil, fmt.Errorf("job %s: %d worker instances listed, want %d", id, n, j.Workers)
		}
		jobs = append(jobs, m)
	}
	return jobs, nil
}

// printMixedLoss writes where the limit × makespan of our mixed workload
// went, and how long the jobs' workers took to start.
func printMixedLoss(w io.Writer, label string, r mixedRun) {
	l, jobs := r.loss, r.jobs
	if len(jobs) == 0 {
		return
	}
	pct := func(v float64) float64 { return 100 * v }
	fmt.Fprintf(w, "\navxrm mixed workload%s, share of limit × makespan: work %.1f%%; held while the workers started %.1f%%, "+
		"while they ran past the hold %.1f%%, after they ended %.1f%%; free while a waiting job fit %.1f%%, "+
		"while none fit %.1f%%, while none waited %.1f%%\n",
		label, pct(l.work), pct(l.starting), pct(l.running), pct(l.ending), pct(l.fitIdle), pct(l.packIdle), pct(l.emptyIdle))
	first := make([]time.Duration, len(jobs))
	last := make([]time.Duration, len(jobs))
	final := make([]time.Duration, len(jobs))
	for i, j := range jobs {
		first[i], last[i], final[i] = j.firstStart.Sub(j.admitted), j.lastStart.Sub(j.admitted), j.finished.Sub(j.lastEnd)
	}
	q := func(d []time.Duration, p float64) float64 { return millis(percentile(d, p)) }
	fmt.Fprintf(w, "admitted → first worker started p50 %.0f / p90 %.0f ms; → last worker started p50 %.0f / p90 %.0f ms; "+
		"last worker ended → job final p50 %.0f / p90 %.0f ms\n",
		q(first, 0.5), q(first, 0.9), q(last, 0.5), q(last, 0.9), q(final, 0.5), q(final, 0.9))
}
