package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/avxrm/rm/cmd/avxrm/internal/store"
)

// storeMain is `avxrm store`: the embedded store served alone.
func storeMain(args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("service", "avxrm-store")
	return store.Main(ctx, args, os.Getenv, os.Stderr, log)
}
