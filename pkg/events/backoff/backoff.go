// Package backoff is the doubling-with-cap wait the services use after a
// failed read of the store: the outbox relay's sweep, the scheduler's
// history reads and its takeovers. Each of those, retried at a fixed pace,
// left one more full scan running in a store that could not answer it
// (docs/faults.md); each user's comment says why it backs off.
package backoff

import "time"

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

// Succeeded ends the back-off.
func (b *Doubling) Succeeded() { b.wait, b.next = 0, time.Time{} }
