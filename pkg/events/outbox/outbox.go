// Package outbox keeps "a change and the events announcing it" in one MongoDB
// document, so that no event is published for a change that was not stored
// and no stored change loses its event, without multi-document transactions.
//
// A writer stores the changed document with its new events in the document's
// _outbox field, in one single-document write, then calls Flush: the events
// are published (Nats-Msg-Id = event id) and the field is cleared if the
// document still has the version written. If a later write got there first it
// carried the unsent events along, and its own Flush publishes them again; the
// stream's duplicate window drops the repeats. A document deleted through the
// outbox is first marked _deleted (a tombstone), and removed once its events
// are published. Relay sweeps every registered collection for documents with
// unsent events, at start and periodically, for writers that died in between.
//
// The package imports events and the MongoDB driver, nothing of the services.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
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

	mu    sync.Mutex
	colls []*mongo.Collection

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
	return &Outbox{pub: pub, log: log, MinAge: 2 * time.Second}
}

// Register adds collections for the relay to sweep.
func (o *Outbox) Register(colls ...*mongo.Collection) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.colls = append(o.colls, colls...)
}

// Flush publishes entries in order and then removes exactly those entries
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
	for _, en := range entries {
		err := o.pub.Publish(ctx, en.Event())
		if tooLarge(err) {
			droppedEvents.WithLabelValues(en.Type).Inc()
			o.log.Error("event dropped: NATS refuses it for good", "collection", coll.Name(), "id", id,
				"type", en.Type, "event", en.ID, "bytes", len(en.Data), "err", err)
			continue
		}
		if err != nil {
			return fmt.Errorf("outbox flush %s/%v: %w", coll.Name(), id, err)
		}
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

// Sweep publishes the events of every document with entries older than MinAge
// in the registered collections, and returns how many events it published.
func (o *Outbox) Sweep(ctx context.Context) (int, error) {
	o.mu.Lock()
	colls := append([]*mongo.Collection(nil), o.colls...)
	o.mu.Unlock()
	n := 0
	var errs []error
	cutoff := time.Now().Add(-o.MinAge)
	for _, c := range colls {
		cur, err := c.Find(ctx, bson.D{{Key: Field + ".0", Value: bson.D{{Key: "$exists", Value: true}}}},
			options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: VersionField, Value: 1}, {Key: DeletedField, Value: 1}, {Key: Field, Value: 1}}))
		if err != nil {
			errs = append(errs, fmt.Errorf("outbox sweep %s: %w", c.Name(), err))
			continue
		}
		var docs []pendingDoc
		if err := cur.All(ctx, &docs); err != nil {
			errs = append(errs, fmt.Errorf("outbox sweep %s: %w", c.Name(), err))
			continue
		}
		for _, d := range docs {
			if len(d.Outbox) == 0 || d.Outbox[len(d.Outbox)-1].Time.After(cutoff) {
				continue
			}
			if err := o.Flush(ctx, c, d.ID, d.Deleted, d.Outbox); err != nil {
				errs = append(errs, err)
				continue
			}
			n += len(d.Outbox)
		}
	}
	return n, errors.Join(errs...)
}

// Run sweeps at once and then every interval until ctx ends.
func (o *Outbox) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := o.Sweep(ctx)
		if n > 0 {
			o.log.Info("outbox relay published unsent events", "events", n)
		}
		if err != nil && ctx.Err() == nil {
			o.log.Warn("outbox relay", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
