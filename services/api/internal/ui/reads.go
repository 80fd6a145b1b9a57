package ui

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/ledger"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The reads the routes cannot answer. They are small and read only fields
// the REST contract names, so a change of the record's other fields does not
// reach them.

// jobRows returns a page of jobs on the queues ids, newest first, and whether
// more follow. f.Name matches anywhere in the name, ignoring case.
func (u *UI) jobRows(ctx context.Context, f jobsQuery, queueIDs []string, acc access) ([]*jobView, bool, error) {
	if len(queueIDs) == 0 {
		return nil, false, nil
	}
	if u.opts.Lookup != nil {
		rows, more, err := u.jobRowsBack(ctx, f, queueIDs, acc)
		if !errors.Is(err, errors.ErrUnsupported) { // else a store over the wire that predates the read
			return rows, more, err
		}
	}
	filter := bson.D{outbox.NotDeleted()}
	if len(queueIDs) == 1 {
		filter = append(filter, bson.E{Key: "queue_id", Value: queueIDs[0]})
	} else {
		filter = append(filter, bson.E{Key: "queue_id", Value: bson.D{{Key: "$in", Value: queueIDs}}})
	}
	if f.Status != "" {
		filter = append(filter, bson.E{Key: "status", Value: f.Status})
	}
	if f.Label != "" {
		k, v, _ := strings.Cut(f.Label, "=")
		filter = append(filter, bson.E{Key: events.LabelField(k), Value: v})
	}
	if f.Owner != "" {
		filter = append(filter, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "owner.username", Value: f.Owner}}, bson.D{{Key: "owner.subject", Value: f.Owner}},
		}})
	}
	if f.Array != "" {
		filter = append(filter, bson.E{Key: "array_id", Value: f.Array})
	}
	if f.Name != "" {
		filter = append(filter, bson.E{Key: "name", Value: bson.D{
			{Key: "$regex", Value: regexp.QuoteMeta(f.Name)}, {Key: "$options", Value: "i"},
		}})
	}
	if f.Cursor != "" {
		filter = append(filter, bson.E{Key: "_id", Value: bson.D{{Key: "$lt", Value: f.Cursor}}})
	}
	if !acc.all { // the jobs of the queues it may read, and its own
		readable := bson.A{}
		for id, ok := range acc.read {
			if ok {
				readable = append(readable, id)
			}
		}
		filter = append(filter, bson.E{Key: "$and", Value: bson.A{bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: "queue_id", Value: bson.D{{Key: "$in", Value: readable}}}},
			bson.D{{Key: "owner.subject", Value: acc.subject}},
		}}}}})
	}
	cur, err := u.opts.DB.Collection("jobs").Find(ctx, filter, options.Find().
		SetSort(bson.D{{Key: "_id", Value: -1}}).SetLimit(int64(f.Limit)+1).SetProjection(listed))
	if err != nil {
		return nil, false, fmt.Errorf("list jobs: %w", err)
	}
	var rows []*jobView
	if err := cur.All(ctx, &rows); err != nil {
		return nil, false, fmt.Errorf("list jobs: %w", err)
	}
	more := len(rows) > f.Limit
	if more {
		rows = rows[:f.Limit]
	}
	return rows, more, nil
}

// jobRowsBack is jobRows on the embedded store: the jobs read newest first
// by the store's _id index, a batch at a time, each batch by _id
// (indexed.Reader.ScanBack), until the page is full. A find sorted by _id
// is answered by FerretDB decoding every job the store holds: the first
// page after a start, before the job index is loaded, took 2.7 s with
// 4,005 jobs stored (docs/benchmarks.md). A filter that few jobs meet
// still reads the jobs before its cursor until it has its page.
func (u *UI) jobRowsBack(ctx context.Context, f jobsQuery, queueIDs []string, acc access) ([]*jobView, bool, error) {
	queues := make(map[string]bool, len(queueIDs))
	in := make([]any, 0, len(queueIDs))
	for _, id := range queueIDs {
		queues[id] = true
		in = append(in, id)
	}
	all := []indexed.Cond{outbox.NotDeletedCond(), {Path: "queue_id", In: in}}
	if f.Status != "" {
		all = append(all, indexed.Cond{Path: "status", In: []any{f.Status}})
	}
	if f.Array != "" {
		all = append(all, indexed.Cond{Path: "array_id", In: []any{f.Array}})
	}
	r := &indexed.Reader{Coll: u.opts.DB.Collection("jobs"), Lookup: u.opts.Lookup, Exclude: unlisted}
	var rows []*jobView
	err := r.ScanBack(ctx, f.Cursor, f.Limit+1, all, func(d bson.Raw) (bool, error) {
		j := &jobView{}
		if err := bson.Unmarshal(d, j); err != nil {
			return false, fmt.Errorf("decode job %s: %w", d.Lookup("_id"), err)
		}
		if !f.match(j, queues) || !acc.job(j) {
			return false, nil
		}
		rows = append(rows, j)
		return true, nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("list jobs: %w", err)
	}
	more := len(rows) > f.Limit
	if more {
		rows = rows[:f.Limit]
	}
	return rows, more, nil
}

// queuesWithUsage reads the queues (all, or the one ref names: id or name)
// with their usage as GET /queues gives it, but counts the jobs from the job
// index instead of the store: allocated workers from the scheduler's lease
// ledger (docs/scheduling.md), running jobs (admitted or running), pending
// jobs (submitted or pending, not being cancelled) and the workers they ask
// for. The caller has checked that auth is off.
func (u *UI) queuesWithUsage(ctx context.Context, x *jobIndex, ref string) ([]*queueView, error) {
	filter := bson.D{outbox.NotDeleted()}
	if ref != "" {
		filter = append(filter, bson.E{Key: "$or", Value: bson.A{bson.D{{Key: "_id", Value: ref}}, bson.D{{Key: "name", Value: ref}}}})
	}
	cur, err := u.opts.DB.Collection("queues").Find(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("read queues: %w", err)
	}
	var queues []*queueView
	if err := cur.All(ctx, &queues); err != nil {
		return nil, fmt.Errorf("read queues: %w", err)
	}
	leases, err := ledger.Read(ctx, u.opts.DB)
	if err != nil {
		return nil, err
	}
	usage := map[string]*queueUsage{}
	allocated := ledger.Allocated(leases)
	for _, q := range queues {
		q.Usage = &queueUsage{Allocated: allocated[q.ID]}
		usage[q.ID] = q.Usage
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	for _, j := range x.rows {
		qu := usage[j.QueueID]
		switch {
		case qu == nil:
		case j.Status == "admitted" || j.Status == "running":
			qu.RunningJobs++
		case j.Waiting() && !j.CancelRequested:
			qu.PendingJobs++
			qu.PendingWorkers += j.WorkerInstances
		}
	}
	return queues, nil
}

// queueNames reads the id and name of every queue.
func (u *UI) queueNames(ctx context.Context) ([]*queueView, error) {
	cur, err := u.opts.DB.Collection("queues").Find(ctx, bson.D{outbox.NotDeleted()},
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: "name", Value: 1}, {Key: "built_in", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	var rows []struct {
		ID      string `bson:"_id"`
		Name    string `bson:"name"`
		BuiltIn bool   `bson:"built_in"`
	}
	if err := cur.All(ctx, &rows); err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	out := make([]*queueView, 0, len(rows))
	for _, q := range rows {
		out = append(out, &queueView{ID: q.ID, Name: q.Name, BuiltIn: q.BuiltIn})
	}
	return out, nil
}

// exportRow is one scenario export of a job.
type exportRow struct {
	ID        string    `bson:"_id"`
	Status    string    `bson:"status"`
	Size      int64     `bson:"size"`
	FileCount int       `bson:"file_count"`
	Reason    string    `bson:"reason"`
	Warnings  []string  `bson:"warnings"`
	CreatedAt time.Time `bson:"created_at"`
}

// exportsOf lists a job's scenario exports, newest first (the API has no
// list route for them; the document shape is shared with scenario-export).
func (u *UI) exportsOf(ctx context.Context, jobID string) ([]exportRow, error) {
	cur, err := u.opts.DB.Collection("scenario_exports").Find(ctx,
		bson.D{{Key: "job_id", Value: jobID}, outbox.NotDeleted()},
		options.Find().SetSort(bson.D{{Key: "_id", Value: -1}}).SetLimit(50))
	if err != nil {
		return nil, fmt.Errorf("exports of %s: %w", jobID, err)
	}
	var out []exportRow
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("exports of %s: %w", jobID, err)
	}
	return out, nil
}

// readStream returns the stored events matching filter, at most the last n
// (n ≤ 0: all), oldest first. A stream that does not answer within a second
// gives what was read: the pages then show the job's record alone.
func (u *UI) readStream(ctx context.Context, filter string, n int) ([]storedEvent, error) {
	if u.opts.JS == nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}}
	if n > 0 {
		// Start near the end: the stream's last sequence minus a margin
		// wide enough for n matching events on a filtered feed.
		s, err := u.opts.JS.Stream(ctx, events.StreamName)
		if err != nil {
			return nil, fmt.Errorf("event stream: %w", err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("event stream: %w", err)
		}
		if last := info.State.LastSeq; last > uint64(n) {
			cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, last-uint64(n)+1
		}
	}
	cons, err := u.opts.JS.OrderedConsumer(ctx, events.StreamName, cfg)
	if err != nil {
		return nil, fmt.Errorf("event stream: %w", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("event stream: %w", err)
	}
	var out []storedEvent
	for pending := info.NumPending; uint64(len(out)) < pending; {
		batch, err := cons.Fetch(int(min(pending-uint64(len(out)), 500)), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return out, nil
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			e, err := events.Decode(m.Headers(), m.Data())
			if err != nil {
				continue
			}
			out = append(out, storedEvent{Seq: md.Sequence.Stream, Event: e})
		}
		if got == 0 {
			break
		}
	}
	return out, nil
}

type storedEvent struct {
	Seq uint64
	events.Event
}

// jobEventTimes is when a job first reached each status, by its events
// ("submitted", "pending", …); empty when the stream cannot say.
func (u *UI) jobEventTimes(ctx context.Context, id string) map[string]time.Time {
	out := map[string]time.Time{}
	evs, err := u.readStream(ctx, events.FilterSubject(events.KindJob, "", id), 0)
	if err != nil {
		u.opts.Logger.Warn("ui: job events", "job", id, "err", err)
	}
	var attempt int
	for _, e := range evs {
		status := strings.TrimPrefix(e.Type, "rm.job.")
		if status == "retrying" {
			// A new attempt starts the timeline again from pending.
			attempt++
			clear(out)
		}
		if _, ok := out[status]; !ok {
			out[status] = e.Time
		}
	}
	return out
}

// eventRow is one line of the feed.
type eventRow struct {
	Seq      uint64
	Type     string
	Time     time.Time
	Resource string
	Link     string
	Queue    string
	Status   string
	Name     string
}

// recentEvents is the last n events the caller may read (acc), newest
// first; names names the queues by id.
func (u *UI) recentEvents(ctx context.Context, n int, names map[string]string, acc access) ([]eventRow, error) {
	evs, err := u.readStream(ctx, events.SubjectRoot+".>", n)
	if err != nil {
		return nil, err
	}
	var out []eventRow
	own := map[string]bool{}
	for i := len(evs) - 1; i >= 0; i-- {
		if e := evs[i]; u.mayReadEvent(ctx, e.Event, acc, own) {
			out = append(out, rowOf(e, names))
		}
	}
	return out, nil
}

// mayReadEvent reports whether the caller may read e, as the API's event
// stream decides (httpapi's eventFilter): an event without a queue is for
// every caller and a queue's for every role; others need the queue's jobs
// readable, or the job (a job event's, an export's) the caller's own. own
// remembers the owners read of the exports' jobs.
func (u *UI) mayReadEvent(ctx context.Context, e events.Event, acc access, own map[string]bool) bool {
	switch {
	case acc.all || e.QueueID == "" || e.QueueID == events.NoQueue:
		return true
	case e.Kind() == events.KindQueue:
		return acc.viewer
	case acc.read[e.QueueID]:
		return true
	case acc.subject == "":
		return false
	}
	switch e.Kind() {
	case events.KindJob:
		var j struct {
			Owner *owner `json:"owner"`
		}
		return json.Unmarshal(e.Data, &j) == nil && j.Owner != nil && j.Owner.Subject == acc.subject
	case events.KindExport:
		var x struct {
			JobID string `json:"job_id"`
		}
		if json.Unmarshal(e.Data, &x) != nil || x.JobID == "" {
			return false
		}
		mine, ok := own[x.JobID]
		if !ok {
			var j struct {
				Owner *owner `bson:"owner"`
			}
			err := u.opts.DB.Collection("jobs").FindOne(ctx, bson.D{{Key: "_id", Value: x.JobID}},
				options.FindOne().SetProjection(bson.D{{Key: "owner", Value: 1}})).Decode(&j)
			mine = err == nil && j.Owner != nil && j.Owner.Subject == acc.subject
			own[x.JobID] = mine
		}
		return mine
	}
	return false
}

// rowOf is e's line of the feed; its queue is named by names (id → name)
// where its data does not name it, as a deployment's and an export's do not.
func rowOf(e storedEvent, names map[string]string) eventRow {
	var d struct {
		Name      string `json:"name"`
		Status    string `json:"status"`
		QueueName string `json:"queue_name"`
	}
	_ = json.Unmarshal(e.Data, &d)
	row := eventRow{Seq: e.Seq, Type: e.Type, Time: e.Time, Resource: e.ResourceID, Status: d.Status, Name: d.Name, Queue: d.QueueName}
	switch e.Kind() {
	case events.KindJob:
		row.Link = Path + "/jobs/" + e.ResourceID
	case events.KindQueue:
		row.Link = Path + "/queues/" + e.ResourceID
		row.Queue = d.Name
	}
	if row.Queue == "" && e.QueueID != events.NoQueue {
		row.Queue = cmp.Or(names[e.QueueID], e.QueueID) // a deleted queue's id
	}
	return row
}
