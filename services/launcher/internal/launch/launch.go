// Package launch is the launcher's service logic: it turns admitted jobs,
// cancel and cleanup requests, post controller requests and deployments
// into driver calls, and reports what the drivers see back into MongoDB
// (each change with its event, through the outbox).
//
// It is level-triggered: events and driver status changes only queue the
// id of a job or deployment; a worker then reads the document (MongoDB is
// the source of truth) and what the drivers report (their cache in pool),
// and does what is missing. A duplicate or late trigger finds nothing to
// do. Every job write is conditioned on the version read, so the launcher,
// the scheduler and the API never overwrite each other; a lost race is
// retried on the new version.
//
// It imports the driver contract and pkg/events; never another service.
package launch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/avxrm/rm/pkg/events"
	storebackoff "github.com/avxrm/rm/pkg/events/backoff"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"k8s.io/client-go/util/workqueue"
)

// Source is the CloudEvents source of the launcher's events.
const Source = "/rm/launcher"

// Collections the launcher reads; it writes jobs and deployments.
const (
	JobsCollection        = "jobs"
	QueuesCollection      = "queues"
	PluginsCollection     = "plugins"
	DeploymentsCollection = "deployments"
)

// Config of the service. The zero value works but for DataDir, which the
// local driver needs.
type Config struct {
	// Durable names the JetStream consumer. If empty, "rm-launcher".
	Durable string
	// DataDir is given to drivers that keep files (local: <DataDir>/local).
	DataDir string
	// DefaultDriver is the driver type of queues without a plugin when no
	// plugin is the default. If empty, "local".
	DefaultDriver string
	// DefaultDriverConfig is that driver's config, as a plugin's of its
	// type. If empty, the type's zero config (which the kubernetes driver
	// refuses: it needs in_cluster or a kubeconfig).
	DefaultDriverConfig json.RawMessage
	// APIURL is given to instances as RM_API_URL (where workers upload
	// artifacts). If empty, instances get no RM_API_URL.
	APIURL string
	// Workers is how many jobs and deployments are reconciled at once. If
	// zero, 8.
	Workers int
	// ResyncInterval is how often every active job and deployment is
	// reconciled without a trigger, a safety net. If zero, 30s.
	ResyncInterval time.Duration
	// StartParallelism bounds the concurrent driver calls of one job. If
	// zero, 16.
	StartParallelism int
	// RetryStopTimeout is how long a retry waits, from the failure, for the
	// drivers to report the failed attempt's instances ended; those still
	// live then are treated as lost and the retry goes on. If zero, 2m.
	RetryStopTimeout time.Duration

	// bounds, if set, replace the bounds of the driver calls (tests).
	bounds *callBounds
}

// Deps are the service's connections.
type Deps struct {
	DB         *mongo.Database
	JS         jetstream.JetStream
	Outbox     *outbox.Outbox
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	Drivers    map[string]driver.Factory
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Lookup finds the active jobs by index on a store that cannot use one
	// for the filter (the embedded FerretDB); nil: the filter goes to the
	// store (MongoDB).
	Lookup indexed.Lookup
}

// Service is a prepared launcher.
type Service struct {
	cfg  Config
	deps Deps
	log  *slog.Logger

	jobs, queues, plugins, deployments *mongo.Collection
	active                             *indexed.Reader // the jobs the resync queues, by index

	record *jobdoc.Store // the one loop that writes jobs
	pool   *pool
	// defaultPlugin stands for the launcher's own default driver.
	defaultPlugin plugin
	// wq hands keys ("job/<id>", "dep/<id>") to workers, each key to one
	// worker at a time, coalescing duplicates (reconciliation reads the
	// state fresh, so coalescing loses nothing), with per-key backoff.
	wq      workqueue.TypedRateLimitingInterface[string]
	metrics *metrics

	consuming atomic.Bool

	mu     sync.Mutex
	qcache map[string]cachedQ  // queues by id and name, briefly
	dstate map[string]*depSlot // deployment slots' restart state, by slot id

	retries startRetries // start retry back-off per job (attempts.go)

	making sync.WaitGroup // the resync's tries to make drivers (makeDriver)

	// deleted holds, by id, the jobs whose rm.job.deleted event came and
	// whose removal from the drivers is still to be done (syncJob): the
	// job as it was, which names its queues once the store no longer does.
	deleted sync.Map
}

type cachedQ struct {
	q          *events.Queue
	at         time.Time // when the read began
	refreshing bool      // a background read is under way (queue)
}

// New prepares a service.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.DB == nil || deps.JS == nil || deps.Outbox == nil {
		return nil, errors.New("launcher: DB, JS and Outbox are required")
	}
	if len(deps.Drivers) == 0 {
		return nil, errors.New("launcher: no driver factories")
	}
	if cfg.Durable == "" {
		cfg.Durable = "rm-launcher"
	}
	if cfg.DefaultDriver == "" {
		cfg.DefaultDriver = driver.TypeLocal
	}
	if deps.Drivers[cfg.DefaultDriver] == nil {
		return nil, fmt.Errorf("launcher: default driver %q is not registered", cfg.DefaultDriver)
	}
	var defaultConfig map[string]any
	if len(cfg.DefaultDriverConfig) > 0 {
		if err := driver.ValidateConfig(cfg.DefaultDriver, cfg.DefaultDriverConfig); err != nil {
			return nil, fmt.Errorf("launcher: config of the default %s driver: %w", cfg.DefaultDriver, err)
		}
		if err := json.Unmarshal(cfg.DefaultDriverConfig, &defaultConfig); err != nil {
			return nil, fmt.Errorf("launcher: config of the default %s driver: %w", cfg.DefaultDriver, err)
		}
	}
	if cfg.Workers == 0 {
		cfg.Workers = 8
	}
	if cfg.ResyncInterval == 0 {
		cfg.ResyncInterval = 30 * time.Second
	}
	if cfg.StartParallelism == 0 {
		cfg.StartParallelism = 16
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	s := &Service{
		cfg: cfg, deps: deps, log: deps.Logger,
		jobs: deps.DB.Collection(JobsCollection), queues: deps.DB.Collection(QueuesCollection),
		plugins: deps.DB.Collection(PluginsCollection), deployments: deps.DB.Collection(DeploymentsCollection),
		active: &indexed.Reader{Coll: deps.DB.Collection(JobsCollection), Lookup: deps.Lookup},
		wq:     workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 30*time.Second)),
		qcache: map[string]cachedQ{}, dstate: map[string]*depSlot{},
		defaultPlugin: plugin{ID: defaultPluginID, Type: cfg.DefaultDriver, Config: defaultConfig},
	}
	if err := driver.ValidateConfig(cfg.DefaultDriver, nil); defaultConfig == nil && err != nil {
		s.log.Warn("the default driver has no config and cannot run without one: jobs on a queue without a plugin fail while no plugin is the default",
			"type", cfg.DefaultDriver, "err", err)
	}
	// One attempt: a lost race is a requeue, so that the next round
	// observes the drivers again before starting anything.
	s.record = jobdoc.New(deps.DB, deps.Outbox, jobdoc.Launcher, Source, jobdoc.WithAttempts(1), jobdoc.WithClock(deps.Now),
		// The launcher reconciles a job about six times; most would read back
		// what it had just written (receive and resync keep the cache honest).
		jobdoc.WithCache())
	s.pool = newPool(deps.Drivers, driver.Options{DataDir: cfg.DataDir, Logger: deps.Logger}, deps.Logger, s.changed)
	if cfg.bounds != nil {
		s.pool.bounds = *cfg.bounds
	}
	s.pool.installation = (&installation{coll: deps.DB.Collection(InstallationCollection)}).get
	var err error
	if s.metrics, err = newMetrics(deps.Registerer, s.pool); err != nil {
		return nil, err
	}
	// The launcher's job writes carry events; the relay publishes those a
	// crash left unsent (registering twice is harmless).
	deps.Outbox.Register(s.jobs, s.deployments)
	return s, nil
}

// Key prefixes of the work queue.
const (
	jobKey = "job/"
	depKey = "dep/"
)

// statusBatch is how long a driver's status change waits before its job is
// reconciled, so that the instances of a job that start or end together are
// recorded in one write rather than one each: a job write that records
// instances is two store writes or more (each changed chunk of 1,000
// instances, then the job), serialized on the embedded store.
const statusBatch = 50 * time.Millisecond

// changed is called by the pool for every status a driver reports. A job
// whose instances have all ended is reconciled at once: no other status of
// it can join the write, and waiting would delay the release of its
// capacity, i.e. the hand-over to the next job, by statusBatch.
func (s *Service) changed(ref driver.Ref) {
	if ref.Role == driver.RoleReplica {
		if dep, _, ok := splitSlot(ref.JobID); ok {
			s.wq.AddAfter(depKey+dep, statusBatch)
		}
		return
	}
	if s.pool.settled(ref.JobID) {
		s.wq.Add(jobKey + ref.JobID)
		return
	}
	s.wq.AddAfter(jobKey+ref.JobID, statusBatch)
}

// Run reconciles until ctx ends. Drivers are closed on return; the
// instances they run keep running for the next launcher to re-adopt.
func (s *Service) Run(ctx context.Context) error {
	stopQueue := context.AfterFunc(ctx, s.wq.ShutDown)
	defer stopQueue()
	defer s.pool.close()
	defer s.making.Wait()

	consumed := make(chan error, 1)
	cctx, stopConsumer := context.WithCancel(ctx)
	defer stopConsumer()
	go func() {
		s.consuming.Store(true)
		defer s.consuming.Store(false)
		consumed <- events.Consume(cctx, s.deps.JS, events.ConsumerSpec{
			Durable:       s.cfg.Durable,
			Filters:       []string{events.FilterSubject(events.KindJob, "", ""), events.FilterSubject(events.KindDeployment, "", "")},
			MaxAckPending: 256,
			DeliverNew:    true,
		}, s.receive, s.log)
	}()

	stopLogs, err := s.serveLogs(ctx)
	if err != nil {
		return err
	}
	defer stopLogs()

	// Every driver in use lists what existed before this start into the
	// cache before anything is started on it; the workers do not wait for
	// the drivers of other plugins (makeDriver).
	if err := s.resync(ctx); err != nil {
		s.log.Warn("initial resync failed; retrying at the next one", "err", err)
	}

	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.work(ctx)
		}()
	}
	defer wg.Wait()

	t := time.NewTicker(s.cfg.ResyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-consumed:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("launcher event consumer stopped: %w", err)
		case <-t.C:
			if err := s.resync(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("resync failed", "err", err)
			}
		}
	}
}

// receive is the handler of the launcher's consumer of job and deployment
// events. Events are triggers: it queues the resource's id for
// reconciliation, which reads the document fresh.
//
// Ack policy: always Ack at once (malformed messages are Termed and
// dead-lettered by events.Consume before reaching here). Nothing is lost if
// the process dies before the reconciliation: at start the launcher
// reconciles every job and deployment that needs it, from MongoDB and from
// what the drivers list.
func (s *Service) receive(_ context.Context, e events.Event) error {
	switch e.Kind() {
	case events.KindJob:
		// Before the job is queued: its reconciliation must not start from
		// a cached job older than the change this event announces.
		var m events.Meta
		if err := json.Unmarshal(e.Data, &m); err != nil || m.Version == 0 {
			m.Version = math.MaxInt64 // unknown: forget whatever is cached
		}
		s.record.Forget(e.ResourceID, m.Version)
		if notForLauncher[e.Type] {
			return nil
		}
		if e.Type == events.TypeJobDeleted {
			var j events.Job
			if err := json.Unmarshal(e.Data, &j); err == nil && j.ID == e.ResourceID {
				s.deleted.Store(j.ID, &j)
			}
		}
		s.wq.Add(jobKey + e.ResourceID)
	case events.KindDeployment:
		s.wq.Add(depKey + e.ResourceID)
	}
	return nil
}

// notForLauncher are the job events that announce a job not admitted: it
// has no instance, so reconciling it reads the job and does nothing. Two of
// the five events of every job; each cost a read of the store. Whatever
// happens to such a job next that the launcher must act on (admitted,
// cancelled or cleaned after running, deleted) comes with an event of its own.
var notForLauncher = map[string]bool{events.TypeJobSubmitted: true, events.TypeJobPending: true}

// Ready reports whether the event consumer is attached.
func (s *Service) Ready(ctx context.Context) error {
	if !s.consuming.Load() {
		return errors.New("launcher event consumer not running")
	}
	return events.ConsumerAttached(ctx, s.deps.JS, s.cfg.Durable)
}

// work reconciles keys until the queue closes.
func (s *Service) work(ctx context.Context) {
	for {
		key, shutdown := s.wq.Get()
		if shutdown {
			return
		}
		s.process(ctx, key)
		s.wq.Done(key)
	}
}

// unreachableRetry is the wait before a reconciliation that failed to
// reach the store is tried again.
const unreachableRetry = 250 * time.Millisecond

// errConflict: the document changed between read and write; reconcile again.
var errConflict = errors.New("launch: document changed concurrently")

func (s *Service) process(ctx context.Context, key string) {
	var after time.Duration
	var err error
	switch {
	case strings.HasPrefix(key, jobKey):
		after, err = s.syncJob(ctx, strings.TrimPrefix(key, jobKey))
	case strings.HasPrefix(key, depKey):
		after, err = s.syncDeployment(ctx, strings.TrimPrefix(key, depKey))
	}
	if ctx.Err() != nil {
		return
	}
	var pending *tryUnderWay
	switch {
	case errors.Is(err, errConflict):
		s.wq.Add(key)
	case errors.As(err, &pending):
		// Another key's try to make a driver is under way: this one comes
		// back when it ends, and holds no worker meanwhile.
		go func() {
			select {
			case <-pending.done:
				s.wq.Add(key)
			case <-ctx.Done():
			}
		}()
	case storebackoff.Unreachable(err):
		// The store is away (restarting): the next try waits in the
		// driver's server selection until it is back, so trying again soon
		// costs nothing, and a back-off grown while it was away would delay
		// this job's write for as long again after its return.
		s.log.Warn("reconcile failed, store unreachable; retrying", "key", key, "err", err)
		s.wq.Forget(key)
		s.wq.AddAfter(key, unreachableRetry)
	case err != nil:
		s.log.Warn("reconcile failed; retrying", "key", key, "failures", s.wq.NumRequeues(key)+1, "err", err)
		s.wq.AddRateLimited(key) // 100ms, doubling, at most 30s
	default:
		s.wq.Forget(key)
		if after > 0 {
			s.wq.AddAfter(key, after)
		}
	}
}

// resync makes every driver in use that does not exist (without waiting
// for it; once made it has listed its instances and queued them), then
// queues every job and deployment that may need anything:
// active jobs, jobs with a cleanup or post controller to carry out, every
// job or deployment a driver knows an instance of, and every deployment.
func (s *Service) resync(ctx context.Context) error {
	// The jobs it queues are read from the store, not the cache: a resync
	// is the net under lost triggers, so it must see what is stored.
	s.record.ForgetAll()
	var errs []error
	plugins, err := s.pluginsInUse(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for _, p := range plugins {
		s.makeDriver(ctx, p)
	}
	ids, err := s.active.IDs(ctx, indexed.Filter{
		All: []indexed.Cond{outbox.NotDeletedCond()},
		Any: []indexed.Clause{
			{jobdoc.ActiveStatus(events.JobAdmitted, events.JobRunning)},
			jobdoc.CleanupPending(),
			jobdoc.PostControllerStatus(pcAdmitted, pcRunning),
		},
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("list active jobs: %w", err))
	}
	for _, id := range ids {
		s.wq.Add(jobKey + id)
	}
	for _, id := range s.pool.jobIDs() {
		if dep, _, ok := splitSlot(id); ok {
			s.wq.Add(depKey + dep)
		} else {
			s.wq.Add(jobKey + id)
		}
	}
	deps, err := indexed.FindIDs(ctx, s.deployments, bson.D{outbox.NotDeleted()}, nil)
	if err != nil {
		errs = append(errs, fmt.Errorf("list deployments: %w", err))
	}
	for _, id := range deps {
		s.wq.Add(depKey + id)
	}
	return errors.Join(errs...)
}

// makeDriver makes the driver of p, unless it exists, without waiting for
// it: a runtime that does not answer takes a try 10 s (docker), and the
// launcher's first resync, which made the drivers one after the other
// before its workers ran, delayed every job by as much per such plugin.
// The instances a driver lists once made are queued then (pool.make), so
// nothing that exists is missed; a job on the plugin meanwhile waits for
// the try (tryUnderWay).
func (s *Service) makeDriver(ctx context.Context, p plugin) {
	if s.pool.made(p.ID) {
		return
	}
	s.making.Add(1)
	go func() {
		defer s.making.Done()
		var pending *tryUnderWay
		if _, err := s.pool.get(ctx, p); err != nil && !errors.As(err, &pending) && ctx.Err() == nil {
			// A try under way reports its own failure.
			s.log.Warn("make driver failed; trying again at the next resync or job", "plugin", p.ID, "err", err)
		}
	}()
}

// pluginsInUse returns the plugins of every queue, the default plugin and
// the launcher's default driver: what may have instances.
func (s *Service) pluginsInUse(ctx context.Context) ([]plugin, error) {
	var qs []struct {
		PluginID string `bson:"plugin_id"`
	}
	cur, err := s.queues.Find(ctx, bson.D{outbox.NotDeleted()}, options.Find().SetProjection(bson.D{{Key: "plugin_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	if err := cur.All(ctx, &qs); err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	seen := map[string]bool{}
	var out []plugin
	var errs []error
	add := func(ref string) {
		p, err := s.resolvePlugin(ctx, ref)
		if err != nil {
			errs = append(errs, err)
			return
		}
		if !seen[p.ID] {
			seen[p.ID] = true
			out = append(out, p)
		}
	}
	add("")
	for _, q := range qs {
		add(q.PluginID)
	}
	if !seen[defaultPluginID] {
		seen[defaultPluginID] = true
		out = append(out, s.defaultPlugin)
	}
	return out, errors.Join(errs...)
}

// errPermanent marks a failure retrying cannot cure (a missing plugin, an
// invalid spec): the job fails with it.
type errPermanent struct{ error }

func (e errPermanent) Unwrap() error { return e.error }

// resolvePlugin returns the plugin a queue names (by id or name), else the
// default plugin, else the launcher's default driver. Read afresh each time,
// unlike queues: a plugin registered or made the default just before a job
// is submitted must run that job (TestBigJob).
func (s *Service) resolvePlugin(ctx context.Context, ref string) (plugin, error) {
	var p plugin
	var err error
	if ref != "" {
		err = findByIDOrName(ctx, s.plugins, ref, &p)
	} else {
		err = s.plugins.FindOne(ctx, bson.D{{Key: "is_default", Value: true}, outbox.NotDeleted()}).Decode(&p)
	}
	switch {
	case errors.Is(err, mongo.ErrNoDocuments) && ref == "":
		return s.defaultPlugin, nil
	case errors.Is(err, mongo.ErrNoDocuments):
		return p, errPermanent{fmt.Errorf("plugin %q does not exist", ref)}
	case err != nil:
		return p, fmt.Errorf("read plugin %q: %w", ref, err)
	}
	return p, nil
}

// driverFor returns the driver of queue q's plugin.
func (s *Service) driverFor(ctx context.Context, q *events.Queue) (*pooled, error) {
	p, err := s.resolvePlugin(ctx, q.PluginID)
	if err != nil {
		return nil, err
	}
	pd, err := s.pool.get(ctx, p)
	if errors.Is(err, errNoFactory) || errors.Is(err, driver.ErrInvalidConfig) {
		return nil, errPermanent{err}
	}
	return pd, err
}

// queueTTL is how long a queue read is used: queue changes reach instances
// started that much later at worst. A read older than queueRefresh is still
// used, but read again in the background, so that a queue in steady use is
// never read on a job's way: every job reads its queue and the
// controllers' (jobDrivers, limits). A hand-over that came more than
// queueTTL after the last read waited 1–3 ms on the embedded store for the
// job's queue between the holder's end and its final write, and for both
// queues again at the next job's start.
const (
	queueTTL     = 2 * time.Second
	queueRefresh = queueTTL / 2
)

// queueRefreshTimeout bounds a background read of a queue.
const queueRefreshTimeout = 10 * time.Second

// queue returns the queue with id or name ref.
func (s *Service) queue(ctx context.Context, ref string) (*events.Queue, error) {
	now := time.Now()
	s.mu.Lock()
	c, ok := s.qcache[ref]
	fresh := ok && now.Sub(c.at) < queueTTL
	if fresh && now.Sub(c.at) >= queueRefresh && !c.refreshing {
		c.refreshing = true
		s.qcache[ref] = c
		// Not cancelled with ctx, which may be a request's (logs.go).
		go func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), queueRefreshTimeout)
			defer cancel()
			if _, err := s.readQueue(rctx, ref); err != nil {
				s.log.Debug("background queue read failed", "queue", ref, "err", err)
			}
		}()
	}
	s.mu.Unlock()
	if fresh {
		return c.q, nil
	}
	return s.readQueue(ctx, ref)
}

// readQueue reads the queue with id or name ref into the cache. A queue
// that is gone leaves it.
func (s *Service) readQueue(ctx context.Context, ref string) (*events.Queue, error) {
	at := time.Now()
	var q events.Queue
	err := findByIDOrName(ctx, s.queues, ref, &q)
	s.mu.Lock()
	defer s.mu.Unlock()
	c, cached := s.qcache[ref]
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		if cached && !c.at.After(at) {
			delete(s.qcache, ref)
		}
		return nil, errPermanent{fmt.Errorf("queue %q does not exist", ref)}
	case err != nil:
		if cached {
			c.refreshing = false // the next use past queueRefresh tries again
			s.qcache[ref] = c
		}
		return nil, fmt.Errorf("read queue %q: %w", ref, err)
	}
	if !cached || !c.at.After(at) { // not over a read that began later
		s.qcache[ref] = cachedQ{q: &q, at: at}
	}
	return &q, nil
}

// findByIDOrName decodes into out the document of coll, not deleted, whose
// _id is ref, else the one whose name is ref. Two look-ups rather than one
// {$or: [...]}: the embedded store answers each of them from its index or
// in SQL, and the $or by reading every document of the collection.
func findByIDOrName(ctx context.Context, coll *mongo.Collection, ref string, out any) error {
	err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: ref}, outbox.NotDeleted()}).Decode(out)
	if errors.Is(err, mongo.ErrNoDocuments) {
		err = coll.FindOne(ctx, bson.D{{Key: "name", Value: ref}, outbox.NotDeleted()}).Decode(out)
	}
	return err
}

func (s *Service) now() time.Time { return s.deps.Now().UTC().Truncate(time.Millisecond) }
