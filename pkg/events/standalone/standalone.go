// Package standalone is what each service's own binary (cmd/rm-<service>)
// does around the service: JSON logs, a context cancelled by SIGINT/SIGTERM,
// the settings (RM_* variables and flags, --help prints them), the MongoDB and
// NATS connections from RM_MONGO_URI and RM_NATS_URL, the
// event streams, an outbox relay, a metrics registry and the /metrics,
// /healthz and /readyz endpoints. The local all-in-one (cmd/avxrm) does the
// same for all services at once.
package standalone

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/buildinfo"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Env is what a service's binary gets to run the service with.
type Env struct {
	DB       *mongo.Database // RM_MONGO_DB of RM_MONGO_URI, default "rm"
	NC       *nats.Conn
	JS       jetstream.JetStream
	Outbox   *outbox.Outbox       // its relay runs every RM_OUTBOX_INTERVAL; register the collections the service writes
	Registry *prometheus.Registry // Go and process collectors included
	Log      *slog.Logger
	HTTPAddr string // RM_HTTP_ADDR: the API, or /metrics, /healthz and /readyz of the others
	name     string // the service's name, e.g. rm-scheduler: its check's in /readyz
	// Lookup is the store's reads by index over the wire, for the services'
	// hot reads (indexed.Reader): set on the embedded store (`avxrm store`,
	// whose proxy answers them), nil on MongoDB (its indexes serve them).
	Lookup indexed.Lookup
}

// Service is one service's binary.
type Service struct {
	Name     string // the binary's name, e.g. rm-api; also its NATS connection name
	Doc      string // one line for --help
	HTTPAddr string // default of RM_HTTP_ADDR
	// StoreWait, if set, is how long an operation waits for a store it
	// cannot reach (the MongoDB client's server selection; 0: the
	// client's 30 s) before it fails. The API sets it below its clients'
	// patience, so a request answers 503 in time for them to see it and try
	// again. serverSelectionTimeoutMS in RM_MONGO_URI wins over it.
	StoreWait time.Duration
	// Settings declares the service's own settings into variables that Run
	// reads; it is called once, before Run.
	Settings func(s *Settings)
	// Check, if set, checks the service's own settings once they are read,
	// before anything connects: its error names the settings at fault.
	Check func() error
	// Run runs the service until ctx ends.
	Run func(ctx context.Context, e *Env) error
}

// common are the settings every service binary has.
type common struct {
	mongoURI, mongoDB                      string
	natsURL, natsUser, natsPass, natsCreds string
	httpAddr, logLevel, logFormat          string
	outboxInterval, eventsMaxAge           time.Duration
	eventsReplicas                         int
}

// natsCredentials applies events.Credentials' rules to the settings rather
// than to the process environment, since a flag may have set them.
func (c *common) natsCredentials() ([]nats.Option, error) {
	set := map[string]string{"RM_NATS_USER": c.natsUser, "RM_NATS_PASSWORD": c.natsPass, "RM_NATS_CREDS": c.natsCreds}
	return events.Credentials(func(k string) string { return set[k] })
}

func (c *common) declare(s *Settings, httpAddr string) {
	s.String(&c.mongoURI, "mongo-uri", "RM_MONGO_URI", "", "MongoDB URI (required); a replica set, for retryable and majority writes")
	s.String(&c.mongoDB, "mongo-db", "RM_MONGO_DB", "rm", "database name")
	s.String(&c.natsURL, "nats-url", "RM_NATS_URL", "", "NATS URL(s), comma-separated (required); JetStream must be enabled")
	s.String(&c.natsUser, "nats-user", "RM_NATS_USER", "", "NATS user name, if the server requires one")
	s.String(&c.natsPass, "nats-password", "RM_NATS_PASSWORD", "", "NATS password of that user (prefer the variable to the flag)")
	s.String(&c.natsCreds, "nats-creds", "RM_NATS_CREDS", "", "NATS credentials file (JWT and nkey seed) instead of a user name and password")
	s.String(&c.httpAddr, "http-addr", "RM_HTTP_ADDR", httpAddr, "listen address of the API, or of /metrics, /healthz and /readyz (default :8080 api, :8081 scheduler, :8082 launcher, :8083 scenario-export)")
	s.String(&c.logLevel, "log-level", "RM_LOG_LEVEL", "info", "debug, info, warn or error")
	s.String(&c.logFormat, "log-format", "RM_LOG_FORMAT", "json", "json or text")
	s.Duration(&c.outboxInterval, "outbox-interval", "RM_OUTBOX_INTERVAL", "2s", "how often the relay publishes events left unsent by a crash")
	s.Duration(&c.eventsMaxAge, "events-max-age", "RM_EVENTS_MAX_AGE", "0s", "drop events older than this from RM_EVENTS (0 keeps them)")
	s.Int(&c.eventsReplicas, "events-replicas", "RM_EVENTS_REPLICAS", "1", "replicas of the event streams (3 on a NATS cluster)")
}

// natsClosed says why NATS closed nc for good: mostly the credentials it
// refused, named by their settings.
func (c *common) natsClosed(nc *nats.Conn) error {
	why := nc.LastError()
	if why == nil {
		why = nats.ErrConnectionClosed
	}
	who := "anonymously (neither RM_NATS_USER nor RM_NATS_CREDS is set)"
	switch {
	case c.natsCreds != "":
		who = "with the credentials file RM_NATS_CREDS=" + c.natsCreds
	case c.natsUser != "":
		who = fmt.Sprintf("as RM_NATS_USER=%q with RM_NATS_PASSWORD", c.natsUser)
	}
	return fmt.Errorf("NATS at %s (RM_NATS_URL) closed the connection made %s: %w", redactedURLs(c.natsURL), who, why)
}

// redactedURLs is the comma-separated urls with each one's password, if it
// carries one (nats://user:password@host), replaced by xxxxx: for messages,
// which end up in logs.
func redactedURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, raw := range parts {
		raw = strings.TrimSpace(raw)
		bare := !strings.Contains(raw, "://") // nats.go takes user:password@host:port alone
		if bare {
			raw = "nats://" + raw
		}
		u, err := url.Parse(raw)
		if err != nil || u.User == nil {
			continue
		}
		parts[i] = u.Redacted()
		if bare {
			parts[i] = strings.TrimPrefix(parts[i], "nats://")
		}
	}
	return strings.Join(parts, ",")
}

func (c *common) validate() error {
	var errs []error
	if c.mongoURI == "" {
		errs = append(errs, errors.New("RM_MONGO_URI (--mongo-uri) is required"))
	} else if err := checkMongoURI(c.mongoURI); err != nil {
		errs = append(errs, err)
	}
	if c.natsURL == "" {
		errs = append(errs, errors.New("RM_NATS_URL (--nats-url) is required"))
	} else if err := checkNATSURLs(c.natsURL); err != nil {
		errs = append(errs, err)
	}
	if err := checkListenAddr(c.httpAddr); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.natsCredentials(); err != nil {
		errs = append(errs, err)
	}
	if c.mongoDB == "" {
		errs = append(errs, errors.New("RM_MONGO_DB (--mongo-db) must not be empty"))
	}
	if _, err := level(c.logLevel); err != nil {
		errs = append(errs, err)
	}
	if c.logFormat != "json" && c.logFormat != "text" {
		errs = append(errs, fmt.Errorf("RM_LOG_FORMAT=%q: want json or text", c.logFormat))
	}
	if c.outboxInterval <= 0 {
		errs = append(errs, errors.New("RM_OUTBOX_INTERVAL must be positive"))
	}
	if c.eventsReplicas < 1 || c.eventsReplicas > 5 {
		errs = append(errs, fmt.Errorf("RM_EVENTS_REPLICAS=%d: want 1 to 5", c.eventsReplicas))
	}
	return errors.Join(errs...)
}

// checkMongoURI parses a mongodb:// URI as the driver will (a
// mongodb+srv:// one only by its scheme: parsing it looks up DNS records,
// which may not be there yet). The URI is not repeated: it may hold a password.
func checkMongoURI(uri string) error {
	switch {
	case strings.HasPrefix(uri, "mongodb+srv://"):
		return nil
	case !strings.HasPrefix(uri, "mongodb://"):
		return errors.New("RM_MONGO_URI: want a mongodb:// or mongodb+srv:// URI")
	}
	if err := options.Client().ApplyURI(uri).Validate(); err != nil {
		return fmt.Errorf("RM_MONGO_URI: %w", err)
	}
	return nil
}

// checkNATSURLs checks each comma-separated URL of RM_NATS_URL: a scheme
// NATS clients take (nats, tls, ws, wss) and a host.
func checkNATSURLs(urls string) error {
	for _, raw := range strings.Split(urls, ",") {
		raw = strings.TrimSpace(raw)
		if !strings.Contains(raw, "://") {
			raw = "nats://" + raw // nats.go takes host:port alone
		}
		u, err := url.Parse(raw)
		switch {
		case err != nil:
			return fmt.Errorf("RM_NATS_URL: %q is not a URL: %v", raw, err)
		case u.Scheme != "nats" && u.Scheme != "tls" && u.Scheme != "ws" && u.Scheme != "wss":
			return fmt.Errorf("RM_NATS_URL: %q: want the scheme nats://, tls://, ws:// or wss://, not %s://", u.Redacted(), u.Scheme)
		case u.Hostname() == "":
			return fmt.Errorf("RM_NATS_URL: %q names no host", u.Redacted())
		}
	}
	return nil
}

// checkListenAddr checks that RM_HTTP_ADDR is a host:port to listen on.
func checkListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err == nil && port != "" {
		_, err = net.LookupPort("tcp", port)
	}
	if err != nil {
		return fmt.Errorf("RM_HTTP_ADDR=%q: want host:port or :port, e.g. :8080 (%v)", addr, err)
	}
	return nil
}

func level(v string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(v)); err != nil {
		return l, fmt.Errorf("RM_LOG_LEVEL=%q: want debug, info, warn or error", v)
	}
	return l, nil
}

// declare returns the settings of svc with the common ones first.
func (svc *Service) declare(getenv func(string) string) (*Settings, *common) {
	s := newSettings(svc.Name, getenv)
	c := &common{}
	c.declare(s, svc.HTTPAddr)
	if svc.Settings != nil {
		svc.Settings(s)
	}
	return s, c
}

// CommonTable is the Markdown table of the settings every service binary
// has, as the README shows it (with no default listen address: each binary
// has its own).
func CommonTable() string {
	s := newSettings("", noEnv)
	(&common{}).declare(s, "")
	return table(s.list)
}

// Table is the Markdown table of svc's own settings, as --help prints it and
// the README shows it.
func (svc *Service) Table() string {
	s, _ := svc.declare(noEnv)
	return table(s.list[commonCount:])
}

// Help is what --help prints.
func (svc *Service) Help() string {
	s, _ := svc.declare(noEnv)
	return fmt.Sprintf("%s: %s\n\nusage: %s [--flag=value ...]\n       %s probe      exit 0 if /readyz at RM_HTTP_ADDR answers 200 (a container health check)\n       %s --version  print the build (also GET /version and the metric rm_build_info)\n\nEach setting is an environment variable and a flag, which wins.\n\nCommon settings:\n\n%s\nSettings of %s:\n\n%s",
		svc.Name, svc.Doc, svc.Name, svc.Name, svc.Name, table(s.list[:commonCount]), svc.Name, table(s.list[commonCount:]))
}

func noEnv(string) string { return "" }

// commonCount is how many settings common declares.
var commonCount = func() int {
	s := newSettings("", noEnv)
	(&common{}).declare(s, "")
	return len(s.list)
}()

// Main runs svc with the process's arguments and environment until SIGINT or
// SIGTERM, and exits: 0 after a clean stop or --help, 2 on bad settings, 1
// if anything failed.
func Main(svc *Service) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Exec(ctx, svc, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exec is Main without the process: it returns the exit status.
func Exec(ctx context.Context, svc *Service, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if slices.Contains(args, "--version") || slices.Contains(args, "-version") {
		fmt.Fprintf(stdout, "%s %s\n", svc.Name, buildinfo.Get())
		return 0
	}
	s, c := svc.declare(getenv)
	probe := len(args) > 0 && args[0] == "probe"
	if probe {
		args = args[1:]
	}
	err := s.parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, svc.Help())
		return 0
	}
	if probe && err == nil {
		if err = Probe(ctx, c.httpAddr); err != nil {
			fmt.Fprintf(stderr, "%s probe: %v\n", svc.Name, err)
			return 1
		}
		return 0
	}
	if err == nil {
		err = c.validate()
		if svc.Check != nil {
			err = errors.Join(err, svc.Check())
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n(%s --help lists the settings)\n", svc.Name, err, svc.Name)
		return 2
	}
	lvl, _ := level(c.logLevel)
	var h slog.Handler = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl})
	if c.logFormat == "text" {
		h = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl})
	}
	log := slog.New(h).With("service", svc.Name)
	bi := buildinfo.Get()
	log.Info(svc.Name+" starting", "version", bi.Version, "go_version", bi.GoVersion)
	// A stop (SIGTERM, SIGINT) is logged when it comes and when it is done,
	// with how long finishing the work in hand took.
	var stoppingAt time.Time
	said := make(chan struct{})
	unwatch := context.AfterFunc(ctx, func() {
		stoppingAt = time.Now()
		log.Info(svc.Name + " stopping")
		close(said)
	})
	err = run(ctx, svc, c, log)
	if !unwatch() {
		<-said
	}
	if err != nil {
		log.Error(svc.Name+" stopped", "err", err)
		return 1
	}
	var took time.Duration
	if !stoppingAt.IsZero() {
		took = time.Since(stoppingAt).Round(time.Millisecond)
	}
	log.Info(svc.Name+" stopped", "took", took.String())
	return 0
}

// clientOptions are the MongoDB client's options of svc: an operation may
// take 30 s; its wait for an unreachable store is svc.StoreWait unless uri
// sets serverSelectionTimeoutMS.
func clientOptions(svc *Service, uri string) *options.ClientOptions {
	o := options.Client()
	if svc.StoreWait > 0 {
		o.SetServerSelectionTimeout(svc.StoreWait)
	}
	return o.ApplyURI(uri).SetTimeout(30 * time.Second)
}

// disconnectWait bounds the client's Disconnect at a stop. Its ending of
// the client's sessions on the server waits, as any operation does, for a
// store it cannot reach: 30 s, Kubernetes' whole grace, after which the
// process is killed. Nothing needs it: the server drops sessions nobody
// ends after 30 minutes.
const disconnectWait = time.Second

func run(ctx context.Context, svc *Service, c *common, log *slog.Logger) error {
	mc, err := mongo.Connect(clientOptions(svc, c.mongoURI).SetServerMonitor(newStoreWatch(log).monitor()))
	if err != nil {
		return fmt.Errorf("connect mongodb: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), disconnectWait)
		defer cancel()
		_ = mc.Disconnect(dctx)
	}()
	creds, err := c.natsCredentials()
	if err != nil {
		return err
	}
	// Reconnect soon after a NATS restart (the default waits 2 s): a
	// leader's renewals are buffered until then.
	// The last failure to reach NATS, for the warnings while it cannot be
	// reached (nats.go keeps no error of a failed dial).
	var dialErr atomic.Pointer[error]
	opts := append(creds, nats.Name(svc.Name), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) { dialErr.Store(&err) }))
	nc, err := nats.Connect(c.natsURL, opts...)
	if err != nil {
		return fmt.Errorf("connect nats (RM_NATS_URL): %w", err)
	}
	defer nc.Drain()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	// NATS may still be starting: retry until it answers or ctx ends. A
	// connection NATS closed (it refused the credentials) is not retried:
	// nats.go gives it up for good, and each retry failed alike.
	if err := untilReady(ctx, log, "event streams not ready; retrying", func() error {
		if nc.IsClosed() {
			return permanent{c.natsClosed(nc)}
		}
		err := events.EnsureStreams(ctx, js, c.eventsMaxAge, c.eventsReplicas)
		switch {
		case err == nil || nc.IsConnected():
			return err
		case nc.IsClosed():
			return permanent{c.natsClosed(nc)}
		}
		why := err
		if d := dialErr.Load(); d != nil {
			why = *d
		}
		return fmt.Errorf("not connected to NATS at %s (RM_NATS_URL): %w", redactedURLs(c.natsURL), why)
	}); err != nil {
		return err
	}
	lookup, err := probeLookup(ctx, mc.Database(c.mongoDB), log)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(outbox.Collectors()...)
	reg.MustRegister(buildinfo.Collector())
	e := &Env{
		DB: mc.Database(c.mongoDB), NC: nc, JS: js, Lookup: lookup,
		Outbox:   outbox.New(events.NewPublisher(js), log.With("component", "outbox")),
		Registry: reg, Log: log, HTTPAddr: c.httpAddr, name: svc.Name,
	}
	// The service's writes carry their events; the relay publishes those a
	// crash left unsent, in the collections the service registers.
	rctx, stopRelay := context.WithCancel(ctx)
	relay := make(chan struct{})
	go func() { e.Outbox.Run(rctx, c.outboxInterval); close(relay) }()
	err = svc.Run(ctx, e)
	stopRelay()
	<-relay
	if err == nil {
		// Nothing writes any more: retired now, this instance is not
		// swept for by the other services' relays when it stops renewing
		// (outbox.Close). A store that does not answer in 5 s is not
		// waited for: the other relays sweep for the instance instead.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if cerr := e.Outbox.Close(cctx); cerr != nil {
			log.Warn("outbox not closed; other relays will sweep for it", "err", cerr)
		}
	}
	return err
}

// readyTimeout bounds the checks of /readyz: a store or NATS that does not
// answer makes it answer 503 in that time rather than leave the probe
// waiting (a check that waits for NATS waits as long as it is gone).
const readyTimeout = 2 * time.Second

// ServeOps serves /metrics, /healthz, /readyz and /version on addr in the
// background until ctx ends. /readyz answers as the API's does: 200 when the
// connection to NATS is up, the store answers a ping and ready (the
// service's own condition) returns nil, else 503; its body,
// {"ready": bool, "checks": {"nats": …, "mongodb": …, <service>: …}},
// says "ok" or what failed for each. /healthz answers 200 while the process
// serves.
func (e *Env) ServeOps(ctx context.Context, addr string, ready func(context.Context) error) error {
	checks := []readyCheck{
		{"nats", func(context.Context) error {
			if !e.NC.IsConnected() {
				return fmt.Errorf("not connected (%s)", e.NC.Status())
			}
			return nil
		}},
		{"mongodb", func(ctx context.Context) error { return e.DB.Client().Ping(ctx, nil) }},
		{e.name, ready},
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(e.Registry, promhttp.HandlerOpts{}))
	mux.Handle("/version", buildinfo.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ok, body := runChecks(r.Context(), checks)
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(body)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	context.AfterFunc(ctx, func() { _ = hs.Close() })
	return nil
}

type readyCheck struct {
	name  string
	check func(context.Context) error
}

// runChecks runs checks at once, each bounded by readyTimeout, and returns
// whether all passed and the body of /readyz.
func runChecks(ctx context.Context, checks []readyCheck) (bool, map[string]any) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() { errs[i] = c.check(ctx) })
	}
	wg.Wait()
	ok, results := true, map[string]string{}
	for i, c := range checks {
		results[c.name] = "ok"
		if errs[i] != nil {
			ok, results[c.name] = false, errs[i].Error()
		}
	}
	return ok, map[string]any{"ready": ok, "checks": results}
}

// Probe asks /readyz on this host at the port of addr, and fails unless it
// answers 200 within 5 seconds.
func Probe(ctx context.Context, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("/readyz: %s %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
