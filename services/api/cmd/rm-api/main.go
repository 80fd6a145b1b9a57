// Command rm-api runs the API service alone, against an external MongoDB
// (RM_MONGO_URI) and NATS (RM_NATS_URL), as in deploy/compose and the Helm chart.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/api"
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
		log.Error("rm-api stopped", "err", err)
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
	nc, err := nats.Connect(natsURL, nats.Name("rm-api"), nats.MaxReconnects(-1))
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
	go ob.Run(ctx, 2*time.Second)
	return api.Run(ctx, api.Config{HTTPAddr: env("RM_HTTP_ADDR", ":8080")}, api.Deps{
		DB: db, Outbox: ob, Logger: log,
		Ready: []api.ReadyCheck{{Name: "nats", Check: func(context.Context) error {
			if !nc.IsConnected() {
				return errors.New("not connected")
			}
			return nil
		}}},
	})
}
