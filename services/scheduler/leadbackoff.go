package scheduler

import (
	"time"

	"github.com/avxrm/rm/pkg/events/backoff"
)

// A leadership that ends before it took over (raising the ledger's epoch,
// attaching the consumer or the first resync failed) used to be followed by
// a new campaign one RenewInterval later. When the store cannot answer the
// resync within the client's timeout, that is a new read of the active jobs
// every ~30 s per scheduler, each left running in the store after its
// client gave up (docs/faults.md: after the NATS restart two schedulers did
// that in turn and the stack never recovered). So consecutive failed
// takeovers wait longer each time, doubling from leadBackoffMin up to
// leadBackoffMax; a takeover that succeeds (the scheduler led) ends the
// back-off, so that losing a leadership that worked is retried at once. A
// takeover that could not reach the store at all (a restart) cost it
// nothing and is retried after leadBackoffMin (backoff.FailedWith), so the
// store's return is seen within a second.
const (
	leadBackoffMin = time.Second
	leadBackoffMax = time.Minute
)

// campaignWait returns how long to wait after a leadership that ended with
// err, given whether it took over, and never less than renew; b is Run's.
func campaignWait(b *backoff.Doubling, tookOver bool, err error, renew time.Duration) time.Duration {
	if tookOver {
		b.Succeeded()
		return renew
	}
	return max(b.FailedWith(time.Now(), err), renew)
}
