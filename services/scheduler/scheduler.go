// Package scheduler is the Resource Manager's scheduler service: it admits jobs
// (all their workers and one controller at once) and post controllers under the
// limits of their queues, says why the others wait, and keeps every queue's
// capacity in durable leases.
//
// One scheduler is active at a time, elected through a NATS KV bucket
// (package elect); the KV revision of its election is its epoch, which fences
// the lease ledger in MongoDB (package lease) against a deposed leader. The
// active scheduler keeps the picture of queues, jobs and leases in memory,
// loaded from MongoDB when it takes over and every ResyncInterval, and kept
// current by job and queue events and by its own writes. Decisions are made by
// the pure core, package admit. cmd/rm-scheduler and the local all-in-one both
// call Run.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/backoff"
	"github.com/avxrm/rm/pkg/events/elect"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/scheduler/internal/lease"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Source is the CloudEvents source of the scheduler's events.
const Source = "/rm/scheduler"

// Collections the scheduler reads and writes. Jobs and queues are the API's;
// the scheduler owns the lease ledger.
const (
	JobsCollection   = "jobs"
	QueuesCollection = "queues"
	LeasesCollection = lease.Collection
)

// Config of the scheduler. The zero value works.
type Config struct {
	// InstanceID names this scheduler in the election. If empty, host-pid.
	InstanceID string
	// Durable is the name of the JetStream consumer of job and queue events.
	// If empty, "rm-scheduler".
	Durable string
	// ElectionBucket is the NATS KV bucket of the election. If empty, "rm_scheduler".
	ElectionBucket string
	// LeaderTTL: a leader that has not renewed for this long is replaced.
	// If zero, 5s.
	LeaderTTL time.Duration
	// RenewInterval is how often the leader renews. If zero, 1s. Standbys
	// try to take over every 200ms, or this if shorter (elect.Config.Poll).
	RenewInterval time.Duration
	// ResyncInterval is how often the leader reloads everything from MongoDB,
	// a safety net for lost events. If zero, 30s.
	ResyncInterval time.Duration
	// TickInterval is how often the leader re-examines waiting jobs without an
	// event, for the starvation guard. If zero, 2s.
	TickInterval time.Duration
}

// Deps are the scheduler's connections, made by the caller.
type Deps struct {
	DB     *mongo.Database     // required
	JS     jetstream.JetStream // required
	Outbox *outbox.Outbox      // required: job changes are stored with their events
	// Registerer receives the metrics; nil registers them nowhere.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Lookup finds the active jobs by index on a store that cannot use one
	// for the filter (the embedded FerretDB); nil: the filter goes to the
	// store (MongoDB).
	Lookup indexed.Lookup
}

// Scheduler is a prepared scheduler.
type Scheduler struct {
	cfg    Config
	deps   Deps
	log    *slog.Logger
	jobs   *mongo.Collection
	active *indexed.Reader // the active jobs, by index: the resync's read
	// finished reads the last finished jobs of a queue, by index (estimates).
	finished *indexed.Reader
	record   *jobdoc.Store // the one loop that writes jobs
	queues   *mongo.Collection
	ledger   *lease.Store
	elector  *elect.Elector
	metrics  *metrics

	prepareMu sync.Mutex // held while the history's indexes are prepared
	prepared  bool       // they are (pending.go)

	leading   atomic.Bool
	takeovers atomic.Int64 // leaderships that got past their first resync (leadbackoff.go)
	consuming atomic.Bool
	epoch     atomic.Int64
}

// New prepares a scheduler: the lease ledger and the election bucket exist
// when it returns.
func New(ctx context.Context, cfg Config, deps Deps) (*Scheduler, error) {
	if deps.DB == nil || deps.JS == nil || deps.Outbox == nil {
		return nil, errors.New("scheduler: DB, JS and Outbox are required")
	}
	if cfg.InstanceID == "" {
		host, _ := os.Hostname()
		cfg.InstanceID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), events.NewID("")[20:])
	}
	if cfg.Durable == "" {
		cfg.Durable = "rm-scheduler"
	}
	if cfg.ResyncInterval == 0 {
		cfg.ResyncInterval = 30 * time.Second
	}
	if cfg.TickInterval == 0 {
		cfg.TickInterval = 2 * time.Second
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	s := &Scheduler{
		cfg: cfg, deps: deps, log: deps.Logger.With("scheduler", cfg.InstanceID),
		jobs: deps.DB.Collection(JobsCollection), queues: deps.DB.Collection(QueuesCollection),
		ledger: lease.New(deps.DB),
	}
	s.active = &indexed.Reader{Coll: s.jobs, Lookup: deps.Lookup, Exclude: []string{"runtime", "_outbox"}}
	s.finished = &indexed.Reader{Coll: s.jobs, Lookup: deps.Lookup, Exclude: []string{"runtime", "_outbox", "conditions"}}
	// A job the scheduler admits it has mostly written itself before (the
	// wait it recorded): the cache saves the read of it on the hand-over's
	// path. It hears every job event (receive forgets what they outdate)
	// and is cleared at each leadership and resync; a write from a job the
	// cache has stale fails on its version and is retried on the stored one.
	s.record = jobdoc.New(deps.DB, deps.Outbox, jobdoc.Scheduler, Source, jobdoc.WithAttempts(10), jobdoc.WithClock(deps.Now),
		jobdoc.WithCache())
	if err := s.ledger.Ensure(ctx); err != nil {
		return nil, err
	}
	if cfg.ElectionBucket == "" {
		cfg.ElectionBucket = "rm_scheduler"
	}
	el, err := elect.New(ctx, deps.JS, elect.Config{
		Bucket: cfg.ElectionBucket, TTL: cfg.LeaderTTL, Renew: cfg.RenewInterval, ID: cfg.InstanceID,
	}, s.log)
	if err != nil {
		return nil, err
	}
	s.elector = el
	if s.metrics, err = newMetrics(deps.Registerer); err != nil {
		return nil, err
	}
	return s, nil
}

// Run prepares a scheduler and runs it until ctx ends.
func Run(ctx context.Context, cfg Config, deps Deps) error {
	s, err := New(ctx, cfg, deps)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// Run campaigns for leadership and schedules while it leads, until ctx ends.
// Losing leadership (the key taken or left unrenewed for TTL−Renew, or a newer
// epoch on the ledger) stops scheduling at once; the scheduler then stands by
// and campaigns again.
func (s *Scheduler) Run(ctx context.Context) error {
	renew := s.cfg.RenewInterval
	if renew == 0 {
		renew = time.Second
	}
	takeoverWaits := backoff.Doubling{Min: leadBackoffMin, Max: leadBackoffMax}
	go s.prepareHistoryIndexes(ctx) // while standing by: a takeover need not wait for it
	for {
		rev, err := s.elector.Campaign(ctx)
		if err != nil {
			return nil // ctx ended
		}
		epoch := int64(rev)
		s.log.Info("elected leader", "epoch", epoch)
		takeovers := s.takeovers.Load()
		lctx, cancel := context.WithCancel(ctx)
		held, led := make(chan error, 1), make(chan error, 1)
		go func() { held <- s.elector.Hold(lctx, rev) }()
		go func() { led <- s.lead(lctx, epoch) }()
		select {
		case err = <-held:
			// Lost: stop at once, before the last writes in flight end.
			s.leading.Store(false)
			cancel()
			<-led
		case err = <-led:
			cancel()
			<-held // resigns the key, so that a standby takes over at once
		}
		s.leading.Store(false)
		s.metrics.leader.Set(0)
		// Only the leader reports the queues: a standby's last figures
		// would be counted twice beside the new leader's, and never change.
		s.metrics.pendingJobs.Reset()
		s.metrics.allocated.Reset()
		if ctx.Err() != nil {
			s.log.Info("scheduler stopped", "epoch", epoch)
			return nil
		}
		// Let another candidate win what this one just lost to a fault, and
		// after failed takeovers wait longer (leadbackoff.go).
		wait := campaignWait(&takeoverWaits, s.takeovers.Load() != takeovers, err, renew)
		s.log.Warn("stepped down", "epoch", epoch, "err", err, "campaign_in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// Leading reports whether this scheduler is the active one.
func (s *Scheduler) Leading() bool { return s.leading.Load() }

// Epoch is the epoch of the current or last leadership, 0 before any.
func (s *Scheduler) Epoch() int64 { return s.epoch.Load() }

// Ready reports whether this scheduler leads and its event consumer is
// attached: it exists on the stream and has a pull request waiting or a
// message in hand.
func (s *Scheduler) Ready(ctx context.Context) error {
	if !s.leading.Load() {
		return errors.New("standing by: another scheduler leads, or the election is in progress")
	}
	if !s.consuming.Load() {
		return errors.New("event consumer not running")
	}
	return events.ConsumerAttached(ctx, s.deps.JS, s.cfg.Durable)
}
