package outbox

import (
	"context"
	"fmt"
	"sync"

	"github.com/avxrm/rm/pkg/events"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"golang.org/x/sync/errgroup"
)

// Replacement is one document for ReplaceMany: what Replace takes.
type Replacement struct {
	ID          any
	PrevVersion int64
	Pending     []Entry // the entries read with the document
	Doc         any     // carries _id and the new version
	Events      []events.Event
}

// replaceParallel bounds the writes of ReplaceMany in flight at once.
const replaceParallel = 8

// ReplaceMany does what Replace does for each of rs, but waits once per
// bulkBatch documents for the acknowledgements of their events instead of
// once per document. Each write stays one conditional single-document
// replace (the writes FerretDB's embedded proxy looks up by index; a bulk
// write of many statements is not), up to replaceParallel in flight. It
// returns the indexes of rs whose document changed since it was read
// (nothing stored for them, as Replace's ErrVersionConflict), and the first
// other error; the events of what was stored are published (or left to the
// relay) either way.
func (o *Outbox) ReplaceMany(ctx context.Context, coll *mongo.Collection, rs []Replacement) (conflicts []int, err error) {
	for start := 0; start < len(rs); start += bulkBatch {
		batch := rs[start:min(start+bulkBatch, len(rs))]
		var (
			mu     sync.Mutex
			stored []*inflight
			g      errgroup.Group
		)
		g.SetLimit(replaceParallel)
		for i, r := range batch {
			g.Go(func() error {
				w, _, ok, err := o.replaceStored(ctx, coll, r)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					return err
				case !ok:
					conflicts = append(conflicts, start+i)
				default:
					stored = append(stored, w)
				}
				return nil
			})
		}
		err := g.Wait()
		o.publishBatch(ctx, coll, stored)
		if err != nil {
			return conflicts, err
		}
	}
	return conflicts, nil
}

// replaceStored writes r, without publishing, for Replace and ReplaceMany:
// ok is false on a version conflict (nothing stored, nothing in flight).
// stored is the document as written (r.Doc with the outbox's entries).
func (o *Outbox) replaceStored(ctx context.Context, coll *mongo.Collection, r Replacement) (w *inflight, stored bson.Raw, ok bool, err error) {
	entries, w, err := o.begin(ctx, coll, r.ID, false, r.Pending, r.Events)
	if err != nil {
		return nil, nil, false, err
	}
	stored, err = withEntries(r.Doc, entries)
	if err != nil {
		o.done(w)
		return nil, nil, false, err
	}
	res, err := coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: r.ID}, {Key: VersionField, Value: r.PrevVersion}, NotDeleted()}, stored)
	if err != nil {
		o.failed(w, err)
		if mongo.IsDuplicateKeyError(err) {
			err = ErrDuplicate
		}
		return nil, nil, false, fmt.Errorf("replace in %s: %w", coll.Name(), err)
	}
	if res.MatchedCount == 0 {
		o.done(w)
		return nil, nil, false, nil
	}
	return w, stored, true, nil
}
