package scheduler

import "time"

// A leadership that ends before it took over (raising the ledger's epoch,
// attaching the consumer or the first resync failed) used to be followed by
// a new campaign one RenewInterval later. When the store cannot answer the
// resync within the client's timeout, that is a new read of the active jobs
// every ~30 s per scheduler, each left running in the store after its
// client gave up (docs/faults.md: after the NATS restart two schedulers did
// that in turn and the stack never recovered). So consecutive failed
// takeovers wait longer each time, doubling from leadBackoffMin up to
// leadBackoffMax; a takeover that succeeds (the scheduler led) ends the
// back-off, so that losing a leadership that worked is retried at once.
const (
	leadBackoffMin = time.Second
	leadBackoffMax = time.Minute
)

// leadBackoff is the wait before the next campaign. Run's.
type leadBackoff struct {
	wait time.Duration // after the next failed takeover
}

// next returns how long to wait after a leadership that ended, given
// whether it took over, and never less than renew.
func (b *leadBackoff) next(tookOver bool, renew time.Duration) time.Duration {
	if tookOver {
		b.wait = 0
		return renew
	}
	b.wait = min(max(2*b.wait, leadBackoffMin), leadBackoffMax)
	return max(b.wait, renew)
}
