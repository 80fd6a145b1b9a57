// Package api is the Resource Manager's REST API service: it validates and
// stores resources in MongoDB (each change with its event, through the outbox),
// answers reads, serves the OpenAPI document, health, readiness and metrics.
// It never decides scheduling. cmd/rm-api and the local all-in-one both call Run.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/api/internal/auth"
	"github.com/avxrm/rm/services/api/internal/httpapi"
	"github.com/avxrm/rm/services/api/internal/store"
	"github.com/avxrm/rm/services/api/internal/ui"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// StoreWait is how long a request waits for a store it cannot reach
// before it answers 503 with Retry-After: well inside the 30 s its clients
// (avxrm, the SDKs) wait for an answer before they give up, so that they
// see the 503 and try again; a restart of the store takes about 2 s. The
// MongoDB client's server selection timeout of the API's store.
const StoreWait = 5 * time.Second

// Config of the API service. The zero value works.
type Config struct {
	// HTTPAddr is where to listen when Deps.Listener is nil. If empty, 127.0.0.1:8080.
	HTTPAddr string
	// BodyLimit bounds request bodies. If zero, 1 MiB.
	BodyLimit int64
	// ArtifactUploadLimit bounds one artifact upload, in bytes. If zero, 1 GiB.
	ArtifactUploadLimit int64
	// ExportTTL is how long a scenario export and its zip are kept. If zero, 7 days.
	ExportTTL time.Duration
	// ShutdownTimeout bounds the drain of in-flight requests on stop. If zero, 10s.
	ShutdownTimeout time.Duration
	// Auth configures bearer-token checks (docs/auth.md). The zero value
	// (no issuer) leaves auth off: every request may do anything.
	Auth AuthConfig
	// DefaultDriver is the launchers' driver type for queues without a
	// plugin while no plugin is the default (their RM_DEFAULT_DRIVER), so
	// that the API refuses what that driver cannot run (nothing to run on
	// local). Empty: not known here; such queues' jobs are refused nothing
	// for their runtime.
	DefaultDriver string
	// JobRetention is how long a job is kept after it ended (succeeded,
	// failed, cancelled): then the API deletes it as DELETE /jobs/{id}
	// does, in the background. Zero keeps every job.
	JobRetention time.Duration
}

// AuthConfig configures authentication; AuthConfigFromEnv reads it from RM_OIDC_*.
type AuthConfig = auth.Config

// AuthConfigFromEnv reads RM_OIDC_ISSUER, RM_OIDC_AUDIENCE, RM_OIDC_ROLES_CLAIM,
// RM_OIDC_GROUPS_CLAIM, RM_OIDC_{ADMIN,USER,VIEWER}_ROLE and
// RM_OIDC_UI_CLIENT_ID through getenv.
func AuthConfigFromEnv(getenv func(string) string) AuthConfig { return auth.ConfigFromEnv(getenv) }

// ReadyCheck is one condition of /readyz.
type ReadyCheck = httpapi.ReadyCheck

// Deps are the API's connections, made by the caller.
type Deps struct {
	DB     *mongo.Database // required
	Outbox *outbox.Outbox  // required: publishes the events of writes
	Ready  []ReadyCheck    // conditions of /readyz besides MongoDB
	// Registerer takes the API's metrics and Gatherer is served at /metrics.
	// If both are nil, a registry of the API's own is used for both.
	Gatherer   prometheus.Gatherer
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	Listener   net.Listener        // if set, served instead of listening on HTTPAddr
	JS         jetstream.JetStream // for GET /events; nil: that route answers 503
	// Lookup finds active jobs by index on a store that cannot use one for
	// the filter (the embedded FerretDB); nil: the filter goes to the store.
	Lookup indexed.Lookup
	// AuthOffSaid: the embedding process has already warned that auth is
	// off (avxrm up, with the address it serves on): the API does not
	// warn a second time.
	AuthOffSaid bool
}

// Source is the CloudEvents source of the API's events.
const Source = "/rm/api"

// Service is a prepared API: storage set up, routes built.
type Service struct {
	cfg    Config
	deps   Deps
	server *httpapi.Server
}

// New prepares the API: collections, indexes and built-in queues exist when it returns.
func New(ctx context.Context, cfg Config, deps Deps) (*Service, error) {
	if deps.DB == nil || deps.Outbox == nil {
		return nil, errors.New("api: DB and Outbox are required")
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:8080"
	}
	if cfg.BodyLimit == 0 {
		cfg.BodyLimit = 1 << 20
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.JobRetention < 0 {
		return nil, fmt.Errorf("api: job retention %v: must not be negative (0 keeps every job)", cfg.JobRetention)
	}
	if cfg.DefaultDriver != "" && !slices.Contains(httpapi.PluginTypes, cfg.DefaultDriver) {
		return nil, fmt.Errorf("api: default driver %q: want one of %s (the launchers' RM_DEFAULT_DRIVER), or none",
			cfg.DefaultDriver, strings.Join(httpapi.PluginTypes, ", "))
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Gatherer == nil && deps.Registerer == nil {
		reg := prometheus.NewRegistry()
		deps.Gatherer, deps.Registerer = reg, reg
	}
	st := &store.Store{DB: deps.DB, Outbox: deps.Outbox, Lookup: deps.Lookup}
	// A Lookup means the embedded store, which reads by _id only: indexes
	// that would only serve reads are left out there (EnsureIndexes).
	if err := st.EnsureIndexes(ctx, deps.Lookup != nil); err != nil {
		return nil, err
	}
	for _, c := range store.AllCollections {
		deps.Outbox.Register(deps.DB.Collection(c))
	}
	var authn *auth.Authenticator
	var jobTokens *auth.JobTokens
	if cfg.Auth.Enabled() {
		key, err := auth.LoadJobKey(ctx, deps.DB)
		if err != nil {
			return nil, err
		}
		if jobTokens, err = auth.NewJobTokens(key, cfg.Auth); err != nil {
			return nil, err
		}
		ac := cfg.Auth
		ac.Logger = deps.Logger
		if authn, err = auth.New(ctx, ac, jobTokens); err != nil {
			return nil, err
		}
	} else if !deps.AuthOffSaid {
		deps.Logger.Warn("AUTH IS OFF: no RM_OIDC_ISSUER, every request may do anything")
	}
	ready := append([]ReadyCheck{{Name: "mongodb", Check: func(ctx context.Context) error { return deps.DB.Client().Ping(ctx, nil) }}}, deps.Ready...)
	srv := httpapi.New(httpapi.Options{
		Store: st, Source: Source, BodyLimit: cfg.BodyLimit, Ready: ready,
		Gatherer: deps.Gatherer, Registry: deps.Registerer, Logger: deps.Logger, JS: deps.JS,
		Artifacts: httpapi.ArtifactConfig{UploadLimit: cfg.ArtifactUploadLimit, ExportTTL: cfg.ExportTTL},
		Auth:      authn, JobTokens: jobTokens, Lookup: deps.Lookup, DefaultDriver: cfg.DefaultDriver,
		JobRetention: cfg.JobRetention,
	})
	if err := srv.EnsureBuiltinQueues(ctx); err != nil {
		return nil, err
	}
	if err := srv.PrepareIndexes(ctx); err != nil { // else the first reads make them
		deps.Logger.Warn("prepare the indexes of the reads by index", "err", err)
	}
	// The web view at /ui/ reads through the routes above, in process.
	// With auth on it signs users in against the same issuer.
	var signIn *ui.OIDC
	if cfg.Auth.Enabled() {
		signIn = &ui.OIDC{Issuer: cfg.Auth.Issuer, ClientID: cfg.Auth.UIClient(), Scope: cfg.Auth.UIScope}
	}
	ui.Register(srv.Echo, ui.Options{API: srv.Echo, DB: deps.DB, JS: deps.JS, Lookup: deps.Lookup, OIDC: signIn, Logger: deps.Logger.With("component", "ui")})
	return &Service{cfg: cfg, deps: deps, server: srv}, nil
}

// Handler is the API's HTTP handler.
func (s *Service) Handler() http.Handler { return s.server.Echo }

// Serve answers requests until ctx ends, then drains in-flight ones.
func (s *Service) Serve(ctx context.Context) error {
	ln := s.deps.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.HTTPAddr); err != nil {
			return fmt.Errorf("api listen: %w", err)
		}
	}
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	hs.RegisterOnShutdown(s.server.EndStreams) // else they hold the drain until its timeout
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	go s.SweepArrayCancels(ctx)
	go s.server.ExpireJobs(ctx)
	s.deps.Logger.Info("api listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("api serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("api shutdown: %w", err)
	}
	return nil
}

// SweepArrayCancels finishes, now and periodically until ctx ends, the
// cancels of job arrays whose jobs were not all asked to cancel (the API
// answers an array's cancel first and asks its jobs after). Serve runs it.
func (s *Service) SweepArrayCancels(ctx context.Context) { s.server.SweepArrayCancels(ctx) }

// Run prepares the API and serves it until ctx ends.
func Run(ctx context.Context, cfg Config, deps Deps) error {
	s, err := New(ctx, cfg, deps)
	if err != nil {
		return err
	}
	return s.Serve(ctx)
}

// OpenAPI returns the OpenAPI document the API serves.
func (s *Service) OpenAPI() ([]byte, error) { return s.server.API.OpenAPI().MarshalJSON() }

// RouteRule is a route and what it needs while auth is on.
type RouteRule = httpapi.RouteRule

// Rules lists every route of the router with what it needs.
func (s *Service) Rules() []RouteRule { return s.server.Rules() }
