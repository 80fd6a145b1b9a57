package outbox

import (
	"context"
	"time"
)

// Renew stores this instance's checkpoint and reads every instance's, as
// the relay does each interval.
func (o *Outbox) Renew(ctx context.Context) error {
	_, err := o.renew(ctx, time.Hour)
	return err
}
