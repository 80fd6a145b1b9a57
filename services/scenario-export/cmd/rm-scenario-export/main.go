// Command rm-scenario-export runs the scenario-export service alone, against
// an external MongoDB (RM_MONGO_URI) and NATS (RM_NATS_URL), as in
// deploy/compose and the Helm chart. Run several for more build capacity:
// claims keep any export from being built twice at once.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/outbox"
	export "github.com/avxrm/rm/services/scenario-export"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log); err != nil {
		log.Error("rm-scenario-export stopped", "err", err)
		os.Exit(1)
	}
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// config reads the service's RM_EXPORT_* settings; unset means the default.
func config() (export.Config, error) {
	var cfg export.Config
	var errs []error
	dur := func(k string, d *time.Duration) {
		if v := os.Getenv(k); v != "" {
			var err error
			if *d, err = time.ParseDuration(v); err != nil || *d <= 0 {
				errs = append(errs, fmt.Errorf("%s=%q: want a positive duration", k, v))
			}
		}
	}
	dur("RM_EXPORT_LEASE", &cfg.Lease)
	dur("RM_EXPORT_SWEEP_INTERVAL", &cfg.SweepInterval)
	dur("RM_EXPORT_ORPHAN_INTERVAL", &cfg.OrphanInterval)
	dur("RM_EXPORT_UPLOAD_GRACE", &cfg.UploadGrace)
	if v := os.Getenv("RM_EXPORT_CONCURRENCY"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("RM_EXPORT_CONCURRENCY=%q: want a positive integer", v))
		}
		cfg.Concurrency = n
	}
	cfg.Store = os.Getenv("RM_EXPORT_STORE") == "1"
	return cfg, errors.Join(errs...)
}

func run(ctx context.Context, log *slog.Logger) error {
	mongoURI, natsURL := os.Getenv("RM_MONGO_URI"), os.Getenv("RM_NATS_URL")
	if mongoURI == "" || natsURL == "" {
		return errors.New("RM_MONGO_URI and RM_NATS_URL are required")
	}
	cfg, err := config()
	if err != nil {
		return err
	}
	mc, err := mongo.Connect(options.Client().ApplyURI(mongoURI).SetTimeout(30 * time.Second))
	if err != nil {
		return fmt.Errorf("connect mongodb: %w", err)
	}
	defer func() { _ = mc.Disconnect(context.WithoutCancel(ctx)) }()
	nc, err := nats.Connect(natsURL, nats.Name("rm-scenario-export"), nats.MaxReconnects(-1))
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
	ob := outbox.New(events.NewPublisher(js), log.With("component", "outbox"))
	svc, err := export.New(ctx, cfg, export.Deps{DB: db, JS: js, Outbox: ob, Logger: log})
	if err != nil {
		return err
	}
	go ob.Run(ctx, 2*time.Second)
	return svc.Run(ctx)
}
