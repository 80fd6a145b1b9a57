package docker

import "context"

// HoldStartSlots takes every start slot of d, as starts under way would,
// until release is called.
func HoldStartSlots(d *Driver) (release func()) {
	n := d.starting.Size()
	for range n {
		_ = d.starting.Acquire(context.Background(), "") // never cancelled
	}
	return func() {
		for range n {
			d.starting.Release("")
		}
	}
}

// StartsWaiting is how many starts of d wait for a slot.
func StartsWaiting(d *Driver) int { return d.starting.Waiters() }
