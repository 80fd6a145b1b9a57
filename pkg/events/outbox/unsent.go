package outbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"golang.org/x/sync/errgroup"
)

// PublishUnsent publishes, in their order, the entries of document id that
// may still be unsent by their writers' checkpoints as stored now (whoever
// wrote them), and returns how many it published. It does not clear them:
// their writer, or a sweep, does; the stream's duplicate window drops the
// writer's later publication of the same event ids. It is for a reader that
// is about to act on a change it read from the store, so that what it
// publishes next does not enter the stream before that change's events
// (the scheduler, before it hands a finished job's workers to another job).
func (o *Outbox) PublishUnsent(ctx context.Context, coll *mongo.Collection, id any) (int, error) {
	return o.PublishUnsentOf(ctx, coll, []any{id})
}

// unsentReads is how many documents PublishUnsentOf reads, or publishes
// the entries of, at once.
const unsentReads = 8

// PublishUnsentOf is PublishUnsent for the documents ids, for a reader
// about to act on many changes at once (a new scheduler leader, on the
// jobs that ended while none led): it reads the documents side by side,
// the checkpoints once after all of them, and publishes each document's
// entries in their order, documents side by side. It returns how many
// entries it published; after an error some may have been published.
func (o *Outbox) PublishUnsentOf(ctx context.Context, coll *mongo.Collection, ids []any) (int, error) {
	entries := make([][]Entry, len(ids))
	var g errgroup.Group
	g.SetLimit(unsentReads)
	for i, id := range ids {
		g.Go(func() error {
			var env Envelope
			err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}, options.FindOne().SetProjection(bson.D{{Key: Field, Value: 1}})).Decode(&env)
			if errors.Is(err, mongo.ErrNoDocuments) {
				return nil // removed only once its events were published
			}
			if err != nil {
				return fmt.Errorf("outbox: read %s/%v: %w", coll.Name(), id, err)
			}
			entries[i] = env.Outbox
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	if !slices.ContainsFunc(entries, func(es []Entry) bool { return len(es) > 0 }) {
		return 0, nil
	}
	o.mu.Lock()
	if o.ckpt == nil {
		o.ckpt = coll.Database().Collection(CheckpointCollection)
	}
	o.mu.Unlock()
	marks, err := o.readMarks(ctx) // read after the documents: at least as new as their entries
	if err != nil {
		return 0, err
	}
	var published atomic.Int64
	g = errgroup.Group{}
	g.SetLimit(unsentReads)
	for i, id := range ids {
		var todo []Entry
		for _, en := range entries[i] {
			if o.unsent(en, marks) {
				todo = append(todo, en)
			}
		}
		if len(todo) == 0 {
			continue
		}
		g.Go(func() error {
			if err := o.publishEntries(ctx, coll, id, todo); err != nil {
				return err
			}
			published.Add(int64(len(todo)))
			return nil
		})
	}
	err = g.Wait()
	return int(published.Load()), err
}
