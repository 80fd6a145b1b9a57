package docker

// HoldStartSlots takes every start slot of d, as starts under way would,
// until release is called.
func HoldStartSlots(d *Driver) (release func()) { return d.starting.HoldAll() }

// StartsWaiting is how many starts of d wait for a slot.
func StartsWaiting(d *Driver) int { return d.starting.Waiters() }
