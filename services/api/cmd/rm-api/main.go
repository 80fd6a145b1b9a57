// Command rm-api runs the API service alone, against an external MongoDB
// (RM_MONGO_URI) and NATS (RM_NATS_URL), as in deploy/compose and the Helm
// chart. RM_HTTP_ADDR (default :8080) is where it listens; RM_OIDC_ISSUER
// and the other RM_OIDC_* variables turn auth on (docs/auth.md).
package main

import (
	"context"
	"errors"
	"os"

	"github.com/avxrm/rm/pkg/events/standalone"
	"github.com/avxrm/rm/services/api"
)

func main() {
	standalone.Main("rm-api", func(ctx context.Context, e *standalone.Env) error {
		return api.Run(ctx, api.Config{HTTPAddr: standalone.Getenv("RM_HTTP_ADDR", ":8080"), Auth: api.AuthConfigFromEnv(os.Getenv)}, api.Deps{
			DB: e.DB, Outbox: e.Outbox, Logger: e.Log, JS: e.JS,
			Gatherer: e.Registry, Registerer: e.Registry,
			Ready: []api.ReadyCheck{{Name: "nats", Check: func(context.Context) error {
				if !e.NC.IsConnected() {
					return errors.New("not connected")
				}
				return nil
			}}},
		})
	})
}
