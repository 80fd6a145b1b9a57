package outbox

import "time"

// A sweep reads every document of the registered collections (the store
// cannot use an index for the filter), so on a store holding many jobs it
// is the most expensive read a service makes, and when it fails it is most
// likely because it took too long. Sweeping again at the next interval (2 s
// in the services) made every relay of the stack (API, schedulers,
// launchers) start a full scan every interval while the store was slow,
// and the embedded store runs a read its client gave up on to its end
// (ferretembed/maxtime.go): after a store restart the scans piled up until
// it answered no one (docs/faults.md). So a failed sweep is tried again
// only after a back-off that doubles from minSweepBackoff (or the interval,
// if longer) up to maxSweepBackoff (a backoff.Doubling, Run's own). Unsent
// events of a dead writer wait that much longer; nothing else depends on
// the sweep.
const (
	minSweepBackoff = 5 * time.Second
	maxSweepBackoff = 2 * time.Minute
)
