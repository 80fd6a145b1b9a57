// Command rm-launcher runs the launcher alone, against an external MongoDB
// (RM_MONGO_URI) and NATS (RM_NATS_URL), as in deploy/compose and the Helm
// chart. Run two for fail-over: replicas elect a leader, which alone
// launches; a replica that loses the lead exits, to be restarted as a
// standby. `rm-launcher --help` lists every setting.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/avxrm/rm/pkg/events/standalone"
	"github.com/avxrm/rm/services/launcher"
	"github.com/avxrm/rm/services/launcher/internal/driver"
)

func main() { standalone.Main(service()) }

func service() *standalone.Service {
	cfg := launcher.Config{Elect: true}
	var defaultConfig string
	return &standalone.Service{
		Name: "rm-launcher", Doc: "runs admitted jobs' instances through their queue's plugin; run two, one leads", HTTPAddr: ":8082",
		Settings: func(s *standalone.Settings) {
			s.String(&cfg.DataDir, "data-dir", "RM_DATA_DIR", "./.rm-data/launcher", "where the local driver keeps its instances' files and logs")
			s.String(&cfg.DefaultDriver, "default-driver", "RM_DEFAULT_DRIVER", "local", "driver of queues without a plugin when no plugin is the default")
			s.String(&defaultConfig, "default-driver-config", "RM_DEFAULT_DRIVER_CONFIG", "", `that driver's config, as a plugin's of its type (JSON); kubernetes needs one, e.g. {"in_cluster": true, "namespace": "jobs"}`)
			s.String(&cfg.APIURL, "api-url", "RM_API_URL", "", "the API's URL, given to every instance as RM_API_URL")
			s.String(&cfg.Durable, "durable", "RM_LAUNCHER_DURABLE", "rm-launcher", "JetStream consumer of job and deployment events")
			s.Int(&cfg.Workers, "workers", "RM_LAUNCHER_WORKERS", "8", "jobs and deployments reconciled at once")
			s.Duration(&cfg.ResyncInterval, "resync-interval", "RM_LAUNCHER_RESYNC_INTERVAL", "30s", "how often every active job is reconciled without a trigger")
			s.Bool(&cfg.Elect, "elect", "RM_LAUNCHER_ELECT", "true", "launch only while leading the election (false: this is the only launcher)")
			s.String(&cfg.InstanceID, "instance-id", "RM_INSTANCE_ID", "", "this replica's name in the election (default: host-pid-random)")
			s.String(&cfg.ElectionBucket, "election-bucket", "RM_LAUNCHER_ELECTION_BUCKET", "rm_launcher", "NATS KV bucket of the leader election")
			s.Duration(&cfg.LeaderTTL, "leader-ttl", "RM_LAUNCHER_LEADER_TTL", "5s", "a leader that has not renewed for this long is replaced")
			s.Duration(&cfg.RenewInterval, "renew-interval", "RM_LAUNCHER_RENEW_INTERVAL", "1s", "how often the leader renews its election key (standbys try to take it every 200ms, or this if shorter)")
		},
		Check: func() error {
			var err error
			if _, ok := launcher.Drivers()[cfg.DefaultDriver]; !ok && cfg.DefaultDriver != "" {
				types := slices.Sorted(maps.Keys(launcher.Drivers()))
				err = fmt.Errorf("RM_DEFAULT_DRIVER=%q: want one of %s", cfg.DefaultDriver, strings.Join(types, ", "))
			}
			if defaultConfig != "" {
				if verr := driver.ValidateConfig(cfg.DefaultDriver, json.RawMessage(defaultConfig)); verr != nil {
					err = errors.Join(err, fmt.Errorf("RM_DEFAULT_DRIVER_CONFIG (of the %s driver): %w", cfg.DefaultDriver, verr))
				}
			}
			if cfg.Elect {
				err = errors.Join(err, standalone.CheckElection("RM_LAUNCHER_LEADER_TTL", cfg.LeaderTTL, "RM_LAUNCHER_RENEW_INTERVAL", cfg.RenewInterval))
			}
			return err
		},
		Run: func(ctx context.Context, e *standalone.Env) error {
			if defaultConfig != "" {
				cfg.DefaultDriverConfig = json.RawMessage(defaultConfig)
			}
			if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
				return fmt.Errorf("data dir: %w", err)
			}
			// launcher.New registers the collections it writes with the outbox.
			l, err := launcher.New(cfg, launcher.Deps{DB: e.DB, JS: e.JS, Outbox: e.Outbox, Registerer: e.Registry, Logger: e.Log,
				Lookup: e.Lookup})
			if err != nil {
				return err
			}
			if err := e.ServeOps(ctx, e.HTTPAddr, l.Ready); err != nil {
				return err
			}
			return l.Run(ctx)
		},
	}
}
