//go:build estimate

// The start estimate's accuracy over 100 jobs takes minutes and its figure
// depends on the machine's load, so it is a measurement, not a check of
// make test: `make bench-estimate` runs it (docs/benchmarks.md).

package up_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
)

// 100 random jobs (1 to 4 workers, running 1 or 2 s as their
// max_run_seconds says, priority 0 or 1) on a queue limited to 10 of the
// simulated driver, submitted behind a job that holds the queue for 8 s:
// the estimates read once all are submitted are compared with the
// admissions. It reports the median absolute error (and the 90th
// percentile); docs/benchmarks.md has the figure. No timed assertion.
func TestStartEstimateAccuracy(t *testing.T) {
	sys := startSystemIn(t, t.TempDir())
	c := newClient(t, sys.HTTPAddr)
	c.simulated()
	c.createQueue("Mixed", 10)
	// A queue in use: ten jobs before give the lags (admission to start,
	// end to release) the estimates count on.
	var warm []string
	for range 10 {
		warm = append(warm, c.submitTimed("Mixed", 1, 1, 0).ID)
	}
	for _, id := range warm {
		c.waitJobFor(id, "finished", time.Minute, isFinal)
	}
	// A job holding the whole queue for 8 s, so that all 100 wait when
	// their estimates are read.
	blocker := c.submitTimed("Mixed", 10, 8, 0)
	c.waitJobFor(blocker.ID, "running", 30*time.Second, func(j events.Job) bool { return j.StartedAt != nil })
	rng := rand.New(rand.NewPCG(13, 13))
	var ids []string
	for range 100 {
		ids = append(ids, c.submitTimed("Mixed", 1+rng.IntN(4), 1+rng.IntN(2), rng.IntN(2)).ID)
	}
	// The estimates once the scheduler's snapshot covers every pending job.
	estimates := map[string]time.Time{}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var page pendingPage
		c.must(http.MethodGet, "/api/resources/v1/queues/Mixed/pending?limit=1000", nil, http.StatusOK, &page)
		complete := true
		clear(estimates)
		for _, e := range page.Items {
			if e.EstimatedStartAt == nil {
				complete = false
			} else {
				estimates[e.ID] = *e.EstimatedStartAt
			}
		}
		if complete || time.Now().After(deadline) {
			break
		}
	}
	// Meanwhile, the last estimate each job had while it waited, as the
	// estimates are refreshed with what the queue does.
	var mu sync.Mutex
	last := map[string]time.Time{}
	stop := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			status, raw := c.do(http.MethodGet, "/api/resources/v1/queues/Mixed/pending?limit=1000", nil)
			var page pendingPage
			if status != http.StatusOK || json.Unmarshal(raw, &page) != nil {
				continue
			}
			mu.Lock()
			for _, e := range page.Items {
				if e.EstimatedStartAt != nil {
					last[e.ID] = *e.EstimatedStartAt
				}
			}
			mu.Unlock()
		}
	}()
	var errs, rel []time.Duration             // rel: error per second waited, in ms
	var late, startLag, overrun time.Duration // sums, to say where the error comes from
	for _, id := range ids {
		j := c.waitJobFor(id, "finished", 3*time.Minute, isFinal)
		if est, ok := estimates[id]; ok && j.AdmittedAt != nil {
			errs = append(errs, j.AdmittedAt.Sub(est).Abs())
			if wait := j.AdmittedAt.Sub(j.SubmittedAt); wait > 0 {
				rel = append(rel, time.Duration(float64(j.AdmittedAt.Sub(est).Abs())/wait.Seconds()))
			}
			late += j.AdmittedAt.Sub(est)
		}
		if j.StartedAt != nil && j.FinishedAt != nil && j.AdmittedAt != nil {
			startLag += j.StartedAt.Sub(*j.AdmittedAt)
			overrun += j.FinishedAt.Sub(*j.StartedAt) - time.Duration(*j.MaxRunSeconds)*time.Second
		}
	}
	if len(errs) > 0 {
		t.Logf("mean signed error (admitted - estimated) %s; per job: admitted→started %s, ran beyond max_run_seconds %s",
			late/time.Duration(len(errs)), startLag/100, overrun/100)
	}
	close(stop)
	<-polled
	var lastErrs []time.Duration
	for _, id := range ids {
		if est, ok := last[id]; ok {
			if j := c.job(id); j.AdmittedAt != nil {
				lastErrs = append(lastErrs, j.AdmittedAt.Sub(est).Abs())
			}
		}
	}
	slices.Sort(lastErrs)
	if len(lastErrs) > 0 {
		fmt.Printf("last estimate seen while pending (polled every 0.5 s), %d jobs: median absolute error %s, p90 %s\n",
			len(lastErrs), lastErrs[len(lastErrs)/2].Round(time.Millisecond), lastErrs[len(lastErrs)*9/10].Round(time.Millisecond))
	}
	if len(errs) < 50 {
		t.Fatalf("only %d of 100 jobs had an estimate while pending", len(errs))
	}
	slices.Sort(errs)
	median, p90 := errs[len(errs)/2], errs[len(errs)*9/10]
	slices.Sort(rel)
	fmt.Printf("start estimate over %d pending jobs of 100: median absolute error %s, p90 %s, max %s; median error relative to the wait %.0f%%\n",
		len(errs), median.Round(time.Millisecond), p90.Round(time.Millisecond), errs[len(errs)-1].Round(time.Millisecond),
		float64(rel[len(rel)/2])/float64(time.Second)*100)
	t.Logf("median absolute error %s, p90 %s over %d jobs", median, p90, len(errs))
}
