// Command rm-scheduler runs the scheduler alone, against an external MongoDB
// (RM_MONGO_URI) and NATS (RM_NATS_URL), as in deploy/compose and the Helm
// chart. Run two or more for fail-over: one leads, the others stand by.
// RM_HTTP_ADDR (default :8081) serves /metrics, /healthz and /readyz.
package main

import (
	"context"
	"os"

	"github.com/avxrm/rm/pkg/events/standalone"
	"github.com/avxrm/rm/services/scheduler"
)

func main() {
	standalone.Main("rm-scheduler", func(ctx context.Context, e *standalone.Env) error {
		e.Outbox.Register(e.DB.Collection(scheduler.JobsCollection))
		s, err := scheduler.New(ctx, scheduler.Config{InstanceID: os.Getenv("RM_INSTANCE_ID")}, scheduler.Deps{
			DB: e.DB, JS: e.JS, Outbox: e.Outbox, Registerer: e.Registry, Logger: e.Log,
		})
		if err != nil {
			return err
		}
		// A standby is ready too: it is doing its job, which is to wait.
		ready := func(ctx context.Context) error {
			if err := s.Ready(ctx); err != nil && s.Leading() {
				return err
			}
			return nil
		}
		if err := e.ServeOps(ctx, standalone.Getenv("RM_HTTP_ADDR", ":8081"), ready); err != nil {
			return err
		}
		return s.Run(ctx)
	})
}
