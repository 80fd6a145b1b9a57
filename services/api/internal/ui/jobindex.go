package ui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// jobIndex is the view's read model of the jobs, for the jobs table and a
// queue's running and waiting lists: one scan of the jobs collection, then
// kept current by the job events (each carries the job as the API returns
// it), newest version winning. It exists because the all-in-one's store
// (FerretDB on SQLite) sorts and filters by reading and decoding every
// document: with 10,000 jobs a sorted page takes seconds, while the index
// answers in microseconds. It holds only what the pages list (no instances,
// no environment): about half a kilobyte a job.
//
// Until it is loaded, and if it fails, the pages read the store directly:
// correct, only slower. It never writes.
type jobIndex struct {
	mu    sync.RWMutex
	state indexState
	rows  map[string]*jobView
	ids   []string // ascending, so newest last (ids are time-ordered)
	seq   uint64   // the stream sequence the index is current to
}

type indexState int

const (
	indexIdle indexState = iota
	indexLoading
	indexReady
)

// unlisted are the fields of a job the index does not keep, and listed
// the projection that leaves them out.
var (
	unlisted = []string{"instances", "instances_inline", "environment_variables", "runtime", "application", "warnings", "attempts"}
	listed   = func() bson.D {
		p := bson.D{}
		for _, f := range unlisted {
			p = append(p, bson.E{Key: f, Value: 0})
		}
		return p
	}()
)

// ready returns the index when it is loaded; otherwise it starts loading
// it (once) and returns nil.
func (u *UI) index() *jobIndex {
	x := &u.jobs
	x.mu.Lock()
	defer x.mu.Unlock()
	switch {
	case x.state == indexReady:
		return x
	case x.state == indexIdle && u.opts.JS != nil:
		x.state = indexLoading
		go u.followJobs()
	}
	return nil
}

// scanJobs reads every job (but deleted ones) for the index. With a Lookup
// (the embedded store) it reads them in _id order a thousand at a time,
// each batch by _id, which the store's proxy answers from SQLite
// (indexed.Reader.Scan); one find of them all is answered by FerretDB,
// which decodes each job into its own types first (3.5–3.9 s for 4,005
// jobs, 1.2 s this way, with the first page read beside it;
// docs/benchmarks.md).
func (u *UI) scanJobs(ctx context.Context) (map[string]*jobView, error) {
	rows := map[string]*jobView{}
	coll := u.opts.DB.Collection("jobs")
	if u.opts.Lookup != nil {
		r := &indexed.Reader{Coll: coll, Lookup: u.opts.Lookup, Exclude: unlisted}
		err := r.Scan(ctx, "", math.MaxInt, []indexed.Cond{outbox.NotDeletedCond()}, func(d bson.Raw) (bool, error) {
			j := &jobView{}
			if err := bson.Unmarshal(d, j); err != nil {
				return false, err
			}
			rows[j.ID] = j
			return true, nil
		})
		if !errors.Is(err, errors.ErrUnsupported) {
			return rows, err
		}
		clear(rows) // a store over the wire that predates the read: one find
	}
	cur, err := coll.Find(ctx, bson.D{outbox.NotDeleted()}, options.Find().SetProjection(listed))
	if err != nil {
		return nil, err
	}
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		j := &jobView{}
		if err := cur.Decode(j); err != nil {
			return nil, err
		}
		rows[j.ID] = j
	}
	return rows, cur.Err()
}

// followJobs loads the index and keeps it current until the event stream
// ends (the connection closed); then it forgets it, and the next page
// starts again.
func (u *UI) followJobs() {
	x := &u.jobs
	err := u.loadJobs(context.Background())
	x.mu.Lock()
	x.state, x.rows, x.ids = indexIdle, nil, nil
	x.mu.Unlock()
	if err != nil && !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
		u.opts.Logger.Warn("ui: job index stopped; pages read the store until it is loaded again", "err", err)
	}
}

func (u *UI) loadJobs(ctx context.Context) error {
	x := &u.jobs
	// The stream's position first, the scan second: whatever changes after
	// the position arrives as an event, whatever changed before is scanned.
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	s, err := u.opts.JS.Stream(sctx, events.StreamName)
	if err != nil {
		cancel()
		return fmt.Errorf("event stream: %w", err)
	}
	info, err := s.Info(sctx)
	cancel()
	if err != nil {
		return fmt.Errorf("event stream: %w", err)
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.FilterSubject(events.KindJob, "", "")},
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: info.State.LastSeq + 1}
	cons, err := u.opts.JS.OrderedConsumer(ctx, events.StreamName, cfg)
	if err != nil {
		return fmt.Errorf("event stream: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("event stream: %w", err)
	}
	defer it.Stop()

	start := time.Now()
	rows, err := u.scanJobs(ctx)
	if err != nil {
		return fmt.Errorf("scan jobs: %w", err)
	}
	ids := make([]string, 0, len(rows))
	for id := range rows {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	x.mu.Lock()
	x.rows, x.ids, x.seq, x.state = rows, ids, info.State.LastSeq, indexReady
	x.mu.Unlock()
	u.opts.Logger.Info("ui: job index loaded", "jobs", len(ids), "took", time.Since(start).Round(time.Millisecond))

	for {
		m, err := it.Next()
		if err != nil {
			return err
		}
		md, err := m.Metadata()
		if err != nil {
			continue
		}
		if e, err := events.Decode(m.Headers(), m.Data()); err == nil {
			x.apply(e)
		}
		x.mu.Lock()
		x.seq = max(x.seq, md.Sequence.Stream)
		x.mu.Unlock()
	}
}

// current returns the index once it holds every job event stored so far, so
// that a page fetched because of an event shows that event; nil when it is
// not loaded or does not catch up within a second (the pages then read the
// store).
func (u *UI) current(ctx context.Context) *jobIndex {
	x := u.index()
	if x == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	s, err := u.opts.JS.Stream(ctx, events.StreamName)
	if err != nil {
		return nil
	}
	last, err := s.GetLastMsgForSubject(ctx, events.FilterSubject(events.KindJob, "", ""))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return x
	}
	if err != nil {
		return nil
	}
	for {
		x.mu.RLock()
		seq, ready := x.seq, x.state == indexReady
		x.mu.RUnlock()
		if !ready {
			return nil
		}
		if seq >= last.Sequence {
			return x
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// apply records one job event: the job as it is now, or its removal.
func (x *jobIndex) apply(e events.Event) {
	if e.Type == events.TypeJobDeleted {
		x.mu.Lock()
		defer x.mu.Unlock()
		if _, ok := x.rows[e.ResourceID]; ok {
			delete(x.rows, e.ResourceID)
			if i, found := slices.BinarySearch(x.ids, e.ResourceID); found {
				x.ids = slices.Delete(x.ids, i, i+1)
			}
		}
		return
	}
	j := &jobView{}
	if err := json.Unmarshal(e.Data, j); err != nil || j.ID == "" {
		return
	}
	j.Instances, j.Warnings = nil, nil
	x.mu.Lock()
	defer x.mu.Unlock()
	old, ok := x.rows[j.ID]
	if ok && old.Version > j.Version {
		return // a late event about an older version
	}
	x.rows[j.ID] = j
	if !ok {
		i, _ := slices.BinarySearch(x.ids, j.ID)
		x.ids = slices.Insert(x.ids, i, j.ID)
	}
}

// match says whether j passes the filter; queues are the ids it may be on.
func (f *jobsQuery) match(j *jobView, queues map[string]bool) bool {
	switch {
	case !queues[j.QueueID]:
		return false
	case f.Status != "" && j.Status != f.Status:
		return false
	case f.Name != "" && !strings.Contains(strings.ToLower(j.Name), strings.ToLower(f.Name)):
		return false
	case f.Owner != "" && (j.Owner == nil || j.Owner.Username != f.Owner && j.Owner.Subject != f.Owner):
		return false
	case f.Array != "" && j.ArrayID != f.Array:
		return false
	}
	if f.Label != "" {
		k, v, _ := strings.Cut(f.Label, "=")
		if got, ok := j.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// page is a page of the jobs table, newest first, and whether more follow:
// the jobs f selects on the queues given that acc may read.
func (x *jobIndex) page(f jobsQuery, queues map[string]bool, acc access) ([]*jobView, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	end := len(x.ids)
	if f.Cursor != "" {
		end, _ = slices.BinarySearch(x.ids, f.Cursor)
	}
	var out []*jobView
	for i := end - 1; i >= 0; i-- {
		j := x.rows[x.ids[i]]
		if f.match(j, queues) && acc.job(j) {
			if len(out) == f.Limit {
				return out, true
			}
			out = append(out, j)
		}
	}
	return out, false
}

// active returns the jobs of a queue that wait and that run (admitted or
// running) that may reports the caller may read, at most max of each, and
// how many there are of each.
func (x *jobIndex) active(queueID string, max int, may func(*jobView) bool) (waiting, running []*jobView, nWaiting, nRunning int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for _, id := range x.ids {
		j := x.rows[id]
		if j.QueueID != queueID || !may(j) {
			continue
		}
		switch {
		case j.Waiting():
			nWaiting++
			waiting = append(waiting, j)
		case j.Status == "admitted" || j.Status == "running":
			nRunning++
			if len(running) < max {
				running = append(running, j)
			}
		}
	}
	return waiting, running, nWaiting, nRunning
}
