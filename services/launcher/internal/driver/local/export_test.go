package local

import "context"

// HoldLaunchSlots takes every launch slot of d, as launches under way
// would, until release is called.
func HoldLaunchSlots(d *Driver) (release func()) {
	n := d.launching.Size()
	for range n {
		_ = d.launching.Acquire(context.Background(), "") // never cancelled
	}
	return func() {
		for range n {
			d.launching.Release("")
		}
	}
}
