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

const (
	// bulkBatch is how many documents one InsertMany write carries.
	bulkBatch = 1000
	// publishTimeout bounds the publication of one batch's events; what is
	// not published by then is left to the relay.
	publishTimeout = 30 * time.Second
	// clearTimeout bounds the clearing of one document's events.
	clearTimeout = 10 * time.Second
)

// InsertMany stores new docs, each with its events in its _outbox, many
// documents per write (ordered: a failure stops at the first document
// refused, and the error says how many were stored before), and publishes
// each write's events with one wait for their acknowledgements. It returns
// once every document is stored and its events published (or left to the
// relay, as Insert does on a publication failure).
//
// The published events are then cleared from their documents in the
// background, one document at a time by _id (as Flush does): a store
// updates documents one by one, FerretDB/SQLite at a few milliseconds
// each, so clearing 10,000 documents would hold the caller for tens of
// seconds. Until a document is cleared its events stay in it: a later
// write carries them along and publishes them again, and so may the relay
// (after MinAge); the stream drops the repeats (DuplicateWindow).
func (o *Outbox) InsertMany(ctx context.Context, coll *mongo.Collection, docs []NewDoc) error {
	var sent []NewDoc
	defer func() {
		if len(sent) > 0 {
			go o.clearAll(coll, sent)
		}
	}()
	for start := 0; start < len(docs); start += bulkBatch {
		batch := docs[start:min(start+bulkBatch, len(docs))]
		ds := make([]any, len(batch))
		var evs []events.Event
		for i, nd := range batch {
			d, err := withEntries(nd.Doc, entriesOf(nd.Events))
			if err != nil {
				return err
			}
			ds[i] = d
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
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
		err := o.publishAll(pctx, evs)
		cancel()
		if err != nil {
			o.log.Warn("publishing after a bulk write failed; the relay will retry", "collection", coll.Name(), "documents", len(batch), "err", err)
			continue
		}
		sent = append(sent, batch...)
	}
	return nil
}

// publishAll publishes evs in order, in one batch if the publisher can.
func (o *Outbox) publishAll(ctx context.Context, evs []events.Event) error {
	if bp, ok := o.pub.(BatchPublisher); ok {
		return bp.PublishBatch(ctx, evs)
	}
	for _, e := range evs {
		if err := o.pub.Publish(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// clearAll removes the published events of docs from their documents
// ($pullAll by value and _id alone, as Flush does, so entries a later
// write added stay). A failure leaves them to the relay.
func (o *Outbox) clearAll(coll *mongo.Collection, docs []NewDoc) {
	for _, d := range docs {
		ctx, cancel := context.WithTimeout(context.Background(), clearTimeout)
		_, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: d.ID}},
			bson.D{{Key: "$pullAll", Value: bson.D{{Key: Field, Value: entriesOf(d.Events)}}}})
		cancel()
		if err != nil {
			o.log.Warn("clearing published events failed; the relay will", "collection", coll.Name(), "id", d.ID, "err", err)
			return
		}
	}
}
