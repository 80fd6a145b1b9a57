package launch

import (
	"fmt"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	starts      *prometheus.CounterVec
	failures    *prometheus.CounterVec
	runDuration *prometheus.HistogramVec
}

// instancesCollector reports the instances the drivers know, by state, when
// scraped: the cache is the truth, so there is no gauge to keep in step.
type instancesCollector struct {
	pool *pool
	desc *prometheus.Desc
}

func (c instancesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c instancesCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.pool.countStates()
	for _, st := range []driver.State{driver.Pending, driver.Running, driver.Succeeded, driver.Failed} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[st]), string(st))
	}
}

func newMetrics(reg prometheus.Registerer, pl *pool) (*metrics, error) {
	m := &metrics{
		starts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rm_launcher_instance_starts_total", Help: "Instances started, by role.",
		}, []string{"role"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rm_launcher_job_failures_total", Help: "Jobs failed by an instance, by the failing instance's role.",
		}, []string{"role"}),
		runDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rm_launcher_job_run_duration_seconds",
			Help:    "Time from a job's start (all instances started) to its final status, by status.",
			Buckets: prometheus.ExponentialBuckets(0.1, 2, 20), // 100ms … ~29h
		}, []string{"status"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.starts, m.failures, m.runDuration, instancesCollector{pool: pl, desc: prometheus.NewDesc(
		"rm_launcher_instances", "Instances the drivers report, by state (cleaned-up ones are not counted).", []string{"state"}, nil)}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register launcher metrics: %w", err)
		}
	}
	return m, nil
}
