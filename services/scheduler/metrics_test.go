package scheduler

import (
	"context"
	"testing"

	"github.com/avxrm/rm/pkg/events"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A scheduler that loses the lead stops reporting the queues: its last
// figures, beside the new leader's, would be counted twice and never change.
func TestSteppedDownReportsNoQueues(t *testing.T) {
	e := newEnv(t)
	q := e.queue("Default", ptr(4))
	a, _ := e.start(testConfig())
	j1, j2 := e.submit(q, 4), e.submit(q, 4)
	e.waitStatus(j1, events.JobAdmitted)
	e.waitStatus(j2, events.JobPending)
	e.eventually("a reports the queue", func() bool {
		return testutil.ToFloat64(a.metrics.pendingJobs.WithLabelValues("Default")) == 1 &&
			testutil.ToFloat64(a.metrics.allocated.WithLabelValues("Default")) == 4
	})

	kv, err := e.js.KeyValue(context.Background(), "rm_scheduler")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), "leader", []byte("intruder")); err != nil { // another took the lead
		t.Fatal(err)
	}
	e.eventually("a stands by and reports no queue", func() bool {
		return !a.Leading() && testutil.ToFloat64(a.metrics.leader) == 0 &&
			testutil.CollectAndCount(a.metrics.pendingJobs) == 0 && testutil.CollectAndCount(a.metrics.allocated) == 0
	})
}
