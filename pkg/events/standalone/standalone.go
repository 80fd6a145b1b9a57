// Package standalone is what each service's own binary (cmd/rm-<service>)
// does around the service: JSON logs, a context cancelled by SIGINT/SIGTERM,
// the MongoDB and NATS connections from RM_MONGO_URI and RM_NATS_URL, the
// event streams, an outbox relay, a metrics registry and the /metrics,
// /healthz and /readyz endpoints. The local all-in-one (cmd/avxrm) does the
// same for all services at once.
package standalone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Env is what a service's binary gets to run the service with.
type Env struct {
	DB       *mongo.Database // RM_MONGO_DB of RM_MONGO_URI, default "rm"
	NC       *nats.Conn
	JS       jetstream.JetStream
	Outbox   *outbox.Outbox       // its relay runs every 2s; register the collections the service writes
	Registry *prometheus.Registry // Go and process collectors included
	Log      *slog.Logger
}

// Getenv returns the environment variable k, or def when it is empty.
func Getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// Main connects, runs body until SIGINT or SIGTERM, closes the connections,
// and exits with status 1 if anything failed.
func Main(name string, body func(ctx context.Context, e *Env) error) {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, name, log, body)
	stop()
	if err != nil {
		log.Error(name+" stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, name string, log *slog.Logger, body func(context.Context, *Env) error) error {
	mongoURI, natsURL := os.Getenv("RM_MONGO_URI"), os.Getenv("RM_NATS_URL")
	if mongoURI == "" || natsURL == "" {
		return errors.New("RM_MONGO_URI and RM_NATS_URL are required")
	}
	mc, err := mongo.Connect(options.Client().ApplyURI(mongoURI).SetTimeout(30 * time.Second))
	if err != nil {
		return fmt.Errorf("connect mongodb: %w", err)
	}
	defer func() { _ = mc.Disconnect(context.WithoutCancel(ctx)) }()
	nc, err := nats.Connect(natsURL, nats.Name(name), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect nats: %w", err)
	}
	defer nc.Drain()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if err := events.EnsureStreams(ctx, js, 0, 1); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(outbox.Collectors()...)
	e := &Env{
		DB: mc.Database(Getenv("RM_MONGO_DB", "rm")), NC: nc, JS: js,
		Outbox:   outbox.New(events.NewPublisher(js), log.With("component", "outbox")),
		Registry: reg, Log: log,
	}
	// The service's writes carry their events; the relay publishes those a
	// crash left unsent, in the collections the service registers.
	go e.Outbox.Run(ctx, 2*time.Second)
	return body(ctx, e)
}

// ServeOps serves /metrics, /healthz and /readyz (ready answers it) on addr
// in the background until ctx ends.
func (e *Env) ServeOps(ctx context.Context, addr string, ready func(context.Context) error) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(e.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := ready(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	context.AfterFunc(ctx, func() { _ = hs.Close() })
	return nil
}
