package local

// HoldLaunchSlots takes every launch slot of d, as launches under way
// would, until release is called.
func HoldLaunchSlots(d *Driver) (release func()) { return d.launching.HoldAll() }
