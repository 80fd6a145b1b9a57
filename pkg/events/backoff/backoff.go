// Package backoff is the doubling-with-cap wait the services use after a
// failed read of the store: the outbox relay's sweep, the scheduler's
// history reads and its takeovers. Each of those, retried at a fixed pace,
// left one more full scan running in a store that could not answer it
// (docs/faults.md); each user's comment says why it backs off.
//
// A try that could not reach the store at all (no connection, no server to
// select: the store restarting) left nothing running in it, so it does not
// lengthen the back-off: FailedWith waits only Min after it, so the store's
// return is seen at once.
package backoff

import (
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"
)

// Doubling is a back-off that doubles after each failure, from Min up to
// Max, and ends at a success. The zero wait (no failure yet) lets any try
// through. Not safe for concurrent use: each user keeps its own.
type Doubling struct {
	Min, Max time.Duration
	wait     time.Duration // the last back-off; 0 after a success
	next     time.Time     // no try before
}

// May reports whether a try may start at now.
func (b *Doubling) May(now time.Time) bool { return !now.Before(b.next) }

// Failed records a try that failed at now and returns how long the next
// one waits.
func (b *Doubling) Failed(now time.Time) time.Duration {
	b.wait = min(max(2*b.wait, b.Min), b.Max)
	b.next = now.Add(b.wait)
	return b.wait
}

// FailedWith records a try that failed at now with err and returns how long
// the next one waits: Min, with the back-off started over, if err says the
// store could not be reached (Unreachable); else as Failed.
func (b *Doubling) FailedWith(now time.Time, err error) time.Duration {
	if !Unreachable(err) {
		return b.Failed(now)
	}
	b.wait = 0
	b.next = now.Add(b.Min)
	return b.Min
}

// Unreachable reports whether err is the store's client failing to reach
// it: no server could be selected, or a connection failed other than by a
// timeout (a timeout may be a store too busy to answer in time).
func Unreachable(err error) bool {
	var sel topology.ServerSelectionError
	if errors.As(err, &sel) {
		return true
	}
	return mongo.IsNetworkError(err) && !mongo.IsTimeout(err)
}

// Succeeded ends the back-off.
func (b *Doubling) Succeeded() { b.wait, b.next = 0, time.Time{} }
