package scheduler

import (
	"strings"
	"time"

	"github.com/avxrm/rm/pkg/events"

	"github.com/avxrm/rm/services/scheduler/internal/admit"
)

// guardChanged reports whether the starvation guard began or ended pausing
// backfill for a waiting job between its stored message was and the new
// one is. Such a change is written at once, whereas a message whose only
// change is its numbers waits for its refresh (see messageRefresh).
func guardChanged(was, is string) bool {
	return strings.Contains(was, admit.StarvationGuardNote) != strings.Contains(is, admit.StarvationGuardNote)
}

// starvationOf is the starvation limit of queue q: its starvation_seconds,
// else events.DefaultStarvationSeconds on a worker queue. The built-in
// controller queues default to no guard: every job claims the controller
// queue, so a default there would start the guard (on all the queues a job
// claims) even on a worker queue that turned it off with 0.
func starvationOf(q *events.Queue) time.Duration {
	if q.Scheduling.StarvationSeconds == nil && (q.BuiltIn || q.Name == events.ControllerQueue || q.Name == events.PostControllerQueue) {
		return 0
	}
	return q.Scheduling.Starvation()
}
