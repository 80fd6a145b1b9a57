package scheduler

import "time"

// The history reads of the start estimates (lastFinished) run in the loop,
// once per application and queue per leadership, each bounded by its own
// timeout. When the store cannot answer one in time, the next job of the
// same key asked again at once: with thousands of pending jobs, a pass
// spent thousands of timeouts back to back, admitting nothing, and since
// the embedded store runs a read whose client gave up to its end (the
// proxy strips maxTimeMS, see ferretembed/maxtime.go), every timeout left
// one more full scan running in the store: the scans piled up until the
// store answered no one (docs/faults.md, the wedged run). So after a failed
// read no history read is tried again before a back-off that doubles, from
// readBackoffMin up to readBackoffMax (estimator.reads); meanwhile the estimates rest on what
// the events brought, or say unknown.
const (
	readBackoffMin = 5 * time.Second
	readBackoffMax = 2 * time.Minute
)
