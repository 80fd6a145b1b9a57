package local

import "time"

// HoldLaunchSlots takes every launch slot of d, as launches under way
// would, until release is called.
func HoldLaunchSlots(d *Driver) (release func()) { return d.launching.HoldAll() }

// StrayPasses is how many passes over /proc strayLoop has made for d.
func StrayPasses(d *Driver) int64 { return d.strayPasses.Load() }

// WithStrayGap replaces strayGap, the wait after each pass over /proc.
func WithStrayGap(gap time.Duration) Option {
	return func(d *Driver) { d.strayGap = func(time.Duration) time.Duration { return gap } }
}

// StrayGap is strayGap.
var StrayGap = strayGap
