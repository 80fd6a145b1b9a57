// Command rm-launcher runs the launcher alone, against an external MongoDB
// (RM_MONGO_URI) and NATS (RM_NATS_URL). RM_DATA_DIR holds the local driver's
// instances (default ./.rm-data/launcher), RM_DEFAULT_DRIVER is the driver of
// queues without a plugin, RM_API_URL is given to instances for uploads, and
// RM_HTTP_ADDR (default :8082) serves /metrics, /healthz and /readyz.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/avxrm/rm/pkg/events/standalone"
	"github.com/avxrm/rm/services/launcher"
)

func main() {
	standalone.Main("rm-launcher", func(ctx context.Context, e *standalone.Env) error {
		dataDir := standalone.Getenv("RM_DATA_DIR", "./.rm-data/launcher")
		if err := os.MkdirAll(dataDir, 0o750); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		// launcher.New registers the collections it writes with the outbox.
		l, err := launcher.New(launcher.Config{
			DataDir: dataDir, DefaultDriver: os.Getenv("RM_DEFAULT_DRIVER"), APIURL: os.Getenv("RM_API_URL"),
		}, launcher.Deps{DB: e.DB, JS: e.JS, Outbox: e.Outbox, Registerer: e.Registry, Logger: e.Log})
		if err != nil {
			return err
		}
		if err := e.ServeOps(ctx, standalone.Getenv("RM_HTTP_ADDR", ":8082"), l.Ready); err != nil {
			return err
		}
		return l.Run(ctx)
	})
}
