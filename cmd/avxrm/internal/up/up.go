// Package up is the local all-in-one: the four services in one process on an
// embedded NATS server (JetStream on disk, fsync on every write) and an
// embedded MongoDB-wire store (FerretDB on SQLite), data under one directory.
// Setting a MongoDB URI or NATS URL uses that server instead of the embedded one.
package up

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
	"github.com/avxrm/rm/pkg/embedded/natsembed"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/api"
	"github.com/avxrm/rm/services/launcher"
	export "github.com/avxrm/rm/services/scenario-export"
	"github.com/avxrm/rm/services/scheduler"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// System is a running all-in-one.
type System struct {
	HTTPAddr string // where the API listens
	MongoURI string
	NATSURL  string
	DB       *mongo.Database
	JS       jetstream.JetStream
	// Scheduler is the all-in-one's scheduler (it leads unless another
	// scheduler on the same NATS and MongoDB does).
	Scheduler *scheduler.Scheduler
	// Launcher is the all-in-one's launcher (nil when Config.DisableLauncher).
	Launcher *launcher.Launcher

	log     *slog.Logger
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	errOnce sync.Once
	err     error
	done    chan struct{}
	closers []func()
}

// Start brings the system up and returns once the API accepts requests.
// It runs until ctx ends or Stop is called; Wait returns its first error.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (sys *System, err error) {
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &System{log: log, cancel: cancel, done: make(chan struct{})}
	defer func() {
		if err != nil {
			cancel()
			s.closeAll()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}

	var ferret *ferretembed.Server
	s.MongoURI = cfg.MongoURI
	if s.MongoURI == "" {
		ferret, err = ferretembed.Start(ctx, ferretembed.Config{Addr: cfg.MongoAddr, Dir: filepath.Join(cfg.DataDir, "ferretdb"), Logger: log.With("component", "ferretdb")})
		if err != nil {
			return nil, err
		}
		s.closers = append(s.closers, ferret.Close)
		s.MongoURI = ferret.URI()
		log.Info("embedded MongoDB-wire store (FerretDB/SQLite) up", "uri", s.MongoURI)
	}
	s.NATSURL = cfg.NATSURL
	if s.NATSURL == "" {
		ns, err := natsembed.Start(natsembed.Config{Addr: cfg.NATSAddr, StoreDir: filepath.Join(cfg.DataDir, "nats"), Logger: log.With("component", "nats")})
		if err != nil {
			return nil, err
		}
		s.closers = append(s.closers, ns.Shutdown)
		s.NATSURL = ns.ClientURL()
		log.Info("embedded NATS JetStream up", "url", s.NATSURL)
	}

	mc, err := mongo.Connect(options.Client().ApplyURI(s.MongoURI).SetTimeout(30 * time.Second))
	if err != nil {
		return nil, fmt.Errorf("connect mongodb: %w", err)
	}
	s.closers = append(s.closers, func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = mc.Disconnect(c)
	})
	s.DB = mc.Database(cfg.MongoDB)

	nc, err := nats.Connect(s.NATSURL, nats.Name("avxrm"), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("connect nats: %w", err)
	}
	s.closers = append(s.closers, func() { _ = nc.Drain(); nc.Close() })
	if s.JS, err = jetstream.New(nc); err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if err := events.EnsureStreams(ctx, s.JS, cfg.EventsMaxAge, 1); err != nil {
		return nil, err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(outbox.Collectors()...)

	ob := outbox.New(events.NewPublisher(s.JS), log.With("component", "outbox"))
	// The scheduler is prepared before the API so that its collections get
	// the _id index below, and so that /readyz can ask it.
	sched, err := scheduler.New(ctx, scheduler.Config{}, scheduler.Deps{
		DB: s.DB, JS: s.JS, Outbox: ob, Registerer: reg, Logger: log.With("service", "scheduler"),
	})
	if err != nil {
		return nil, err
	}
	s.Scheduler = sched
	// Likewise the export service: its collections (artifacts, exports, their
	// GridFS buckets) exist before the _id indexes are made below.
	exporter, err := export.New(ctx, export.Config{}, export.Deps{
		DB: s.DB, JS: s.JS, Outbox: ob, Registerer: reg, Logger: log.With("service", "scenario-export"),
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("api listen: %w", err)
	}
	s.HTTPAddr = ln.Addr().String()
	ready := []api.ReadyCheck{{Name: "nats", Check: func(context.Context) error {
		if !nc.IsConnected() {
			return errors.New("not connected")
		}
		return nil
	}}, {Name: "scheduler", Check: sched.Ready}}
	if !cfg.DisableLauncher {
		// Instances run as local processes unless a plugin says otherwise;
		// their files and logs are under <data dir>/launcher.
		s.Launcher, err = launcher.New(launcher.Config{
			DataDir: filepath.Join(cfg.DataDir, "launcher"), DefaultDriver: "local", APIURL: "http://" + s.HTTPAddr,
		}, launcher.Deps{DB: s.DB, JS: s.JS, Outbox: ob, Registerer: reg, Logger: log.With("service", "launcher")})
		if err != nil {
			_ = ln.Close()
			return nil, err
		}
		ready = append(ready, api.ReadyCheck{Name: "launcher", Check: s.Launcher.Ready})
	}
	ready = append(ready, api.ReadyCheck{Name: "scenario-export", Check: exporter.Ready})
	apiSvc, err := api.New(ctx, api.Config{ArtifactUploadLimit: cfg.ArtifactMax, ExportTTL: cfg.ExportTTL}, api.Deps{
		DB: s.DB, Outbox: ob, Gatherer: reg, Registerer: reg, Logger: log.With("service", "api"), Listener: ln, JS: s.JS,
		Ready: ready,
	})
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	if ferret != nil {
		// FerretDB/SQLite filters updates on an expression its own _id index
		// does not match; without this every update scans its collection.
		names, err := s.DB.ListCollectionNames(ctx, map[string]any{})
		if err != nil {
			return nil, fmt.Errorf("list collections: %w", err)
		}
		for _, c := range names {
			if err := ferret.EnsureIDIndex(ctx, cfg.MongoDB, c); err != nil {
				return nil, err
			}
		}
	}

	s.goRun("outbox relay", func(ctx context.Context) error { ob.Run(ctx, cfg.OutboxInterval); return nil }, ctx)
	s.goRun("api", apiSvc.Serve, ctx)
	s.goRun("scheduler", sched.Run, ctx)
	s.goRun("scenario-export", exporter.Run, ctx)
	if s.Launcher != nil {
		s.goRun("launcher", s.Launcher.Run, ctx)
		// Its consumer attaches within moments; waiting for it (bounded)
		// means /readyz is green once Start returns.
		for deadline := time.Now().Add(10 * time.Second); s.Launcher.Ready(ctx) != nil && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
	}
	go func() { s.wg.Wait(); s.closeAll(); close(s.done) }()
	log.Info("resource manager up", "api", "http://"+s.HTTPAddr, "data_dir", cfg.DataDir)
	return s, nil
}

// goRun runs a component; the first one to fail stops the whole system.
func (s *System) goRun(name string, run func(context.Context) error, ctx context.Context) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := run(ctx); err != nil && ctx.Err() == nil {
			s.errOnce.Do(func() { s.err = fmt.Errorf("%s: %w", name, err) })
			s.log.Error("component failed; stopping", "component", name, "err", err)
			s.cancel()
		}
	}()
}

// closeAll stops the connections and embedded servers, newest first.
func (s *System) closeAll() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// Stop begins a clean stop.
func (s *System) Stop() { s.cancel() }

// Wait blocks until the system has stopped and returns why, nil after Stop.
func (s *System) Wait() error {
	<-s.done
	return s.err
}

// Run starts the system and blocks until ctx ends, then stops it cleanly.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	s, err := Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	return s.Wait()
}

// NewLogger returns text logs on a terminal and JSON otherwise, unless format says.
func NewLogger(format, level string, w *os.File) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(strings.ToUpper(level)))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "" {
		format = "json"
		if fi, err := w.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
