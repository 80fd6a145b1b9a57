package outbox

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Renew stores this instance's checkpoint and reads every instance's, as
// the relay does each interval, and reports whether another instance looks
// dead (the relay then sweeps).
func (o *Outbox) Renew(ctx context.Context) (stale bool, err error) {
	return o.renew(ctx, time.Minute)
}

// Registered names the collections a sweep reads, in order.
func (o *Outbox) Registered() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, c := range o.colls {
		out = append(out, c.Database().Name()+"."+c.Name())
	}
	return out
}

// SweepWriters names the writers whose entries the sweep's filter looks
// for, as the checkpoints stand now.
func (o *Outbox) SweepWriters(ctx context.Context) ([]string, error) {
	marks, err := o.readMarks(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, alt := range o.sweepFilter(marks)[1].Value.(bson.A) {
		d := alt.(bson.D)
		if d[0].Key != Field {
			continue // the tombstones'
		}
		cond := d[0].Value.(bson.D)[0].Value.(bson.D) // {$elemMatch: cond}
		if by, ok := cond[0].Value.(string); ok {
			out = append(out, by)
		}
	}
	return out, nil
}

// ID is the instance id its entries carry (By).
func (o *Outbox) ID() string { return o.id }
