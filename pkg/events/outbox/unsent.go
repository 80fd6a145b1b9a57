package outbox

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
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
	var env Envelope
	err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}, options.FindOne().SetProjection(bson.D{{Key: Field, Value: 1}})).Decode(&env)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return 0, nil // removed only once its events were published
	}
	if err != nil {
		return 0, fmt.Errorf("outbox: read %s/%v: %w", coll.Name(), id, err)
	}
	if len(env.Outbox) == 0 {
		return 0, nil
	}
	o.mu.Lock()
	if o.ckpt == nil {
		o.ckpt = coll.Database().Collection(CheckpointCollection)
	}
	o.mu.Unlock()
	marks, err := o.readMarks(ctx) // read after the document: at least as new as its entries
	if err != nil {
		return 0, err
	}
	var todo []Entry
	for _, en := range env.Outbox {
		if o.unsent(en, marks) {
			todo = append(todo, en)
		}
	}
	if err := o.publishEntries(ctx, coll, id, todo); err != nil {
		return 0, err
	}
	return len(todo), nil
}
