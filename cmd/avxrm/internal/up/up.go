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
	"syscall"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/devidp"
	"github.com/avxrm/rm/pkg/embedded/dirlock"
	"github.com/avxrm/rm/pkg/embedded/ferretembed"
	"github.com/avxrm/rm/pkg/embedded/natsembed"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/buildinfo"
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
	// DevIdP is the development identity provider (nil unless Config.DevIdP).
	DevIdP *devidp.IdP

	store   *ferretembed.Server // nil with an external MongoDB
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
	unlock, err := dirlock.Lock(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	s.closers = append(s.closers, unlock) // the last to run: after the stores have stopped
	natsUsers, natsOpts, err := s.secure(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	ferret, err := s.startStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := s.startNATS(cfg, natsUsers); err != nil {
		return nil, err
	}
	nc, err := s.connect(ctx, cfg, natsOpts)
	if err != nil {
		return nil, err
	}
	svc, err := s.prepare(ctx, cfg, nc)
	if err != nil {
		return nil, err
	}
	if err := indexIDs(ctx, ferret, s.DB, cfg.MongoDB); err != nil {
		return nil, err
	}
	s.run(ctx, cfg, svc)
	base := "http://" + s.HTTPAddr
	log.Info("resource manager up", "api", base, "web_view", base+"/ui/", "api_docs", base+"/api/resources/docs",
		"data_dir", cfg.DataDir, "version", buildinfo.Get().Version)
	return s, nil
}

// startStore starts the embedded FerretDB unless a MongoDB URI is given;
// nil then.
func (s *System) startStore(ctx context.Context, cfg Config) (*ferretembed.Server, error) {
	s.MongoURI = cfg.MongoURI
	if s.MongoURI != "" {
		return nil, nil
	}
	ferret, err := ferretembed.Start(ctx, ferretembed.Config{Addr: cfg.MongoAddr, Dir: filepath.Join(cfg.DataDir, "ferretdb"), Logger: s.log.With("component", "ferretdb")})
	if err != nil {
		return nil, inUse(err, "mongo-addr", cfg.MongoAddr)
	}
	s.closers = append(s.closers, ferret.Close)
	s.store = ferret
	s.MongoURI = ferret.URI()
	s.log.Info("embedded MongoDB-wire store (FerretDB/SQLite) up", "uri", s.MongoURI)
	return ferret, nil
}

// startNATS starts the embedded NATS server unless a NATS URL is given.
func (s *System) startNATS(cfg Config, users []natsembed.User) error {
	s.NATSURL = cfg.NATSURL
	if s.NATSURL != "" {
		return nil
	}
	ns, err := natsembed.Start(natsembed.Config{Addr: cfg.NATSAddr, StoreDir: filepath.Join(cfg.DataDir, "nats"), Logger: s.log.With("component", "nats"), Users: users})
	if err != nil {
		return inUse(err, "nats-addr", cfg.NATSAddr)
	}
	s.closers = append(s.closers, ns.Shutdown)
	s.NATSURL = ns.ClientURL()
	s.log.Info("embedded NATS JetStream up", "url", s.NATSURL)
	return nil
}

// connect opens the MongoDB and NATS connections and makes the streams.
func (s *System) connect(ctx context.Context, cfg Config, natsOpts []nats.Option) (*nats.Conn, error) {
	mopts := options.Client()
	if s.store == nil {
		// An external store may be cut off: requests answer 503 in time.
		mopts.SetServerSelectionTimeout(api.StoreWait)
	}
	mopts.ApplyURI(s.MongoURI).SetTimeout(30 * time.Second)
	if s.store != nil {
		// The services reach the embedded store in memory, not through a
		// loopback socket (docs/benchmarks.md, "The store in memory").
		mopts.SetDialer(s.store)
	}
	mc, err := mongo.Connect(mopts)
	if err != nil {
		return nil, fmt.Errorf("connect mongodb: %w", err)
	}
	s.closers = append(s.closers, func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = mc.Disconnect(c)
	})
	s.DB = mc.Database(cfg.MongoDB)

	nc, err := nats.Connect(s.NATSURL, append(natsOpts, nats.Name("avxrm"), nats.MaxReconnects(-1))...)
	if err != nil {
		return nil, fmt.Errorf("connect nats: %w", err)
	}
	s.closers = append(s.closers, func() { _ = nc.Drain(); nc.Close() })
	if s.JS, err = jetstream.New(nc); err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, events.EnsureStreams(ctx, s.JS, cfg.EventsMaxAge, 1)
}

// services are the prepared services, not yet running.
type services struct {
	ob        *outbox.Outbox
	api       *api.Service
	scheduler *scheduler.Scheduler
	exporter  *export.Service
}

// prepare builds the services. The scheduler and the export service come
// before the API, so that their collections exist when the _id indexes are
// made and /readyz can ask them.
func (s *System) prepare(ctx context.Context, cfg Config, nc *nats.Conn) (svc services, err error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(outbox.Collectors()...)
	reg.MustRegister(buildinfo.Collector())
	svc.ob = outbox.New(events.NewPublisher(s.JS), s.log.With("component", "outbox"))
	if svc.scheduler, err = scheduler.New(ctx, scheduler.Config{}, scheduler.Deps{
		DB: s.DB, JS: s.JS, Outbox: svc.ob, Registerer: reg, Logger: s.log.With("service", "scheduler"),
		Lookup: s.Lookup(cfg.MongoDB),
	}); err != nil {
		return svc, err
	}
	s.Scheduler = svc.scheduler
	if svc.exporter, err = export.New(ctx, export.Config{}, export.Deps{
		DB: s.DB, JS: s.JS, Outbox: svc.ob, Registerer: reg, Logger: s.log.With("service", "scenario-export"),
		Lookup: s.Lookup(cfg.MongoDB),
	}); err != nil {
		return svc, err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return svc, inUse(fmt.Errorf("api listen: %w", err), "http-addr", cfg.HTTPAddr)
	}
	s.HTTPAddr = ln.Addr().String()
	ready := []api.ReadyCheck{{Name: "nats", Check: func(context.Context) error {
		if !nc.IsConnected() {
			return errors.New("not connected")
		}
		return nil
	}}, {Name: "scheduler", Check: svc.scheduler.Ready}}
	if !cfg.DisableLauncher {
		// Instances run as local processes unless a plugin says otherwise;
		// their files and logs are under <data dir>/launcher.
		if s.Launcher, err = launcher.New(launcher.Config{
			DataDir: filepath.Join(cfg.DataDir, "launcher"), DefaultDriver: "local", APIURL: "http://" + s.HTTPAddr,
		}, launcher.Deps{DB: s.DB, JS: s.JS, Outbox: svc.ob, Registerer: reg, Logger: s.log.With("service", "launcher"),
			Lookup: s.Lookup(cfg.MongoDB)}); err != nil {
			_ = ln.Close()
			return svc, err
		}
		ready = append(ready, api.ReadyCheck{Name: "launcher", Check: s.Launcher.Ready})
	}
	ready = append(ready, api.ReadyCheck{Name: "scenario-export", Check: svc.exporter.Ready})
	apiCfg := api.Config{ArtifactUploadLimit: cfg.ArtifactMax, ExportTTL: cfg.ExportTTL, JobRetention: cfg.JobRetention, Auth: cfg.Auth}
	if !cfg.DisableLauncher {
		apiCfg.DefaultDriver = "local" // the launcher's above
	}
	if svc.api, err = api.New(ctx, apiCfg, api.Deps{
		DB: s.DB, Outbox: svc.ob, Gatherer: reg, Registerer: reg, Logger: s.log.With("service", "api"), Listener: ln, JS: s.JS,
		Ready: ready, Lookup: s.Lookup(cfg.MongoDB), AuthOffSaid: true, // secure said it, with the address
	}); err != nil {
		_ = ln.Close()
		return svc, err
	}
	return svc, nil
}

// indexIDs gives every collection an _id index on the embedded store:
// FerretDB/SQLite filters updates on an expression its own _id index does
// not match, so without it every update scans its collection.
func indexIDs(ctx context.Context, ferret *ferretembed.Server, db *mongo.Database, dbName string) error {
	if ferret == nil {
		return nil
	}
	names, err := db.ListCollectionNames(ctx, map[string]any{})
	if err != nil {
		return fmt.Errorf("list collections: %w", err)
	}
	for _, c := range names {
		if err := ferret.EnsureIDIndex(ctx, dbName, c); err != nil {
			return err
		}
	}
	return nil
}

// run starts the outbox relay and the services.
func (s *System) run(ctx context.Context, cfg Config, svc services) {
	s.goRun("outbox relay", func(ctx context.Context) error { svc.ob.Run(ctx, cfg.OutboxInterval); return nil }, ctx)
	s.goRun("api", svc.api.Serve, ctx)
	s.goRun("scheduler", svc.scheduler.Run, ctx)
	s.goRun("scenario-export", svc.exporter.Run, ctx)
	if s.Launcher != nil {
		s.goRun("launcher", s.Launcher.Run, ctx)
		// Its consumer attaches within moments; waiting for it (bounded)
		// means /readyz is green once Start returns.
		for deadline := time.Now().Add(10 * time.Second); s.Launcher.Ready(ctx) != nil && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
	}
	go func() {
		s.wg.Wait()
		s.closeOutbox(svc.ob)
		s.closeAll()
		close(s.done)
	}()
}

// closeOutbox retires the outbox instance once every component has
// stopped, so that the next start does not sweep the whole store for it
// (outbox.Close).
func (s *System) closeOutbox(ob *outbox.Outbox) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ob.Close(ctx); err != nil {
		s.log.Warn("outbox not closed; the next start sweeps for it", "err", err)
	}
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

// StoreWriteStats returns the embedded store's write counters (false with
// an external MongoDB), for benchmarks.
func (s *System) StoreWriteStats() (ferretembed.WriteStats, bool) {
	if s.store == nil {
		return ferretembed.WriteStats{}, false
	}
	return s.store.WriteStats(), true
}

// Stop begins a clean stop.
func (s *System) Stop() { s.cancel() }

// Wait blocks until the system has stopped and returns why, nil after Stop.
func (s *System) Wait() error {
	<-s.done
	return s.err
}

// Run starts the system and blocks until ctx ends, then stops it cleanly.
// It says, once stopped, that the jobs' processes on the local driver go on:
// a user who stops it with Ctrl-C may expect them to have ended with it.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	s, err := Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	if err := s.Wait(); err != nil {
		return err
	}
	if s.Launcher != nil {
		s.log.Info(StoppedMessage, "data_dir", cfg.DataDir)
	}
	return nil
}

// StoppedMessage is what Run logs once the system has stopped cleanly.
const StoppedMessage = "stopped; jobs still running on the local driver go on as processes of this machine, and the next " +
	"avxrm up on this data dir takes them up again and records how they end (cancel such jobs before stopping to end them)"

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

// inUse adds to err, when it is a listen address in use, what to do: the
// address is the flag's, and another all-in-one (whose every address has
// the same default) or another program has it.
func inUse(err error, flag, addr string) error {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return err
	}
	return fmt.Errorf("%w: another program has %s (another avxrm up?); give --%s another address (port 0 picks a free one)", err, addr, flag)
}
