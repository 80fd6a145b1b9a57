package local

// HoldLaunchSlots takes every launch slot of d, as launches under way
// would, until release is called.
func HoldLaunchSlots(d *Driver) (release func()) {
	n := cap(d.launching)
	for range n {
		d.launching <- struct{}{}
	}
	return func() {
		for range n {
			<-d.launching
		}
	}
}
