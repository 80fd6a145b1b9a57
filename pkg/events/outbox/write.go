package outbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/indexed"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// ErrVersionConflict: the document changed (or vanished) since it was read.
var ErrVersionConflict = errors.New("outbox: document changed since it was read")

// ErrDuplicate: an insert hit a unique index.
var ErrDuplicate = errors.New("outbox: duplicate key")

// withEntries returns doc as a BSON document with _outbox set to entries:
// doc's elements as marshalled, but for any _outbox and _deleted it had,
// copied as they are, then the entries (no _outbox when there are none).
func withEntries(doc any, entries []Entry) (bson.Raw, error) {
	raw, err := bson.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("marshal document: %w", err)
	}
	elems, err := bsoncore.Document(raw).Elements()
	if err != nil {
		return nil, fmt.Errorf("read document: %w", err)
	}
	var entriesType bson.Type
	var entriesValue []byte
	if len(entries) > 0 {
		if entriesType, entriesValue, err = bson.MarshalValue(entries); err != nil {
			return nil, fmt.Errorf("marshal outbox entries: %w", err)
		}
	}
	i, out := bsoncore.ReserveLength(make([]byte, 0, len(raw)+len(Field)+len(entriesValue)+2))
	for _, e := range elems {
		if k := e.Key(); k != Field && k != DeletedField {
			out = append(out, e...)
		}
	}
	if len(entries) > 0 {
		out = bsoncore.AppendHeader(out, bsoncore.Type(entriesType), Field)
		out = append(out, entriesValue...)
	}
	out = append(out, 0)
	return bson.Raw(bsoncore.UpdateLength(out, i, int32(len(out)))), nil
}

func entriesOf(evs []events.Event) []Entry {
	out := make([]Entry, len(evs))
	for i, e := range evs {
		out[i] = FromEvent(e)
	}
	return out
}

// Insert stores doc (which must carry _id and version) with evs in one write,
// then publishes them. ErrDuplicate when a unique index refuses it, and then
// nothing is stored or published.
func (o *Outbox) Insert(ctx context.Context, coll *mongo.Collection, id any, version int64, doc any, evs ...events.Event) error {
	entries, w, err := o.begin(ctx, coll, id, false, nil, evs)
	if err != nil {
		return err
	}
	d, err := withEntries(doc, entries)
	if err == nil {
		_, err = coll.InsertOne(ctx, d)
	}
	if err != nil {
		o.failed(w, err)
		if mongo.IsDuplicateKeyError(err) {
			return fmt.Errorf("insert into %s: %w", coll.Name(), ErrDuplicate)
		}
		return fmt.Errorf("insert into %s: %w", coll.Name(), err)
	}
	o.flushAfterWrite(ctx, w)
	return nil
}

// Replace stores doc in place of the document id if it still has prevVersion,
// keeping those of the entries read with it (pending) that may be unsent and
// adding evs, then publishes evs (and the carried entries older than MinAge). ErrVersionConflict when the document
// changed meanwhile.
func (o *Outbox) Replace(ctx context.Context, coll *mongo.Collection, id any, prevVersion, version int64, pending []Entry, doc any, evs ...events.Event) error {
	_, err := o.ReplaceDoc(ctx, coll, id, prevVersion, pending, doc, evs...)
	return err
}

// ReplaceDoc is Replace that also returns the document as stored (doc with
// the outbox's entries): what a read right after would return, unless
// another write or the relay's clearing came in between.
func (o *Outbox) ReplaceDoc(ctx context.Context, coll *mongo.Collection, id any, prevVersion int64, pending []Entry, doc any, evs ...events.Event) (bson.Raw, error) {
	w, stored, ok, err := o.replaceStored(ctx, coll, Replacement{ID: id, PrevVersion: prevVersion, Pending: pending, Doc: doc, Events: evs})
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrVersionConflict
	}
	o.flushAfterWrite(ctx, w)
	return stored, nil
}

// Delete marks document id (if it still has prevVersion) deleted with evs,
// then publishes them, with the carried entries that may be unsent, and
// removes it.
func (o *Outbox) Delete(ctx context.Context, coll *mongo.Collection, id any, prevVersion int64, pending []Entry, evs ...events.Event) error {
	entries, w, err := o.begin(ctx, coll, id, true, pending, evs)
	if err != nil {
		return err
	}
	version := prevVersion + 1
	res, err := coll.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: id}, {Key: VersionField, Value: prevVersion}, {Key: DeletedField, Value: bson.D{{Key: "$exists", Value: false}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: DeletedField, Value: true}, {Key: VersionField, Value: version}, {Key: Field, Value: entries}}}})
	if err != nil {
		o.failed(w, err)
		return fmt.Errorf("delete from %s: %w", coll.Name(), err)
	}
	if res.MatchedCount == 0 {
		o.done(w)
		return ErrVersionConflict
	}
	o.flushAfterWrite(ctx, w)
	return nil
}

// begin prepares a write: it registers this instance's checkpoint if
// needed, stamps the new entries and records the write as in flight (done
// or flushAfterWrite must follow), and returns what the document is to
// hold: the carried entries that may be unsent, then the new ones.
func (o *Outbox) begin(ctx context.Context, coll *mongo.Collection, id any, deleted bool, pending []Entry, evs []events.Event) ([]Entry, *inflight, error) {
	o.mu.Lock()
	if o.ckpt == nil {
		o.ckpt = coll.Database().Collection(CheckpointCollection)
	}
	o.mu.Unlock()
	if err := o.register(ctx); err != nil {
		return nil, nil, err
	}
	carried, orphans := o.carry(pending)
	fresh := entriesOf(evs)
	// Carried entries older than MinAge are published again too (the stream
	// drops the repeats; core NATS subscribers see them): their writer may
	// have died without a relay to follow. Younger ones are left to their
	// writer, as the relay leaves them, unless the document goes. Orphans
	// are adopted: published by this write, as its own (checkpoint.go).
	cutoff := time.Now().Add(-o.MinAge)
	var publish []Entry
	for _, en := range carried {
		if deleted || en.At.Before(cutoff) || (en.At.IsZero() && en.Time.Before(cutoff)) {
			publish = append(publish, en)
		}
	}
	w := o.stamp(coll, id, deleted, fresh, orphans)
	w.entries = slices.Concat(publish, orphans, fresh)
	return slices.Concat(carried, orphans, fresh), w, nil
}

// flushAfterWrite publishes right after a committed write. A failure is only
// logged: the write stands, and the relay publishes the events later.
func (o *Outbox) flushAfterWrite(ctx context.Context, w *inflight) {
	o.mu.Lock()
	w.stored = !o.skipInlineFlush
	o.mu.Unlock()
	if len(w.entries) == 0 && !w.deleted {
		o.done(w)
		return
	}
	if o.skipInlineFlush {
		return // as a process killed now: never retried, only a sweep publishes them
	}
	if err := o.complete(context.WithoutCancel(ctx), w); err != nil {
		o.log.Warn("publishing after write failed; the relay will retry", "collection", w.coll.Name(), "id", w.id, "err", err)
	}
}

// Envelope is what the outbox keeps in a document besides the resource; decode
// it from the same raw document as the resource to carry pending entries along.
type Envelope struct {
	Outbox  []Entry `bson:"_outbox,omitempty"`
	Deleted bool    `bson:"_deleted,omitempty"`
}

// NotDeleted is the filter that hides tombstones from reads.
func NotDeleted() bson.E {
	return bson.E{Key: DeletedField, Value: bson.D{{Key: "$exists", Value: false}}}
}

// NotDeletedCond is NotDeleted as a condition of an indexed.Filter or
// Clause: the document is not a tombstone.
func NotDeletedCond() indexed.Cond { return indexed.Cond{Path: DeletedField, Missing: true} }
