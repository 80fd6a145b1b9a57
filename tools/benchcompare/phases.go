package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// handoverPhases splits one of our hand-overs (last end stamp of the holder
// → first start stamp of the waiter) by the times the system recorded, so
// that the figure can be compared with the in-process BenchmarkHandOver,
// which times only the control plane (final write → admitted event):
//
//   - exit: the holder's last end stamp → the driver saw its last instance
//     end (instances' finished_at): the shell's exit, the local driver's
//     wrapper writing the exit file, the driver's wait.
//   - record: → the holder's final write (the time of its final event; its
//     finished_at is its last instance's end): the launcher's reconciliation
//     of the job (queued without the status batch once none of its instances
//     runs, launch.Service.changed; reading the job) up to its final write.
//   - admit: → the waiter's admitted_at: the final write's event reaching
//     the scheduler, the release, the admission pass and its write.
//   - spawn: → the waiter's first instance started_at: the admitted event
//     reaching the launcher, its read of the job, the first process started.
//   - script: → the first start stamp: the instance's wrapper and shell
//     starting and running `date`.
//
// The system's times are milliseconds (the job record truncates them), so a
// phase is ±1 ms.
type handoverPhases struct {
	exit, record, admit, spawn, script time.Duration
}

type phaseJob struct {
	AdmittedAt *time.Time `json:"admitted_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Instances  []struct {
		StartedAt  *time.Time `json:"started_at"`
		FinishedAt *time.Time `json:"finished_at"`
	} `json:"instances"`
}

// phasesOf reads the holder and the waiter of round i and splits their
// hand-over; lastEnd and firstStart are the round's stamps.
func (a *allInOne) phasesOf(ctx context.Context, holder, waiter string, lastEnd, firstStart time.Time) (handoverPhases, error) {
	var h, w phaseJob
	if err := a.call(ctx, http.MethodGet, "/jobs/"+holder, nil, &h, http.StatusOK); err != nil {
		return handoverPhases{}, err
	}
	if err := a.call(ctx, http.MethodGet, "/jobs/"+waiter, nil, &w, http.StatusOK); err != nil {
		return handoverPhases{}, err
	}
	var lastExit, firstSpawn time.Time
	for _, in := range h.Instances {
		if in.FinishedAt != nil && in.FinishedAt.After(lastExit) {
			lastExit = *in.FinishedAt
		}
	}
	for _, in := range w.Instances {
		if in.StartedAt != nil && (firstSpawn.IsZero() || in.StartedAt.Before(firstSpawn)) {
			firstSpawn = *in.StartedAt
		}
	}
	if lastExit.IsZero() || firstSpawn.IsZero() || h.FinishedAt == nil || w.AdmittedAt == nil {
		return handoverPhases{}, fmt.Errorf("jobs %s and %s lack the times of a hand-over", holder, waiter)
	}
	recorded, err := a.finalEventAt(ctx, holder)
	if err != nil {
		return handoverPhases{}, err
	}
	return handoverPhases{
		exit:   lastExit.Sub(lastEnd),
		record: recorded.Sub(lastExit),
		admit:  w.AdmittedAt.Sub(recorded),
		spawn:  firstSpawn.Sub(*w.AdmittedAt),
		script: firstStart.Sub(firstSpawn),
	}, nil
}

// finalEventAt is when the job's final status was written: the time of its
// final event (GET /jobs/{id}/events), which the writer stamps as it
// commits. Its finished_at is when its instances ended, as the driver saw
// them, which is earlier by the launcher's reconciliation.
func (a *allInOne) finalEventAt(ctx context.Context, id string) (time.Time, error) {
	var page struct {
		Items []struct {
			Type string    `json:"type"`
			Time time.Time `json:"time"`
		} `json:"items"`
		NextCursor string `json:"next_cursor"`
	}
	path := "/jobs/" + id + "/events?limit=1000"
	for {
		if err := a.call(ctx, http.MethodGet, path, nil, &page, http.StatusOK); err != nil {
			return time.Time{}, err
		}
		for _, e := range page.Items {
			switch e.Type {
			case "rm.job.succeeded", "rm.job.failed", "rm.job.cancelled":
				return e.Time, nil
			}
		}
		if page.NextCursor == "" {
			return time.Time{}, fmt.Errorf("job %s: no final event among its events", id)
		}
		path = "/jobs/" + id + "/events?limit=1000&cursor=" + url.QueryEscape(page.NextCursor)
		page.Items, page.NextCursor = nil, ""
	}
}

// phaseFields names the phases in their order, each with how to read it.
var phaseFields = []struct {
	name string
	get  func(handoverPhases) time.Duration
}{
	{"exit", func(p handoverPhases) time.Duration { return p.exit }},
	{"record", func(p handoverPhases) time.Duration { return p.record }},
	{"admit", func(p handoverPhases) time.Duration { return p.admit }},
	{"spawn", func(p handoverPhases) time.Duration { return p.spawn }},
	{"script", func(p handoverPhases) time.Duration { return p.script }},
}

// printPhases writes the median and the maximum of each phase, then the
// slowest rounds with their phases.
func printPhases(w io.Writer, ps []handoverPhases) {
	if len(ps) == 0 {
		return
	}
	fmt.Fprintf(w, "\navxrm hand-over by phase, %d rounds (median / max, ms):", len(ps))
	for _, f := range phaseFields {
		d := make([]time.Duration, len(ps))
		for i, p := range ps {
			d[i] = f.get(p)
		}
		slices.Sort(d)
		fmt.Fprintf(w, " %s %.1f / %.1f;", f.name, millis(d[len(d)/2]), millis(d[len(d)-1]))
	}
	fmt.Fprintln(w)
	// The tail (p99) is a few rounds; their phases show where it lay,
	// which the maxima above, each from a different round, do not.
	slow := slices.Clone(ps)
	slices.SortStableFunc(slow, func(a, b handoverPhases) int { return cmp.Compare(b.total(), a.total()) })
	fmt.Fprint(w, "slowest rounds (total: exit, record, admit, spawn, script, ms):")
	for _, p := range slow[:min(3, len(slow))] {
		fmt.Fprintf(w, " %.1f:", millis(p.total()))
		sep := " "
		for _, f := range phaseFields {
			fmt.Fprintf(w, "%s%.1f", sep, millis(f.get(p)))
			sep = ", "
		}
		fmt.Fprint(w, ";")
	}
	fmt.Fprintln(w)
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// total is the round's hand-over as its phases sum it: the end stamp to
// the start stamp.
func (p handoverPhases) total() time.Duration {
	var t time.Duration
	for _, f := range phaseFields {
		t += f.get(p)
	}
	return t
}
