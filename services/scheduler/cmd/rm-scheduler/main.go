// Command rm-scheduler runs the scheduler alone, against an external MongoDB
// (RM_MONGO_URI) and NATS (RM_NATS_URL), as in deploy/compose and the Helm
// chart. Run two or more for fail-over: one leads, the others stand by.
package main

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
	"github.com/avxrm/rm/services/scheduler"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log); err != nil {
		log.Error("rm-scheduler stopped", "err", err)
		os.Exit(1)
	}
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, log *slog.Logger) error {
	mongoURI, natsURL := os.Getenv("RM_MONGO_URI"), os.Getenv("RM_NATS_URL")
	if mongoURI == "" || natsURL == "" {
		return errors.New("RM_MONGO_URI and RM_NATS_URL are required")
	}
	mc, err := mongo.Connect(options.Client().ApplyURI(mongoURI).SetTimeout(30 * time.Second))
	if err != nil {
		return fmt.Errorf("connect mongodb: %w", err)
	}
	defer func() { _ = mc.Disconnect(context.WithoutCancel(ctx)) }()
	nc, err := nats.Connect(natsURL, nats.Name("rm-scheduler"), nats.MaxReconnects(-1))
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
	db := mc.Database(env("RM_MONGO_DB", "rm"))

	// The scheduler's job writes carry their events; this relay publishes
	// those a crash left unsent.
	ob := outbox.New(events.NewPublisher(js), log.With("component", "outbox"))
	ob.Register(db.Collection(scheduler.JobsCollection))
	go ob.Run(ctx, 2*time.Second)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s, err := scheduler.New(ctx, scheduler.Config{InstanceID: os.Getenv("RM_INSTANCE_ID")}, scheduler.Deps{
		DB: db, JS: js, Outbox: ob, Registerer: reg, Logger: log,
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		// A standby is ready too: it is doing its job, which is to wait.
		if err := s.Ready(r.Context()); err != nil && s.Leading() {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	ln, err := net.Listen("tcp", env("RM_HTTP_ADDR", ":8081"))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()
	return s.Run(ctx)
}
