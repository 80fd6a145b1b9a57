// Command rm-scenario-export runs the scenario-export service alone, against
// an external MongoDB (RM_MONGO_URI) and NATS (RM_NATS_URL), as in
// deploy/compose and the Helm chart. Run several for more build capacity:
// claims keep any export from being built twice at once. RM_HTTP_ADDR
// (default :8083) serves /metrics, /healthz and /readyz.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/avxrm/rm/pkg/events/standalone"
	export "github.com/avxrm/rm/services/scenario-export"
)

func main() {
	standalone.Main("rm-scenario-export", func(ctx context.Context, e *standalone.Env) error {
		cfg, err := config()
		if err != nil {
			return err
		}
		svc, err := export.New(ctx, cfg, export.Deps{DB: e.DB, JS: e.JS, Outbox: e.Outbox, Registerer: e.Registry, Logger: e.Log})
		if err != nil {
			return err
		}
		if err := e.ServeOps(ctx, standalone.Getenv("RM_HTTP_ADDR", ":8083"), svc.Ready); err != nil {
			return err
		}
		return svc.Run(ctx)
	})
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
