package local

import (
	"time"

	"github.com/avxrm/rm/services/launcher/internal/driver"
)

// HoldLaunchSlots takes every launch slot of d, as launches under way
// would, until release is called.
func HoldLaunchSlots(d *Driver) (release func()) { return d.launching.HoldAll() }

// StrayPasses is how many passes over /proc strayLoop has made for d.
func StrayPasses(d *Driver) int64 { return d.strayPasses.Load() }

// StraysQueued is how many instances' strays wait for strayLoop's next pass.
func StraysQueued(d *Driver) int {
	d.strayMu.Lock()
	defer d.strayMu.Unlock()
	return len(d.strayQueue)
}

// WithStrayGap replaces strayGap, the wait after each pass over /proc.
func WithStrayGap(gap time.Duration) Option {
	return func(d *Driver) { d.strayGap = func(time.Duration) time.Duration { return gap } }
}

// StrayGap is strayGap.
var StrayGap = strayGap

// Cgroup is the cgroup of d's instance ref, "" when it has none.
func Cgroup(d *Driver, ref driver.Ref) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if inst := d.insts[ref]; inst != nil {
		return inst.cgroup
	}
	return ""
}

// CgroupBase is the cgroup under which a driver of this process whose
// instances live under root puts theirs.
func CgroupBase(root string) (string, error) {
	mount, own, err := ownCgroup()
	if err != nil {
		return "", err
	}
	return cgroupBase(mount, own, root), nil
}

// CgroupPIDs lists the processes in the cgroup at path.
var CgroupPIDs = cgroupPIDs

// Populated reports whether a process is in the cgroup at path or under it.
var Populated = populated

// ProcStat is procStat: a process's state and flags.
var ProcStat = procStat
