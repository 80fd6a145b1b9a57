// Command rm-launcher runs the launcher alone, against an external MongoDB
// (RM_MONGO_URI) and NATS (RM_NATS_URL), as in deploy/compose and the Helm
// chart. Its drivers keep their files under RM_DATA_DIR. Run one per set of
// instances: launchers do not elect a leader yet.
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
	"github.com/avxrm/rm/services/launcher"
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
		log.Error("rm-launcher stopped", "err", err)
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
	dataDir := env("RM_DATA_DIR", "./.rm-data/launcher")
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	mc, err := mongo.Connect(options.Client().ApplyURI(mongoURI).SetTimeout(30 * time.Second))
	if err != nil {
		return fmt.Errorf("connect mongodb: %w", err)
	}
	defer func() { _ = mc.Disconnect(context.WithoutCancel(ctx)) }()
	nc, err := nats.Connect(natsURL, nats.Name("rm-launcher"), nats.MaxReconnects(-1))
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

	// The launcher's writes carry their events; this relay publishes those a
	// crash left unsent (launcher.New registers the collections it writes).
	ob := outbox.New(events.NewPublisher(js), log.With("component", "outbox"))
	go ob.Run(ctx, 2*time.Second)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	l, err := launcher.New(launcher.Config{
		DataDir: dataDir, DefaultDriver: os.Getenv("RM_DEFAULT_DRIVER"), APIURL: os.Getenv("RM_API_URL"),
	}, launcher.Deps{DB: db, JS: js, Outbox: ob, Registerer: reg, Logger: log})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := l.Ready(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	ln, err := net.Listen("tcp", env("RM_HTTP_ADDR", ":8082"))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()
	return l.Run(ctx)
}
