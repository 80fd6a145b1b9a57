package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/avxrm/rm/pkg/events"
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
	// not published by then is left to the relay (retryFailed).
	publishTimeout = 30 * time.Second
)

// InsertMany stores new docs, each with its events in its _outbox, many
// documents per write (ordered: a failure stops at the first document
// refused, and the error says how many were stored before), and publishes
// each write's events with one wait for their acknowledgements. It returns
// once every document is stored and its events published (or left to the
// relay, as Insert does on a publication failure).
//
// Like every write of the outbox it stamps the entries with this
// instance's id and time and clears nothing afterwards: the checkpoint
// (checkpoint.go) says they are sent once published, and the document's
// next write drops them.
func (o *Outbox) InsertMany(ctx context.Context, coll *mongo.Collection, docs []NewDoc) error {
	for start := 0; start < len(docs); start += bulkBatch {
		batch := docs[start:min(start+bulkBatch, len(docs))]
		ds := make([]any, 0, len(batch))
		ws := make([]*inflight, 0, len(batch))
		for _, nd := range batch {
			entries, w, err := o.begin(ctx, coll, nd.ID, false, nil, nd.Events)
			if err != nil {
				o.doneAll(ws)
				return err
			}
			ws = append(ws, w)
			d, err := withEntries(nd.Doc, entries)
			if err != nil {
				o.doneAll(ws)
				return err
			}
			ds = append(ds, d)
		}
		if _, err := coll.InsertMany(ctx, ds, options.InsertMany().SetOrdered(true)); err != nil {
			stored := o.settleBulk(ctx, ws, err)
			if mongo.IsDuplicateKeyError(err) {
				err = fmt.Errorf("%w: %w", ErrDuplicate, err)
			}
			return fmt.Errorf("insert %d documents into %s after %d stored: %w", len(batch), coll.Name(), start+stored, err)
		}
		o.publishBatch(ctx, coll, ws)
	}
	return nil
}

// doneAll forgets writes that never reached the store.
func (o *Outbox) doneAll(ws []*inflight) {
	for _, w := range ws {
		o.done(w)
	}
}

// settleBulk sorts the writes of a refused ordered bulk insert: those
// before the first refused document are stored (their events published
// now), the rest are not; when the store's answer does not say (a lost
// connection), every one is left for retryFailed to read back. It returns
// how many are known stored.
func (o *Outbox) settleBulk(ctx context.Context, ws []*inflight, err error) int {
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || len(bwe.WriteErrors) == 0 || bwe.WriteConcernError != nil {
		for _, w := range ws {
			o.failed(w, err)
		}
		return 0
	}
	first := len(ws)
	for _, we := range bwe.WriteErrors {
		first = min(first, we.Index)
	}
	o.doneAll(ws[first:])
	o.publishBatch(ctx, ws[0].coll, ws[:first])
	return first
}

// publishBatch publishes the events of stored writes with one wait for all
// their acknowledgements; on failure they stay for retryFailed.
func (o *Outbox) publishBatch(ctx context.Context, coll *mongo.Collection, ws []*inflight) {
	var evs []events.Event
	o.mu.Lock()
	for _, w := range ws {
		w.stored = !o.skipInlineFlush
		for _, en := range w.entries {
			evs = append(evs, en.Event())
		}
	}
	o.mu.Unlock()
	if o.skipInlineFlush || len(ws) == 0 {
		return
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	err := o.publishAll(pctx, evs)
	cancel()
	if err != nil {
		o.log.Warn("publishing after a bulk write failed; the relay will retry", "collection", coll.Name(), "documents", len(ws), "err", err)
		return
	}
	o.doneAll(ws)
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
