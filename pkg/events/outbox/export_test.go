package outbox

import (
	"context"
	"time"
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
