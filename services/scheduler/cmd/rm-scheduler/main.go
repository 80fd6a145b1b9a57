// Command rm-scheduler runs the scheduler alone, against an external MongoDB
// (RM_MONGO_URI) and NATS (RM_NATS_URL), as in deploy/compose and the Helm
// chart. Run two or more for fail-over: one leads, the others stand by.
// `rm-scheduler --help` lists every setting.
package main

import (
	"context"

	"github.com/avxrm/rm/pkg/events/standalone"
	"github.com/avxrm/rm/services/scheduler"
)

func main() { standalone.Main(service()) }

func service() *standalone.Service {
	var cfg scheduler.Config
	return &standalone.Service{
		Name: "rm-scheduler", Doc: "admits jobs whose workers all fit their queue; run two or more, one leads", HTTPAddr: ":8081",
		Settings: func(s *standalone.Settings) {
			s.String(&cfg.InstanceID, "instance-id", "RM_INSTANCE_ID", "", "this replica's name in the election (default: host-pid-random)")
			s.String(&cfg.Durable, "durable", "RM_SCHEDULER_DURABLE", "rm-scheduler", "JetStream consumer of job and queue events")
			s.String(&cfg.ElectionBucket, "election-bucket", "RM_SCHEDULER_ELECTION_BUCKET", "rm_scheduler", "NATS KV bucket of the leader election")
			s.Duration(&cfg.LeaderTTL, "leader-ttl", "RM_SCHEDULER_LEADER_TTL", "5s", "a leader that has not renewed for this long is replaced")
			s.Duration(&cfg.RenewInterval, "renew-interval", "RM_SCHEDULER_RENEW_INTERVAL", "1s", "how often the leader renews its election key (standbys try to take it every 200ms, or this if shorter)")
			s.Duration(&cfg.ResyncInterval, "resync-interval", "RM_SCHEDULER_RESYNC_INTERVAL", "30s", "how often the leader reloads everything from MongoDB")
			s.Duration(&cfg.TickInterval, "tick-interval", "RM_SCHEDULER_TICK_INTERVAL", "2s", "how often the leader re-examines waiting jobs without an event")
		},
		Check: func() error {
			return standalone.CheckElection("RM_SCHEDULER_LEADER_TTL", cfg.LeaderTTL, "RM_SCHEDULER_RENEW_INTERVAL", cfg.RenewInterval)
		},
		Run: func(ctx context.Context, e *standalone.Env) error {
			e.Outbox.Register(e.DB.Collection(scheduler.JobsCollection))
			s, err := scheduler.New(ctx, cfg, scheduler.Deps{
				DB: e.DB, JS: e.JS, Outbox: e.Outbox, Registerer: e.Registry, Logger: e.Log, Lookup: e.Lookup,
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
			if err := e.ServeOps(ctx, e.HTTPAddr, ready); err != nil {
				return err
			}
			return s.Run(ctx)
		},
	}
}
