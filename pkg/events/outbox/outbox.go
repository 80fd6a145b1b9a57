// Package outbox keeps "a change and the events announcing it" in one MongoDB
// document, so that no event is published for a change that was not stored
// and no stored change loses its event, without multi-document transactions.
//
// A writer stores the changed document with its new events in the document's
// _outbox field, in one single-document write, then publishes them
// (Nats-Msg-Id = event id). It does not write the document again to clear
// them: a published-up-to checkpoint per outbox instance says which entries
// are sent (checkpoint.go), and the next write of the document drops them.
// A later write carries the entries that may be unsent along. A document
// deleted through the outbox is first marked _deleted (a tombstone), and
// removed once its events are published. The relay retries this instance's
// failed publications from memory every interval, and sweeps every
// registered collection for unsent entries at start and whenever another
// instance looks dead (its checkpoint not renewed), for writers that died
// in between; the stream's duplicate window drops the repeats.
//
// The package imports events and the MongoDB driver, nothing of the services.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/backoff"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Field names the outbox uses in documents.
const (
	Field        = "_outbox"
	DeletedField = "_deleted"
	VersionField = "version"
)

// Entry is one unsent event as stored in a document.
type Entry struct {
	ID         string    `bson:"id"`
	Type       string    `bson:"type"`
	Source     string    `bson:"source"`
	ResourceID string    `bson:"resource_id"`
	QueueID    string    `bson:"queue_id,omitempty"`
	Time       time.Time `bson:"time"`
	Data       string    `bson:"data"` // the event data as JSON text, kept byte for byte
	// By and At: the outbox instance that stored the entry and when it
	// began that write, compared with its checkpoint (checkpoint.go).
	By string    `bson:"by,omitempty"`
	At time.Time `bson:"at,omitempty"`
}

// Meta is embedded inline in every document that carries events:
//
//	type queueDoc struct { events.Queue `bson:",inline"`; outbox.Meta `bson:",inline"` }
type Meta struct {
	Outbox  []Entry `bson:"_outbox,omitempty" json:"-"`
	Deleted bool    `bson:"_deleted,omitempty" json:"-"`
}

// FromEvent returns the stored form of e.
func FromEvent(e events.Event) Entry {
	return Entry{ID: e.ID, Type: e.Type, Source: e.Source, ResourceID: e.ResourceID,
		QueueID: e.QueueID, Time: e.Time, Data: string(e.Data)}
}

// Event returns the event an entry stores.
func (en Entry) Event() events.Event {
	return events.Event{ID: en.ID, Type: en.Type, Source: en.Source, ResourceID: en.ResourceID,
		QueueID: en.QueueID, Time: en.Time.UTC(), Data: json.RawMessage(en.Data)}
}

// droppedEvents counts the events refused for good (larger than the
// server's max payload): see Flush.
var droppedEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "rm_outbox_events_dropped_total",
	Help: "Events the outbox gave up on because NATS refuses them for good (larger than its max payload).",
}, []string{"type"})

// Collectors are the outbox's metrics, for the process's registry.
func Collectors() []prometheus.Collector { return []prometheus.Collector{droppedEvents} }

// Dropped returns how many events of type typ the outbox gave up on.
func Dropped(typ string) float64 {
	var m dto.Metric
	if err := droppedEvents.WithLabelValues(typ).Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

// tooLarge reports whether err says the event can never be published.
func tooLarge(err error) bool { return errors.Is(err, nats.ErrMaxPayload) }

// Publisher stores an event in the stream; nil means stored.
type Publisher interface {
	Publish(ctx context.Context, e events.Event) error
}

// Outbox publishes the events of documents and clears them.
type Outbox struct {
	pub Publisher
	log *slog.Logger

	id string // this instance, in entries and its checkpoint

	mu          sync.Mutex
	colls       []*mongo.Collection
	ckpt        *mongo.Collection // CheckpointCollection, in the first registered collection's database
	registered  bool              // this instance's checkpoint is stored
	lastAt      time.Time         // the last write's stamp
	pending     map[*inflight]struct{}
	unpublished map[string]int           // ids of the entries of pending writes
	marks       map[string]checkpointDoc // every instance's checkpoint, as last read

	// MinAge: the relay leaves events younger than this to their writer's own Flush.
	MinAge time.Duration

	skipInlineFlush bool // test hook: writes leave their events to the relay
}

// WithoutInlineFlush makes every write stop after it is stored and before its
// events are published, as a process killed at that instant would; only the
// relay then publishes them. For tests.
func (o *Outbox) WithoutInlineFlush(_ testing.TB) { o.skipInlineFlush = true }

// New returns an outbox publishing through pub.
func New(pub Publisher, log *slog.Logger) *Outbox {
	if log == nil {
		log = slog.Default()
	}
	return &Outbox{pub: pub, log: log, MinAge: 2 * time.Second, id: newInstanceID(),
		pending: map[*inflight]struct{}{}, unpublished: map[string]int{}}
}

// Register adds collections for the relay to sweep. Every service of a
// process that shares one Outbox registers what it writes, and a sweep reads
// every document of each collection, so one registered twice (by name) is
// kept once.
func (o *Outbox) Register(colls ...*mongo.Collection) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, c := range colls {
		if !slices.ContainsFunc(o.colls, func(k *mongo.Collection) bool {
			return k.Name() == c.Name() && k.Database().Name() == c.Database().Name()
		}) {
			o.colls = append(o.colls, c)
		}
	}
	if o.ckpt == nil && len(colls) > 0 {
		o.ckpt = colls[0].Database().Collection(CheckpointCollection)
	}
}

// Flush, the relay's way, publishes entries in order and then removes exactly those entries
// from document id ($pullAll by value), so entries a later write added stay
// for their own publication. A tombstone (deleted) is removed instead: nothing
// writes a tombstone again, so its id alone identifies it. Both writes filter
// on _id alone, which every store (FerretDB/SQLite included) answers from its
// _id index. A publication failure leaves everything for the relay and is
// returned; the change itself is committed either way. An event NATS refuses
// for good (larger than its max payload) is a permanent error: logged,
// counted (rm_outbox_events_dropped_total) and removed with the others,
// never retried.
func (o *Outbox) Flush(ctx context.Context, coll *mongo.Collection, id any, deleted bool, entries []Entry) error {
	if err := o.publishEntries(ctx, coll, id, entries); err != nil {
		return err
	}
	filter := bson.D{{Key: "_id", Value: id}}
	var err error
	if deleted {
		_, err = coll.DeleteOne(ctx, filter)
	} else {
		_, err = coll.UpdateOne(ctx, filter, bson.D{{Key: "$pullAll", Value: bson.D{{Key: Field, Value: entries}}}})
	}
	if err != nil {
		return fmt.Errorf("outbox clear %s/%v: %w", coll.Name(), id, err)
	}
	return nil
}

// pendingDoc is what the relay reads of a document.
type pendingDoc struct {
	ID      bson.RawValue `bson:"_id"`
	Version int64         `bson:"version"`
	Deleted bool          `bson:"_deleted"`
	Outbox  []Entry       `bson:"_outbox"`
}

// Sweep publishes the unsent entries older than MinAge of every document in
// the registered collections (removing tombstones), then retires the
// instances whose checkpoint had gone stale, and returns how many events it
// published. It reads every document (FerretDB scans whatever the filter),
// so the relay runs it only at start and when an instance looks dead.
func (o *Outbox) Sweep(ctx context.Context) (int, error) {
	return o.sweep(ctx, o.staleAfter(0))
}

func (o *Outbox) sweep(ctx context.Context, staleAfter time.Duration) (int, error) {
	marks, err := o.readMarks(ctx)
	if err != nil {
		return 0, err
	}
	now := time.Now().UTC()
	var stale []string
	for _, m := range marks {
		if m.ID != o.id && !m.Retired && now.Sub(m.RenewedAt) > staleAfter {
			stale = append(stale, m.ID)
		}
	}
	o.mu.Lock()
	colls := append([]*mongo.Collection(nil), o.colls...)
	o.mu.Unlock()
	n := 0
	var errs []error
	cutoff := time.Now().Add(-o.MinAge)
	skipped := map[string]bool{} // instances with unsent entries on a document left for later
	filter := o.sweepFilter(marks)
	for _, c := range colls {
		docs, err := o.sweepRead(ctx, c, filter)
		if err != nil {
			errs = append(errs, fmt.Errorf("outbox sweep %s: %w", c.Name(), err))
			continue
		}
		for _, d := range docs {
			var todo []Entry
			for _, en := range d.Outbox {
				if o.unsent(en, marks) {
					todo = append(todo, en)
				}
			}
			if (len(todo) == 0 && !d.Deleted) || len(d.Outbox) == 0 {
				continue
			}
			if d.Outbox[len(d.Outbox)-1].Time.After(cutoff) { // its writer may still publish it
				// A live writer carries a dead one's entries along on
				// every write until that one is retired: publish those
				// (old, since their writer went stale) so that it can
				// be, and leave the live writer's to it. Only a dead
				// writer's entry too young to publish holds it back.
				var dead []Entry
				for _, en := range todo {
					if slices.Contains(stale, en.By) && en.At.Before(cutoff) {
						dead = append(dead, en)
					} else {
						skipped[en.By] = true
					}
				}
				// They are cleared once published, as Flush clears: left
				// in the document, they would be orphans once their
				// writer is retired (checkpoint.go), published again by
				// the next write, maybe past the duplicate window.
				if len(dead) == 0 {
					continue
				}
				if err := o.Flush(ctx, c, d.ID, false, dead); err != nil {
					errs = append(errs, err)
				} else {
					n += len(dead)
				}
				continue
			}
			if err := o.Flush(ctx, c, d.ID, d.Deleted, todo); err != nil {
				errs = append(errs, err)
				continue
			}
			n += len(todo)
		}
	}
	// A stale instance is retired (no sweep looks for its entries again)
	// only once no document holds an entry of it that this sweep left for
	// later: the next sweep, which the stale checkpoint brings on,
	// publishes those.
	stale = slices.DeleteFunc(stale, func(id string) bool { return skipped[id] })
	if len(errs) == 0 && len(stale) > 0 {
		errs = append(errs, o.retire(ctx, stale))
	}
	return n, errors.Join(errs...)
}

// sweepRead reads the documents of c a sweep has work in (filter, from
// sweepFilter). A store that cannot answer that filter (FerretDB on its
// own: the embedded store's proxy answers it up to sweepBatch matches) is
// asked for every document with entries instead; the sweep checks each
// entry either way.
func (o *Outbox) sweepRead(ctx context.Context, c *mongo.Collection, filter bson.D) ([]pendingDoc, error) {
	opts := options.Find().SetBatchSize(sweepBatch).
		SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: VersionField, Value: 1}, {Key: DeletedField, Value: 1}, {Key: Field, Value: 1}})
	var docs []pendingDoc
	cur, err := c.Find(ctx, filter, opts)
	if err == nil {
		err = cur.All(ctx, &docs)
	}
	if unsupported(err) {
		docs = nil
		cur, err = c.Find(ctx, bson.D{{Key: Field + ".0", Value: bson.D{{Key: "$exists", Value: true}}}}, opts)
		if err == nil {
			err = cur.All(ctx, &docs)
		}
	}
	return docs, err
}

// sweepBatch is how many documents a sweep reads per batch: the embedded
// store answers the sweep's filter only when its matches fit one batch.
const sweepBatch = 1000

// unsupported reports whether err is a store refusing a query operator
// (FerretDB v1: BadValue "unknown operator", or NotImplemented).
func unsupported(err error) bool {
	var se mongo.ServerError
	return errors.As(err, &se) && (se.HasErrorCode(2) || se.HasErrorCode(238))
}

// sweepFilter selects the documents a sweep has work in: a tombstone with
// entries, or a document with an entry that may be unsent by marks (read
// before the documents: a checkpoint only moves forward, so an older one
// selects more). An entry is unsent when it has no writer (written before
// checkpoints), or when it is at or after its writer's checkpoint; this
// instance's own entries are bounded by its stored checkpoint, or not at
// all before it has one. An instance that closed (Close) has none: it
// closed once nothing wrote through it and everything it wrote was
// published, so it is left out, and the filter grows with the instances
// that may have left something, not with every clean restart of the week
// the checkpoints are kept. The sweep checks each entry again (unsent); the
// filter only spares it the documents whose entries are all sent, which
// are all the others: every document keeps the entries of its last write.
//
// The embedded store answers this filter in SQL (the proxy's findentries.go)
// without decoding a document that does not match; FerretDB itself decodes
// every document for any filter but an _id, which for 100,000 finished jobs
// took 14.5 to 16.9 s here, at every start of the all-in-one. MongoDB scans
// the collection (no index serves it, and one on the entries would cost
// every write) but sends only the matches.
func (o *Outbox) sweepFilter(marks map[string]checkpointDoc) bson.D {
	elem := func(cond bson.D) bson.D {
		return bson.D{{Key: Field, Value: bson.D{{Key: "$elemMatch", Value: cond}}}}
	}
	alts := bson.A{
		bson.D{{Key: DeletedField, Value: true}},
		elem(bson.D{{Key: "by", Value: bson.D{{Key: "$exists", Value: false}}}}),
	}
	if _, ok := marks[o.id]; !ok {
		alts = append(alts, elem(bson.D{{Key: "by", Value: o.id}}))
	}
	for _, id := range slices.Sorted(maps.Keys(marks)) {
		if marks[id].Closed && id != o.id {
			continue // it closed with everything published, and wrote no more (Close)
		}
		alts = append(alts, elem(bson.D{{Key: "by", Value: id}, {Key: "at", Value: bson.D{{Key: "$gte", Value: marks[id].UpTo}}}}))
	}
	return bson.D{{Key: Field + ".0", Value: bson.D{{Key: "$exists", Value: true}}}, {Key: "$or", Value: alts}}
}

// staleAfter is how old another instance's checkpoint may be before it is
// taken for dead, for a relay running every interval.
func (o *Outbox) staleAfter(interval time.Duration) time.Duration {
	return max(minStaleAfter, staleAfterIntervals*interval)
}

// Run, the relay, sweeps at once (unless every earlier instance closed
// cleanly, sweepAtStart); then every interval it publishes again
// what this instance failed to publish and sweeps when another instance's
// checkpoint has gone stale or a sweep failed (a failed sweep only after a
// back-off, see backoff.go), until ctx ends. Beside that it stores this
// instance's checkpoint every interval (renewOnce).
func (o *Outbox) Run(ctx context.Context, interval time.Duration) {
	staleAfter := o.staleAfter(interval)
	var stale atomic.Bool
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { every(ctx, interval, func() { o.renewOnce(ctx, staleAfter, &stale) }) })
	// The start's sweep waits for a registered collection: a standalone
	// service registers its own once this runs, and a sweep of none
	// would count as done.
	started, sweep := false, false
	sweeps := backoff.Doubling{Min: max(minSweepBackoff, interval), Max: maxSweepBackoff}
	every(ctx, interval, func() {
		if !started && o.checkpoints() != nil {
			started, sweep = true, o.sweepAtStart(ctx) || sweep
		}
		n, err := o.retryFailed(ctx)
		sweep = stale.Swap(false) || sweep
		if err == nil && sweep && sweeps.May(time.Now()) {
			var m int
			m, err = o.sweep(ctx, staleAfter)
			n += m
			sweep = err != nil
			if sweep {
				sweeps.FailedWith(time.Now(), err)
			} else {
				sweeps.Succeeded()
			}
		}
		if n > 0 {
			o.log.Info("outbox relay published unsent events", "events", n)
		}
		o.warn(ctx, err)
	})
}

// renewOnce stores this instance's checkpoint and sets stale when another
// instance looks dead. Run does it every interval beside the relay's
// publications and sweeps: the checkpoint needs only the store, and stays
// before the writes still unpublished (upTo). An instance that stopped
// renewing while NATS was away or while it swept a big store would look
// dead to the others, who would each sweep every collection for it.
func (o *Outbox) renewOnce(ctx context.Context, staleAfter time.Duration, stale *atomic.Bool) {
	s, err := o.renew(ctx, staleAfter)
	if s {
		stale.Store(true)
	}
	o.warn(ctx, err)
}

// warn logs a failure of the relay, unless it is stopping.
func (o *Outbox) warn(ctx context.Context, err error) {
	if err != nil && ctx.Err() == nil {
		o.log.Warn("outbox relay", "err", err)
	}
}

// every runs f at once, then every interval until ctx ends.
func every(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		f()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
