package httpapi

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/pkg/events/outbox"
)

// Cancelling an array's jobs after the answer.
//
// POST /job-arrays/{id}/cancel records cancel_requested on the array and
// answers 202; then each of its jobs that is not final is asked to cancel
// as POST /jobs/{id}/cancel would (cancel_requested and its
// rm.job.cancel_requested event), in the background. On the embedded store
// that is one conditional write per job, which FerretDB commits one by one
// (2.5 ms a job: 25 s for 10,000 on a quiet machine), too long for a
// request to wait. The jobs are found after the array's write, so a job
// the scheduler admits meanwhile is still asked (the launcher stops it). If
// the API stops before its jobs are all asked, SweepArrayCancels, which
// the API runs at start and every arrayCancelSweepEvery, finishes: the
// array's cancel_requested is the durable record of what is to be done.

const (
	// arrayCancelSweepEvery is how often SweepArrayCancels looks for
	// cancelled arrays with jobs not yet asked.
	arrayCancelSweepEvery = 30 * time.Second
	// arrayCancelTimeout bounds one array's cancel.
	arrayCancelTimeout = 10 * time.Minute
)

// arrayCancels runs at most one cancel per array at a time in this process.
type arrayCancels struct {
	mu sync.Mutex
	// running holds the arrays whose cancel runs, by id; true: asked again
	// meanwhile, so it runs once more after.
	running map[string]bool
}

// cancelArrayJobsLater asks the jobs of array id to cancel in the
// background; a second call while that runs makes it run once more after.
func (s *Server) cancelArrayJobsLater(id string) {
	c := &s.arrayCancels
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, running := c.running[id]; running {
		c.running[id] = true
		return
	}
	if c.running == nil {
		c.running = map[string]bool{}
	}
	c.running[id] = false
	go func() {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), arrayCancelTimeout)
			n, err := s.cancelArrayJobs(ctx, id)
			cancel()
			if err != nil {
				s.opts.Logger.Warn("asking the jobs of a cancelled array to cancel; the sweep tries again", "array", id, "err", err)
			} else if n > 0 {
				s.opts.Logger.Info("jobs of a cancelled array asked to cancel", "array", id, "jobs", n)
			}
			c.mu.Lock()
			again := c.running[id]
			if !again {
				delete(c.running, id)
			} else {
				c.running[id] = false
			}
			c.mu.Unlock()
			if !again {
				return
			}
		}
	}()
}

// cancelArrayJobs asks every job of array id that is not final and not yet
// asked to cancel, and returns how many it asked. The jobs that hold
// capacity (admitted, running: at most max_parallel) are asked first, so
// that they stop within moments rather than after every waiting job was
// asked; then all the others, the jobs admitted meanwhile too.
func (s *Server) cancelArrayJobs(ctx context.Context, id string) (int, error) {
	ask := func(j *events.Job, _ time.Time) ([]string, error) {
		if events.JobFinal(j.Status) || j.CancelRequested {
			return nil, nil
		}
		j.CancelRequested = true
		return []string{events.TypeJobCancelRequested}, nil
	}
	n, err := s.jobs.UpdateMatching(ctx, jobdoc.ArrayJobs(id, events.JobAdmitted, events.JobRunning), ask)
	if err != nil {
		return n, fmt.Errorf("cancel the running jobs of array %s: %w", id, err)
	}
	m, err := s.jobs.UpdateMatching(ctx, jobdoc.ArrayJobs(id, events.JobActiveStatuses()...), ask)
	if err != nil {
		return n + m, fmt.Errorf("cancel the jobs of array %s: %w", id, err)
	}
	return n + m, nil
}

// SweepArrayCancels finishes the cancels of arrays whose jobs were not all
// asked (the API stopped meanwhile), now and every arrayCancelSweepEvery,
// until ctx ends. Each cancelled array costs one read of its active jobs by
// index; one whose jobs have all ended costs an empty read.
func (s *Server) SweepArrayCancels(ctx context.Context) {
	t := time.NewTicker(arrayCancelSweepEvery)
	defer t.Stop()
	for {
		if err := s.sweepArrayCancels(ctx); err != nil && ctx.Err() == nil {
			s.opts.Logger.Warn("sweep the cancelled arrays", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweepArrayCancels starts the cancel of every cancelled array.
func (s *Server) sweepArrayCancels(ctx context.Context) error {
	arrays, err := s.cancelledArrays(ctx)
	if err != nil {
		return err
	}
	for _, id := range arrays {
		s.cancelArrayJobsLater(id)
	}
	return nil
}

// cancelledArrays returns the ids of the cancelled arrays: on the embedded
// store from a partial index of them (the Lookup's), as FerretDB answers
// the find by reading every array.
func (s *Server) cancelledArrays(ctx context.Context) ([]string, error) {
	r := &indexed.Reader{Coll: s.opts.Store.DB.Collection(events.JobArraysCollection), Lookup: s.opts.Lookup}
	ids, err := r.IDs(ctx, indexed.Filter{All: []indexed.Cond{outbox.NotDeletedCond()},
		Any: []indexed.Clause{{{Path: "cancel_requested", In: []any{true}, Partial: []any{true}}}}})
	if err != nil {
		return nil, fmt.Errorf("find cancelled arrays: %w", err)
	}
	return ids, nil
}
