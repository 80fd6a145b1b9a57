// Command rm-api runs the API service alone, against an external MongoDB
// (RM_MONGO_URI) and NATS (RM_NATS_URL), as in deploy/compose and the Helm
// chart. `rm-api --help` lists every setting; RM_OIDC_ISSUER and the other
// RM_OIDC_* settings turn auth on (docs/auth.md).
package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/avxrm/rm/pkg/events/standalone"
	"github.com/avxrm/rm/services/api"
	"github.com/avxrm/rm/services/api/internal/httpapi"
)

func main() { standalone.Main(service()) }

func service() *standalone.Service {
	var cfg api.Config
	oidc := map[string]*string{}
	for _, o := range oidcSettings {
		oidc[o.env] = new(string)
	}
	return &standalone.Service{
		Name: "rm-api", Doc: "the Resource Manager's REST API, with /metrics, /healthz and /readyz", HTTPAddr: ":8080",
		StoreWait: api.StoreWait,
		Settings: func(s *standalone.Settings) {
			s.Int64(&cfg.BodyLimit, "body-limit", "RM_API_BODY_LIMIT", "1048576", "largest request body accepted (but artifact uploads), in bytes")
			s.Int64(&cfg.ArtifactUploadLimit, "artifact-max-bytes", "RM_ARTIFACT_MAX_BYTES", "1073741824", "largest artifact upload accepted, in bytes")
			s.Duration(&cfg.ExportTTL, "export-ttl", "RM_EXPORT_TTL", "168h", "how long a scenario export and its zip are kept")
			s.Duration(&cfg.JobRetention, "job-retention", "RM_JOB_RETENTION", "0s", jobRetentionUsage)
			s.Duration(&cfg.ShutdownTimeout, "shutdown-timeout", "RM_API_SHUTDOWN_TIMEOUT", "10s", "how long requests in flight may finish on stop (event streams and followed logs are ended at once; their clients resume)")
			s.String(&cfg.DefaultDriver, "default-driver", "RM_DEFAULT_DRIVER", "",
				"the launchers' RM_DEFAULT_DRIVER, for queues without a plugin while no plugin is the default: on local a job with no command is refused; empty: not known")
			for _, o := range oidcSettings {
				s.String(oidc[o.env], o.flag, o.env, "", o.usage)
			}
		},
		Check: func() error {
			if cfg.DefaultDriver != "" && !slices.Contains(httpapi.PluginTypes, cfg.DefaultDriver) {
				return fmt.Errorf("RM_DEFAULT_DRIVER=%q: want one of %s (the launchers' RM_DEFAULT_DRIVER), or none",
					cfg.DefaultDriver, strings.Join(httpapi.PluginTypes, ", "))
			}
			return nil
		},
		Run: func(ctx context.Context, e *standalone.Env) error {
			cfg.HTTPAddr = e.HTTPAddr
			cfg.Auth = api.AuthConfigFromEnv(func(k string) string {
				if v, ok := oidc[k]; ok {
					return *v
				}
				return ""
			})
			return api.Run(ctx, cfg, api.Deps{
				DB: e.DB, Outbox: e.Outbox, Logger: e.Log, JS: e.JS, Lookup: e.Lookup,
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

// jobRetentionUsage is RM_JOB_RETENTION's meaning, as `avxrm up` says it too.
const jobRetentionUsage = "delete each job that ended (succeeded, failed, cancelled) this long ago, as DELETE /jobs/{id} does (0 keeps every job)"

// oidcSettings are the auth settings (docs/auth.md); without an issuer auth is off.
var oidcSettings = []struct{ flag, env, usage string }{
	{"oidc-issuer", "RM_OIDC_ISSUER", "OIDC issuer URL; empty: auth is off"},
	{"oidc-audience", "RM_OIDC_AUDIENCE", "accepted token audience (aud, or azp) (default avxrm)"},
	{"oidc-roles-claim", "RM_OIDC_ROLES_CLAIM", "comma-separated claim paths holding roles (default realm_access.roles and resource_access.<audience>.roles)"},
	{"oidc-groups-claim", "RM_OIDC_GROUPS_CLAIM", "claim holding groups (default groups)"},
	{"oidc-admin-role", "RM_OIDC_ADMIN_ROLE", "role name of administrators (default rm-admin)"},
	{"oidc-user-role", "RM_OIDC_USER_ROLE", "role name of users (default rm-user)"},
	{"oidc-viewer-role", "RM_OIDC_VIEWER_ROLE", "role name of viewers (default rm-viewer)"},
	{"oidc-ui-client-id", "RM_OIDC_UI_CLIENT_ID", "public client the web view signs in with, code flow with PKCE (default the audience)"},
	{"oidc-ui-scope", "RM_OIDC_UI_SCOPE", "scope the web view asks for (default openid profile, and offline_access when the issuer lists it)"},
}
