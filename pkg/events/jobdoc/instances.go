package jobdoc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"

	"github.com/avxrm/rm/pkg/events"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"golang.org/x/sync/errgroup"
)

// ChunkSize is how many consecutive instance slots one chunk document holds.
const ChunkSize = 1000

// InlineMax is how many instances a job may keep in its own document
// (events.Job.InlineInstances) instead of in chunks: such a job costs the
// launcher one write per change, not two, and a read of it with its
// instances one find, not two. A chunk holds every instance of a job of up
// to ChunkSize, so inline or not the same records are written; inline, they
// only add to the document the other readers decode (about 115 bytes of
// BSON for a finished instance: 3.7 KB for 32). A job whose instances
// outgrow it (a post controller added, say) moves them to chunks in that
// write, and keeps chunks from then on. It was 16 until the 1,000-job load
// (1 to 20 workers) showed the second write on the hand-over's path of a
// quarter of its jobs (docs/benchmarks.md).
const InlineMax = 32

// inline reports whether after's instances are kept in its document:
// before has none in chunks and after has at most InlineMax.
func inline(before, after *events.Job) bool {
	return before.InstanceChunks == 0 && len(after.Instances) <= InlineMax
}

// chunkDoc is one document of the job_instances collection.
type chunkDoc struct {
	ID        string            `bson:"_id"`
	JobID     string            `bson:"job_id"`
	Instances []events.Instance `bson:"instances"`
}

func chunkID(jobID string, n int) string { return jobID + "/" + strconv.Itoa(n) }

// Slot is the position of an instance among a job's instances: the
// controller first, then the workers by index, then the post controllers
// by index. Instances are listed, chunked and paged in slot order.
func Slot(workers int, role string, index int) int {
	switch role {
	case events.RoleController:
		return 0
	case events.RoleWorker:
		return 1 + index
	}
	return 1 + workers + index
}

// SortInstances puts instances in slot order.
func SortInstances(workers int, in []events.Instance) {
	slices.SortFunc(in, func(a, b events.Instance) int {
		return cmp.Compare(Slot(workers, a.Role, a.Index), Slot(workers, b.Role, b.Index))
	})
}

// Counts counts instances per role and status.
func Counts(in []events.Instance) events.InstanceCounts {
	out := events.InstanceCounts{}
	for _, r := range in {
		m := out[r.Role]
		if m == nil {
			m = map[string]int{}
			out[r.Role] = m
		}
		m[r.Status]++
	}
	return out
}

// parallelChunks bounds the chunk reads and writes of one job in flight.
const parallelChunks = 8

// loadInstances reads every chunk of j, each by _id (the lookup every
// store answers from its index), and returns the instances in slot order.
func (s *Store) loadInstances(ctx context.Context, j *events.Job) ([]events.Instance, error) {
	if j.InstanceChunks == 0 {
		return slices.Clone(j.InlineInstances), nil
	}
	parts := make([][]events.Instance, j.InstanceChunks)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallelChunks)
	for n := range j.InstanceChunks {
		g.Go(func() error {
			var c chunkDoc
			err := s.chunks.FindOne(gctx, bson.D{{Key: "_id", Value: chunkID(j.ID, n)}}).Decode(&c)
			if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
				return fmt.Errorf("read instances of job %s: %w", j.ID, err)
			}
			parts[n] = c.Instances
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return slices.Concat(parts...), nil
}

// byChunk groups instances (in slot order) by chunk number.
func byChunk(workers int, in []events.Instance) map[int][]events.Instance {
	out := map[int][]events.Instance{}
	for _, r := range in {
		n := Slot(workers, r.Role, r.Index) / ChunkSize
		out[n] = append(out[n], r)
	}
	return out
}

// writeInstances stores the chunks whose instances differ between before
// and after, and returns how many chunks the job has.
func (s *Store) writeInstances(ctx context.Context, before, after *events.Job) (int, error) {
	SortInstances(after.WorkerInstances, after.Instances)
	old, cur := map[int][]events.Instance{}, byChunk(after.WorkerInstances, after.Instances)
	if before.InstanceChunks > 0 { // else none is stored in a chunk yet (they were inline, if any)
		old = byChunk(before.WorkerInstances, before.Instances)
	}
	n := before.InstanceChunks
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallelChunks)
	for c, list := range cur {
		n = max(n, c+1)
		if reflect.DeepEqual(old[c], list) {
			continue
		}
		g.Go(func() error {
			doc := chunkDoc{ID: chunkID(after.ID, c), JobID: after.ID, Instances: list}
			_, err := s.chunks.ReplaceOne(gctx, bson.D{{Key: "_id", Value: doc.ID}}, doc, options.Replace().SetUpsert(true))
			if err != nil {
				return fmt.Errorf("write instances of job %s: %w", after.ID, err)
			}
			return nil
		})
	}
	return n, g.Wait()
}

// deleteInstances removes the chunks of a deleted job.
func (s *Store) deleteInstances(ctx context.Context, j *events.Job) error {
	for n := range j.InstanceChunks {
		if _, err := s.chunks.DeleteOne(ctx, bson.D{{Key: "_id", Value: chunkID(j.ID, n)}}); err != nil {
			return fmt.Errorf("delete instances of job %s: %w", j.ID, err)
		}
	}
	return nil
}

// chunk returns the instances of j's chunk c: read by _id, or, for a job
// whose instances are inline, those (c is then 0).
func (s *Store) chunk(ctx context.Context, j *events.Job, c int) ([]events.Instance, error) {
	if j.InstanceChunks == 0 { // stored in slot order (Store.write)
		return j.InlineInstances, nil
	}
	var doc chunkDoc
	err := s.chunks.FindOne(ctx, bson.D{{Key: "_id", Value: chunkID(j.ID, c)}}).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read instances of job %s: %w", j.ID, err)
	}
	return doc.Instances, nil
}

// ErrBadCursor: a page cursor that this package did not make.
var ErrBadCursor = errors.New("jobdoc: malformed cursor")

// InstanceQuery selects a page of a job's instances.
type InstanceQuery struct {
	Role, Status string // empty: any
	Limit        int    // at least 1
	Cursor       string // from the previous page's next cursor; empty: from the start
}

// Instances returns a page of j's instances in slot order, and the cursor
// of the next page ("" on the last). ErrBadCursor for a cursor that is not
// one this function returned for a job of this size.
func (s *Store) Instances(ctx context.Context, j *events.Job, q InstanceQuery) ([]events.Instance, string, error) {
	from := 0
	if q.Cursor != "" {
		n, err := strconv.Atoi(q.Cursor)
		if err != nil || n < 1 || n > Slot(j.WorkerInstances, events.RolePostController, 1<<20) || strconv.Itoa(n) != q.Cursor {
			return nil, "", fmt.Errorf("%w: %q", ErrBadCursor, q.Cursor)
		}
		from = n
	}
	out := []events.Instance{}
	chunks := j.InstanceChunks
	if chunks == 0 { // inline: one chunk, in the job document
		chunks = 1
	}
	for c := from / ChunkSize; c < chunks; c++ {
		list, err := s.chunk(ctx, j, c)
		if err != nil {
			return nil, "", err
		}
		for _, r := range list {
			slot := Slot(j.WorkerInstances, r.Role, r.Index)
			if slot < from || (q.Role != "" && r.Role != q.Role) || (q.Status != "" && r.Status != q.Status) {
				continue
			}
			if len(out) == q.Limit {
				return out, strconv.Itoa(slot), nil
			}
			out = append(out, r)
		}
	}
	return out, "", nil
}
