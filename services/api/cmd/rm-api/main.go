// Command rm-api runs the API service alone, against an external MongoDB
// (RM_MONGO_URI) and NATS (RM_NATS_URL), as in deploy/compose and the Helm
// chart. `rm-api --help` lists every setting.
package main

import (
	"context"
	"errors"

	"github.com/avxrm/rm/pkg/events/standalone"
	"github.com/avxrm/rm/services/api"
)

func main() { standalone.Main(service()) }

func service() *standalone.Service {
	var cfg api.Config
	return &standalone.Service{
		Name: "rm-api", Doc: "the Resource Manager's REST API, with /metrics, /healthz and /readyz", HTTPAddr: ":8080",
		Settings: func(s *standalone.Settings) {
			s.Int64(&cfg.BodyLimit, "body-limit", "RM_API_BODY_LIMIT", "1048576", "largest request body accepted (but artifact uploads), in bytes")
			s.Int64(&cfg.ArtifactUploadLimit, "artifact-max-bytes", "RM_ARTIFACT_MAX_BYTES", "1073741824", "largest artifact upload accepted, in bytes")
			s.Duration(&cfg.ExportTTL, "export-ttl", "RM_EXPORT_TTL", "168h", "how long a scenario export and its zip are kept")
			s.Duration(&cfg.ShutdownTimeout, "shutdown-timeout", "RM_API_SHUTDOWN_TIMEOUT", "10s", "how long requests in flight may finish on stop")
		},
		Run: func(ctx context.Context, e *standalone.Env) error {
			cfg.HTTPAddr = e.HTTPAddr
			return api.Run(ctx, cfg, api.Deps{
				DB: e.DB, Outbox: e.Outbox, Logger: e.Log, JS: e.JS,
				Gatherer: e.Registry, Registerer: e.Registry,
				Ready: []api.ReadyCheck{{Name: "nats", Check: func(context.Context) error {
					if !e.NC.IsConnected() {
						return errors.New("not connected")
					}
					return nil
				}}},
			})
		},
	}
}
