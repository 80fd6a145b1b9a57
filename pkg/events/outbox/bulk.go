package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// BatchPublisher publishes many events with one wait for all their
// acknowledgements; nil means every one is stored. A Publisher that also
// implements it is used so by InsertMany.
type BatchPublisher interface {
	PublishBatch(ctx context.Context, evs []events.Event) error
}

// NewDoc is one document for InsertMany with the events announcing it.
type NewDoc struct {
	ID     any
	Doc    any // carries _id and version
	Events []events.Event
}

// flushManyTimeout bounds the publication of one batch's events; what is
// not published by then is left to the relay.
const flushManyTimeout = 30 * time.Second

// bulkBatch is how many documents one InsertMany write carries.
const bulkBatch = 1000

// InsertMany stores docs, each with its events in its _outbox, many
// documents per write (ordered: a failure stops at the first document
// refused, and the error says how many were stored), then publishes the
// events and clears them in bulk. Every document must be new and carry
// version: the clear matches {_id in the batch, version}, so a document
// another writer has changed meanwhile (which carried the events along and
// publishes them itself) is left alone. A publication failure leaves the
// events to the relay, as Insert does.
func (o *Outbox) InsertMany(ctx context.Context, coll *mongo.Collection, version int64, docs []NewDoc) error {
	for start := 0; start < len(docs); start += bulkBatch {
		batch := docs[start:min(start+bulkBatch, len(docs))]
		ds := make([]any, len(batch))
		ids := make(bson.A, len(batch))
		var evs []events.Event
		for i, nd := range batch {
			d, err := withEntries(nd.Doc, entriesOf(nd.Events))
			if err != nil {
				return err
			}
			ds[i], ids[i] = d, nd.ID
			evs = append(evs, nd.Events...)
		}
		if _, err := coll.InsertMany(ctx, ds, options.InsertMany().SetOrdered(true)); err != nil {
			if mongo.IsDuplicateKeyError(err) {
				err = fmt.Errorf("%w: %w", ErrDuplicate, err)
			}
			return fmt.Errorf("insert %d documents into %s after %d stored: %w", len(batch), coll.Name(), start, err)
		}
		if o.skipInlineFlush || len(evs) == 0 {
			continue
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushManyTimeout)
		err := o.flushMany(fctx, coll, version, ids, evs)
		cancel()
		if err != nil {
			o.log.Warn("publishing after a bulk write failed; the relay will retry", "collection", coll.Name(), "documents", len(batch), "err", err)
		}
	}
	return nil
}

// flushMany publishes evs, then clears the outbox of the documents ids
// still at version.
func (o *Outbox) flushMany(ctx context.Context, coll *mongo.Collection, version int64, ids bson.A, evs []events.Event) error {
	if bp, ok := o.pub.(BatchPublisher); ok {
		if err := bp.PublishBatch(ctx, evs); err != nil {
			return err
		}
	} else {
		for _, e := range evs {
			if err := o.pub.Publish(ctx, e); err != nil {
				return err
			}
		}
	}
	_, err := coll.UpdateMany(ctx,
		bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}, {Key: VersionField, Value: version}},
		bson.D{{Key: "$unset", Value: bson.D{{Key: Field, Value: ""}}}})
	if err != nil {
		return fmt.Errorf("outbox clear %d documents of %s: %w", len(ids), coll.Name(), err)
	}
	return nil
}
