// Command rm-scenario-export runs the scenario-export service alone, against
// an external MongoDB (RM_MONGO_URI) and NATS (RM_NATS_URL), as in
// deploy/compose and the Helm chart. Run several for more build capacity:
// claims keep any export from being built twice at once.
// `rm-scenario-export --help` lists every setting.
package main

import (
	"context"

	"github.com/avxrm/rm/pkg/events/standalone"
	export "github.com/avxrm/rm/services/scenario-export"
)

func main() { standalone.Main(service()) }

func service() *standalone.Service {
	var cfg export.Config
	return &standalone.Service{
		Name: "rm-scenario-export", Doc: "builds zips of chosen samples' scenario files; run several for capacity", HTTPAddr: ":8083",
		Settings: func(s *standalone.Settings) {
			s.String(&cfg.Durable, "durable", "RM_EXPORT_DURABLE", "scenario-export", "JetStream consumer of export events")
			s.Duration(&cfg.Lease, "lease", "RM_EXPORT_LEASE", "1m", "how long a build's claim holds without renewal")
			s.Duration(&cfg.SweepInterval, "sweep-interval", "RM_EXPORT_SWEEP_INTERVAL", "30s", "how often pending, stale and expired exports are looked for")
			s.Duration(&cfg.OrphanInterval, "orphan-interval", "RM_EXPORT_ORPHAN_INTERVAL", "10m", "how often blobs nobody refers to are removed")
			s.Duration(&cfg.UploadGrace, "upload-grace", "RM_EXPORT_UPLOAD_GRACE", "24h", "how long an unfinished artifact upload may last before it is removed")
			s.Int(&cfg.Concurrency, "concurrency", "RM_EXPORT_CONCURRENCY", "2", "builds run at once by this replica")
			s.Int(&cfg.MaxAttempts, "max-attempts", "RM_EXPORT_MAX_ATTEMPTS", "5", "builds of one export before it fails")
			s.Bool(&cfg.Store, "store", "RM_EXPORT_STORE", "false", "write zip entries uncompressed")
			s.String(&cfg.Owner, "owner", "RM_EXPORT_OWNER", "", "this replica's name in claims (default: host-pid-random)")
		},
		Run: func(ctx context.Context, e *standalone.Env) error {
			svc, err := export.New(ctx, cfg, export.Deps{DB: e.DB, JS: e.JS, Outbox: e.Outbox, Registerer: e.Registry, Logger: e.Log, Lookup: e.Lookup})
			if err != nil {
				return err
			}
			if err := e.ServeOps(ctx, e.HTTPAddr, svc.Ready); err != nil {
				return err
			}
			return svc.Run(ctx)
		},
	}
}
