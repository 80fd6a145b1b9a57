// Package jobdoc owns the stored job record: where a job and its instance
// records are kept in MongoDB, the one loop that changes a job (Update),
// the condition helpers, and the table of which service writes which field
// (owners.go, docs/job-record.md), checked on every write.
//
// A job is one document in the jobs collection, carrying its unsent events
// (package outbox), plus its instance records in the job_instances
// collection, in chunks of ChunkSize consecutive slots (the controller,
// the workers by index, then the post controllers by index). So no
// document grows with the job beyond a chunk: a 100,000-worker job is a
// job document of a few KiB and 101 chunks of about 150 KiB, far under
// MongoDB's 16 MiB. Events carry the job without its instances, with
// instance_counts instead, so their size does not grow with the job either.
//
// Only the launcher writes instances, one job at a time. A job of at most
// InlineMax instances keeps them in its own document (instances_inline),
// written with it. Otherwise its chunks are written before the job document
// (each chunk by _id alone), so a crash in between leaves instance records
// newer than instance_counts until the launcher's next reconciliation of
// the job rewrites both.
//
// It imports events, outbox and the MongoDB driver; nothing of the services.
package jobdoc

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/outbox"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Collection names.
const (
	Collection          = "jobs"
	InstancesCollection = "job_instances"
)

// ErrNotFound: no such job, or it is being deleted.
var ErrNotFound = errors.New("jobdoc: job not found")

// ErrConflict: the job kept changing between read and write.
var ErrConflict = errors.New("jobdoc: job changed concurrently")

// Mutator changes j, read fresh at now, and returns the types of the events
// announcing the change: none when there is nothing to do. Its error is
// returned by Update as it is. The events are built by Update from the job
// as stored (new version, no instances), which only Update knows.
type Mutator func(j *events.Job, now time.Time) ([]string, error)

// Store reads and writes jobs on behalf of one writer.
type Store struct {
	jobs, chunks *mongo.Collection
	ob           *outbox.Outbox
	writer       Writer
	source       string
	now          func() time.Time
	attempts     int
	lookup       indexed.Lookup // finds UpdateMatching's jobs; nil: the store's own query
	cache        *jobCache      // WithCache; nil: Update reads every time (cache.go)
}

// Option configures a Store.
type Option func(*Store)

// WithAttempts sets how many times Update tries when the job changed
// between its read and its write; ErrConflict after that. If unset, 20.
func WithAttempts(n int) Option { return func(s *Store) { s.attempts = max(n, 1) } }

// WithLookup makes UpdateMatching find its jobs through l (the embedded
// store's reads by index) instead of the store's own query, which on the
// embedded store decodes every job stored.
func WithLookup(l indexed.Lookup) Option { return func(s *Store) { s.lookup = l } }

// WithClock sets the clock; if unset, time.Now.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// New returns the store of writer w, whose events have CloudEvents source
// source. The launcher's Update loads and writes instances; the others'
// see none (Job.Instances nil) and may not add any.
func New(db *mongo.Database, ob *outbox.Outbox, w Writer, source string, opts ...Option) *Store {
	s := &Store{
		jobs: db.Collection(Collection), chunks: db.Collection(InstancesCollection),
		ob: ob, writer: w, source: source, now: time.Now, attempts: 20,
	}
	for _, o := range opts {
		o(s)
	}
	ob.Register(s.jobs)
	return s
}

// Jobs is the jobs collection, for queries.
func (s *Store) Jobs() *mongo.Collection { return s.jobs }

// read is a job as stored with what the outbox keeps beside it.
type read struct {
	job     *events.Job
	pending []outbox.Entry
}

// Get returns job id without its instances.
func (s *Store) Get(ctx context.Context, id string) (*events.Job, error) {
	r, err := s.read(ctx, id, false)
	if err != nil {
		return nil, err
	}
	return r.job, nil
}

// GetWithInstances returns job id with every instance record.
func (s *Store) GetWithInstances(ctx context.Context, id string) (*events.Job, error) {
	r, err := s.read(ctx, id, true)
	if err != nil {
		return nil, err
	}
	return r.job, nil
}

func (s *Store) read(ctx context.Context, id string, withInstances bool) (read, error) {
	// {_id} alone: FerretDB v1 pushes down to SQLite (and its _id index)
	// only a filter that is exactly {_id: <string>}; tombstones are
	// skipped below.
	token := s.cacheToken()
	raw, err := s.jobs.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return read{}, fmt.Errorf("job %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return read{}, fmt.Errorf("read job %s: %w", id, err)
	}
	r, deleted, err := decodeRead(raw)
	if err != nil {
		return read{}, fmt.Errorf("decode job %s: %w", id, err)
	}
	if deleted {
		return read{}, fmt.Errorf("job %s: %w", id, ErrNotFound)
	}
	if withInstances {
		if r.job.Instances, err = s.loadInstances(ctx, r.job); err != nil {
			return read{}, err
		}
		s.keep(token, r.job, slices.Clone(raw))
	}
	return r, nil
}

// storedJob is a job document as stored: the job and, beside it, what the
// outbox keeps, decoded in one pass.
type storedJob struct {
	events.Job      `bson:",inline"`
	outbox.Envelope `bson:",inline"`
}

// decodeRead decodes a stored job with the outbox entries it carries;
// deleted is true for a tombstone (and r is then empty).
func decodeRead(raw bson.Raw) (r read, deleted bool, err error) {
	d := new(storedJob)
	if err := bson.Unmarshal(raw, d); err != nil {
		return read{}, false, err
	}
	if d.Deleted {
		return read{}, true, nil
	}
	return read{job: &d.Job, pending: d.Outbox}, false, nil
}

// Create stores a new job with the events of types.
func (s *Store) Create(ctx context.Context, j *events.Job, types ...string) error {
	d, err := s.newDoc(j, types)
	if err != nil {
		return err
	}
	return s.ob.Insert(ctx, s.jobs, j.ID, j.Version, j, d.Events...)
}

// Update is the one loop that changes a job: it reads job id fresh, applies
// change, checks that only the writer's own fields changed (ErrNotOwner),
// derives the warnings, and stores the job with its events in one write
// conditioned on the version read (through the outbox); a lost race is
// retried on the new version. It returns the job as stored (as read when
// change had nothing to do). ErrNotFound when the job does not exist.
func (s *Store) Update(ctx context.Context, id string, change Mutator) (*events.Job, error) {
	for attempt := 1; ; attempt++ {
		r, ok := s.cached(id, s.writer == Launcher)
		if !ok {
			var err error
			if r, err = s.read(ctx, id, s.writer == Launcher); err != nil {
				return nil, err
			}
		}
		j := clone(r.job)
		now := s.now().UTC().Truncate(time.Millisecond)
		types, err := change(j, now)
		if err != nil {
			return nil, err
		}
		if len(types) == 0 {
			return r.job, nil
		}
		if err := Check(s.writer, r.job, j); err != nil {
			return nil, err
		}
		err = s.write(ctx, r, j, now, types)
		if err != nil {
			s.drop(id) // whatever the store holds now, it is not what the cache does
		}
		if errors.Is(err, outbox.ErrVersionConflict) {
			if attempt < s.attempts {
				continue
			}
			return nil, fmt.Errorf("%s job %s: %w", types[0], id, ErrConflict)
		}
		if err != nil {
			return nil, fmt.Errorf("%s job %s: %w", types[0], id, err)
		}
		return j, nil
	}
}

func (s *Store) write(ctx context.Context, r read, j *events.Job, now time.Time, types []string) error {
	if s.writer == Launcher {
		j.InstanceCounts = Counts(j.Instances)
		if inline(r.job, j) { // in this write of the job (instances.go)
			SortInstances(j.WorkerInstances, j.Instances)
			j.InlineInstances = slices.Clone(j.Instances)
		} else {
			n, err := s.writeInstances(ctx, r.job, j)
			if err != nil {
				return err
			}
			j.InstanceChunks, j.InlineInstances = n, nil
		}
	}
	evs, err := s.stamp(r.job, j, now, types)
	if err != nil {
		return err
	}
	token := s.cacheToken()
	stored, err := s.ob.ReplaceDoc(ctx, s.jobs, j.ID, r.job.Version, r.pending, j, evs...)
	if err != nil {
		return err
	}
	s.keep(token, j, stored)
	return nil
}

// stamp completes j, changed at now from before, for its write (Update's
// and UpdateMatching's): the derived Finished condition and warnings, the
// next version, and the events of types.
func (s *Store) stamp(before, j *events.Job, now time.Time, types []string) ([]events.Event, error) {
	deriveFinished(j, now)
	j.Warnings = Warnings(j)
	j.Version, j.UpdatedAt = before.Version+1, now
	return s.eventsOf(j, types)
}

// Delete applies change (the requests a deletion implies) to job id and
// removes it with the events of the types change returns followed by
// rm.job.deleted, then removes its instance records.
func (s *Store) Delete(ctx context.Context, id string, change Mutator) error {
	for attempt := 1; ; attempt++ {
		r, err := s.read(ctx, id, false)
		if err != nil {
			return err
		}
		j := clone(r.job)
		now := s.now().UTC().Truncate(time.Millisecond)
		types, err := change(j, now)
		if err != nil {
			return err
		}
		if err := Check(s.writer, r.job, j); err != nil {
			return err
		}
		j.Version, j.UpdatedAt = r.job.Version+1, now
		evs, err := s.eventsOf(j, append(types, events.TypeJobDeleted))
		if err != nil {
			return err
		}
		s.drop(id)
		err = s.ob.Delete(ctx, s.jobs, id, r.job.Version, r.pending, evs...)
		if errors.Is(err, outbox.ErrVersionConflict) && attempt < s.attempts {
			continue
		}
		if errors.Is(err, outbox.ErrVersionConflict) {
			return fmt.Errorf("delete job %s: %w", id, ErrConflict)
		}
		if err != nil {
			return err
		}
		return s.deleteInstances(ctx, r.job)
	}
}

// eventsOf builds the events of types about j: the job as stored, without
// its instances.
func (s *Store) eventsOf(j *events.Job, types []string) ([]events.Event, error) {
	view := *j
	view.Instances, view.InstancesTruncated = nil, false
	if view.InstanceCounts == nil {
		view.InstanceCounts = events.InstanceCounts{} // stored omitted while empty
	}
	evs := make([]events.Event, len(types))
	for i, t := range types {
		e, err := events.New(t, s.source, j.QueueID, j.ID, &view)
		if err != nil {
			return nil, err
		}
		evs[i] = e
	}
	return evs, nil
}

// clone copies j deeply enough that a mutator changing the copy leaves j
// as read, for Check to compare.
func clone(j *events.Job) *events.Job {
	cp := *j
	cp.Conditions = slices.Clone(j.Conditions)
	cp.Warnings = slices.Clone(j.Warnings)
	cp.Instances = slices.Clone(j.Instances)
	cp.Labels = maps.Clone(j.Labels)
	cp.EnvironmentVariables = maps.Clone(j.EnvironmentVariables)
	cp.Application.EnvironmentVariables = maps.Clone(j.Application.EnvironmentVariables)
	if j.InstanceCounts != nil {
		cp.InstanceCounts = make(events.InstanceCounts, len(j.InstanceCounts))
		for k, v := range j.InstanceCounts {
			cp.InstanceCounts[k] = maps.Clone(v)
		}
	}
	if j.PostController != nil {
		pc := *j.PostController
		cp.PostController = &pc
	}
	return &cp
}
