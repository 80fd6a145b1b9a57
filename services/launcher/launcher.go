// Package launcher is the Resource Manager's launcher service: it runs the
// controller and workers of admitted jobs, post controllers and deployment
// replicas through the container runtime of each queue's plugin (drivers:
// local processes, simulated, Docker Engine, Kubernetes), watches them, and
// records what happens in the job (instances, running, succeeded, failed,
// cancelled, cleaned), each change with its event through the outbox.
// cmd/rm-launcher and the local all-in-one both call Run.
//
// The logic is in internal/launch; the drivers in internal/driver.
package launcher

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/elect"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/registry"
	"github.com/avxrm/rm/services/launcher/internal/launch"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Source is the CloudEvents source of the launcher's events.
const Source = launch.Source

// Config of the launcher. The zero value works, but for DataDir, which the
// local driver needs (it keeps its instances' files and logs there).
type Config struct {
	// DataDir is where drivers keep files: <DataDir>/local for the local
	// driver.
	DataDir string
	// DefaultDriver is the driver type of queues that have no plugin when no
	// plugin is the default. If empty, "local".
	DefaultDriver string
	// DefaultDriverConfig is its config, as a plugin's of that type (the
	// kubernetes driver needs one: {"in_cluster": true}). If empty, the
	// type's zero config.
	DefaultDriverConfig json.RawMessage
	// APIURL is given to every instance as RM_API_URL. If empty, none is.
	APIURL string
	// Durable names the JetStream consumer. If empty, "rm-launcher".
	Durable string
	// Workers is how many jobs and deployments are reconciled at once. If
	// zero, 8.
	Workers int
	// ResyncInterval is how often every active job and deployment is
	// reconciled without a trigger. If zero, 30s.
	ResyncInterval time.Duration

	// Elect makes this launcher one of several replicas: it launches only
	// while it leads the election in the NATS KV bucket ElectionBucket, so
	// two replicas never act on the same job; the others stand by. Off, the
	// launcher assumes it is the only one (the all-in-one).
	Elect bool
	// InstanceID names this replica in the election. If empty, host-pid-random.
	InstanceID string
	// ElectionBucket is the NATS KV bucket of the election. If empty, "rm_launcher".
	ElectionBucket string
	// LeaderTTL: a leader that has not renewed for this long is replaced. If
	// zero, 5s.
	LeaderTTL time.Duration
	// RenewInterval is how often the leader renews. If zero, 1s. Standbys
	// try to take over every 200ms, or this if shorter (elect.Config.Poll).
	RenewInterval time.Duration
}

// Factory builds a driver from a plugin's config.
type Factory = driver.Factory

// Drivers returns the factories of every driver: kubernetes, docker, local
// and simulated.
func Drivers() map[string]Factory { return registry.Factories() }

// Deps are the launcher's connections, made by the caller.
type Deps struct {
	DB     *mongo.Database     // required
	JS     jetstream.JetStream // required: job and deployment events, log requests
	Outbox *outbox.Outbox      // required: job changes are stored with their events
	// Registerer receives the metrics; nil registers them nowhere.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Drivers by plugin type. If nil, Drivers().
	Drivers map[string]Factory
	// Lookup finds the active jobs by index on a store that cannot use one
	// for the filter (the embedded FerretDB); nil: the filter goes to the
	// store (MongoDB).
	Lookup indexed.Lookup
}

// Launcher is a prepared launcher.
type Launcher struct {
	svc     *launch.Service
	cfg     Config
	js      jetstream.JetStream
	log     *slog.Logger
	leading atomic.Bool
}

// New prepares a launcher.
func New(cfg Config, deps Deps) (*Launcher, error) {
	if deps.Drivers == nil {
		deps.Drivers = Drivers()
	}
	svc, err := launch.New(launch.Config{
		Durable: cfg.Durable, DataDir: cfg.DataDir, DefaultDriver: cfg.DefaultDriver, DefaultDriverConfig: cfg.DefaultDriverConfig, APIURL: cfg.APIURL,
		Workers: cfg.Workers, ResyncInterval: cfg.ResyncInterval,
	}, launch.Deps{
		DB: deps.DB, JS: deps.JS, Outbox: deps.Outbox, Registerer: deps.Registerer, Logger: deps.Logger, Drivers: deps.Drivers,
		Lookup: deps.Lookup,
	})
	if err != nil {
		return nil, err
	}
	log := deps.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.Elect {
		if cfg.InstanceID == "" {
			host, _ := os.Hostname()
			cfg.InstanceID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), events.NewID("")[20:])
		}
		if cfg.ElectionBucket == "" {
			cfg.ElectionBucket = "rm_launcher"
		}
		log = log.With("launcher", cfg.InstanceID)
	}
	l := &Launcher{svc: svc, cfg: cfg, js: deps.JS, log: log}
	if deps.Registerer != nil {
		leader := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rm_launcher_leader", Help: "1 while this launcher launches: it leads the election, or runs without one.",
		}, func() float64 {
			if l.Leading() {
				return 1
			}
			return 0
		})
		if err := deps.Registerer.Register(leader); err != nil {
			return nil, fmt.Errorf("register launcher metrics: %w", err)
		}
	}
	return l, nil
}

// Run launches and watches until ctx ends. Instances keep running when it
// returns; the next launcher on the same data re-adopts them.
//
// An elected launcher first waits to lead, then launches until ctx ends or
// it loses the lead: then it stops launching at once and returns an error
// wrapping elect.ErrLost, after which the process should exit (a launcher
// runs once). The next leader re-adopts the instances, as after a restart.
func (l *Launcher) Run(ctx context.Context) error {
	if !l.cfg.Elect {
		return l.svc.Run(ctx)
	}
	el, err := elect.New(ctx, l.js, elect.Config{
		Bucket: l.cfg.ElectionBucket, TTL: l.cfg.LeaderTTL, Renew: l.cfg.RenewInterval, ID: l.cfg.InstanceID,
	}, l.log)
	if err != nil {
		return err
	}
	return el.Lead(ctx, func(ctx context.Context, epoch uint64) error {
		l.log.Info("elected leader: launching", "epoch", epoch)
		l.leading.Store(true)
		defer l.leading.Store(false)
		return l.svc.Run(ctx)
	})
}

// Leading reports whether this launcher launches: always without an
// election, else while it leads.
func (l *Launcher) Leading() bool { return !l.cfg.Elect || l.leading.Load() }

// Ready reports whether the launcher's event consumer is attached. A standby
// replica is ready too: waiting is its job.
func (l *Launcher) Ready(ctx context.Context) error {
	if !l.Leading() {
		return nil
	}
	return l.svc.Ready(ctx)
}

// Run prepares a launcher and runs it until ctx ends.
func Run(ctx context.Context, cfg Config, deps Deps) error {
	l, err := New(cfg, deps)
	if err != nil {
		return err
	}
	return l.Run(ctx)
}
