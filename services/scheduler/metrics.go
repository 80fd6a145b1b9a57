package scheduler

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	pendingJobs *prometheus.GaugeVec
	allocated   *prometheus.GaugeVec
	latency     prometheus.Histogram
	leader      prometheus.Gauge
	passes      prometheus.Counter
	violations  prometheus.Counter
	resyncs     prometheus.Counter
	resyncRead  prometheus.Counter
	unseenEnds  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		pendingJobs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rm_scheduler_pending_jobs", Help: "Jobs waiting for admission (submitted or pending), by queue name.",
		}, []string{"queue"}),
		allocated: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rm_scheduler_allocated_worker_instances", Help: "Instances held by live leases, by queue name.",
		}, []string{"queue"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "rm_scheduler_admission_latency_seconds",
			Help:    "Time from a job's submission to its admission.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 20), // 5ms … ~45min
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rm_scheduler_leader", Help: "1 while this scheduler is the active one.",
		}),
		passes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rm_scheduler_admission_passes_total", Help: "Admission passes run.",
		}),
		violations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rm_scheduler_invariant_violations_total",
			Help: "States that cannot happen, found by the reconciliation checks (e.g. an admitted job without a lease).",
		}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rm_scheduler_resyncs_total", Help: "Periodic reads of the active jobs, the ledger and the queues from the store.",
		}),
		resyncRead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rm_scheduler_resync_jobs_read_total",
			Help: "Active jobs the resyncs read from the store; with the embedded store, jobs stored at the version the scheduler holds are not read.",
		}),
		unseenEnds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rm_scheduler_unseen_end_events_published_total",
			Help: "Events of finished jobs the scheduler published itself before releasing their workers, their ends not seen in the stream (after a NATS outage; 0 otherwise).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.pendingJobs, m.allocated, m.latency, m.leader, m.passes, m.violations, m.resyncs, m.resyncRead, m.unseenEnds} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("scheduler metrics: %w", err)
		}
	}
	return m, nil
}
