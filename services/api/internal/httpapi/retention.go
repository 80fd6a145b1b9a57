package httpapi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/avxrm/rm/services/api/internal/store"
)

// Deleting the jobs that ended longer ago than the retention.
//
// With Options.JobRetention (RM_JOB_RETENTION) set, ExpireJobs deletes each
// job that ended (succeeded, failed, cancelled) more than the retention ago
// as DELETE /jobs/{id} does (deleteJob: its artifacts and exports, then the
// record with cleanup requested; the launcher removes its instances' files
// and logs on rm.job.deleted). A pass deletes at most expireBatch jobs, so
// that it holds the store no longer than that many DELETEs would; one that
// filled its batch is followed by the next after expireBusyPause rather
// than a period, so that the backlog (the whole history, when the setting
// is first turned on) goes in a few minutes without starving requests.
//
// Finding them reads about the expired jobs only. A job's id begins with
// the time it was submitted (events.NewID; an array's jobs, the array's),
// and no job ends before it is submitted, so the pass walks the ended jobs
// in _id order (on the embedded store by the index of their status and
// _id, reading no job) and stops at events.IDAt(cutoff): every job after
// it was submitted after the cutoff. Of those before it only the jobs that
// ran across the cutoff are read and left. finished_at decides (a clock
// behind on another host only delays a deletion), or for an ended job that
// lacks one (a record of an older version, or written by hand) its last
// write, updated_at, which is no earlier than its end.
//
// Several API replicas each run it, with no election: a job another
// replica deleted meanwhile is not found, which is not an error, and a pass
// with nothing expired costs one read of the index.
const (
	// expireBatch bounds the jobs one pass deletes.
	expireBatch = 200
	// expireBusyPause separates the passes while each fills its batch.
	expireBusyPause = 5 * time.Second
	// expireIDsPage is how many _ids of ended jobs a read of the index takes.
	expireIDsPage = 1000
)

// expireEvery is the period of the passes of retention r: a tenth of it,
// at least a minute and at most ten, so that a job outlives its retention
// by little, and a short retention does not keep the store busy.
func expireEvery(r time.Duration) time.Duration {
	return min(max(r/10, time.Minute), 10*time.Minute)
}

// ExpireJobs deletes the jobs that ended longer ago than
// Options.JobRetention, now and periodically, until ctx ends; without a
// retention it returns at once. Serve runs it.
func (s *Server) ExpireJobs(ctx context.Context) {
	r := s.opts.JobRetention
	if r <= 0 {
		return
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := s.expireJobs(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.opts.Logger.Warn("deleting the jobs past their retention; the next pass tries again", "deleted", n, "err", err)
		case n > 0:
			s.opts.Logger.Info("deleted the jobs past their retention", "jobs", n, "retention", r.String())
		}
		if n >= s.expireBatchSize() {
			t.Reset(expireBusyPause)
		} else {
			t.Reset(expireEvery(r))
		}
	}
}

// expireBatchSize is expireBatch, or the tests' own.
func (s *Server) expireBatchSize() int {
	if s.expireBatch > 0 {
		return s.expireBatch
	}
	return expireBatch
}

// expireJobs is one pass: it deletes at most a batch of the jobs that
// ended before now - Options.JobRetention, the oldest first, and returns
// how many it deleted. One that fails does not stop the others (the next
// pass tries it again).
func (s *Server) expireJobs(ctx context.Context) (int, error) {
	if s.opts.JobRetention <= 0 {
		return 0, nil
	}
	ids, err := s.expiredJobs(ctx, s.opts.Now().Add(-s.opts.JobRetention), s.expireBatchSize())
	if err != nil {
		return 0, err
	}
	n, failed := 0, 0
	var first error
	for _, id := range ids {
		_, err := s.deleteJob(ctx, &jobIfMatch{ID: id})
		switch {
		case errors.Is(err, problem.ErrNotFound): // another replica's pass, or a DELETE
		case err != nil:
			if ctx.Err() != nil {
				return n, ctx.Err()
			}
			if failed++; first == nil {
				first = err
			}
		default:
			n++
			s.jobsExpired.Inc()
		}
	}
	if first != nil {
		return n, fmt.Errorf("%d of %d jobs past their retention not deleted: %w", failed, len(ids), first)
	}
	return n, nil
}

// expiredJobs returns the _ids of at most limit jobs that ended before
// cutoff, in _id order.
func (s *Server) expiredJobs(ctx context.Context, cutoff time.Time, limit int) ([]string, error) {
	bound := events.IDAt("job", cutoff)
	if s.opts.Lookup != nil {
		ids, err := s.expiredJobsByIndex(ctx, cutoff, bound, limit)
		if !errors.Is(err, errors.ErrUnsupported) { // else a store over the wire that predates it
			return ids, err
		}
	}
	// MongoDB's index of status and _id serves the find: it reads the ended
	// jobs submitted before the cutoff, each status from its first _id.
	filter := bson.D{
		{Key: "status", Value: bson.D{{Key: "$in", Value: events.JobFinalStatuses()}}},
		{Key: "_id", Value: bson.D{{Key: "$lt", Value: bound}}},
		{Key: "$or", Value: bson.A{
			bson.D{{Key: "finished_at", Value: bson.D{{Key: "$lt", Value: cutoff}}}},
			bson.D{{Key: "finished_at", Value: nil}, {Key: "updated_at", Value: bson.D{{Key: "$lt", Value: cutoff}}}},
		}},
		{Key: outbox.DeletedField, Value: bson.D{{Key: "$exists", Value: false}}},
	}
	ids, err := indexed.FindIDs(ctx, s.opts.Store.DB.Collection(store.Jobs), filter,
		options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("find the jobs past their retention: %w", err)
	}
	return ids, nil
}

// expiredJobsByIndex is expiredJobs on the embedded store: the _ids of the
// ended jobs in _id order from their index (the Lookup's
// MatchingIDsAfter), up to bound, then those jobs, until limit of them
// ended before cutoff (indexed.Reader.ScanIDs). An error wrapping
// errors.ErrUnsupported: the store does not read that index.
func (s *Server) expiredJobsByIndex(ctx context.Context, cutoff time.Time, bound string, limit int) ([]string, error) {
	ended := jobdoc.EndedStatus(events.JobFinalStatuses()...)
	all := append([]indexed.Cond{outbox.NotDeletedCond()}, ended...)
	var expired []string
	keep := func(d bson.Raw) (bool, error) {
		if at, ok := endedAt(d); !ok || !at.Before(cutoff) {
			return false, nil
		}
		id, _ := d.Lookup("_id").StringValueOK()
		expired = append(expired, id)
		return true, nil
	}
	for after := ""; len(expired) < limit; {
		page, err := s.opts.Lookup.MatchingIDsAfter(ctx, store.Jobs, ended, after, expireIDsPage)
		if err != nil {
			return nil, fmt.Errorf("find the jobs past their retention: %w", err)
		}
		before := page
		if i := slices.IndexFunc(page, func(id string) bool { return id >= bound }); i >= 0 {
			before = page[:i]
		}
		if len(before) > 0 {
			if err := s.active.ScanIDs(ctx, before, limit-len(expired), all, keep); err != nil {
				return nil, fmt.Errorf("find the jobs past their retention: %w", err)
			}
		}
		if len(before) < len(page) || len(page) < expireIDsPage {
			break
		}
		after = page[len(page)-1]
	}
	return expired, nil
}

// endedAt is when the ended job d ended for its retention: its finished_at,
// or without one its last write (updated_at). ok is false if it has
// neither.
func endedAt(d bson.Raw) (at time.Time, ok bool) {
	if v := d.Lookup("finished_at"); v.Type != bson.TypeNull && v.Type != 0 { // 0: absent
		return v.TimeOK()
	}
	return d.Lookup("updated_at").TimeOK()
}
