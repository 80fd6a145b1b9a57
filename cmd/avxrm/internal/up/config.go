package up

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/flagdoc"
	"github.com/avxrm/rm/services/api"
)

// Config of the all-in-one. Each field comes from an RM_* environment
// variable, overridden by the flag of the same name; the zero value of a field
// means its default.
type Config struct {
	DataDir        string        // RM_DATA_DIR, --data-dir: everything stored, default ./.rm-data
	HTTPAddr       string        // RM_HTTP_ADDR, --http-addr: the API, default 127.0.0.1:8080
	NATSAddr       string        // RM_NATS_ADDR, --nats-addr: embedded NATS, default 127.0.0.1:4222
	MongoAddr      string        // RM_MONGO_ADDR, --mongo-addr: embedded MongoDB wire, default 127.0.0.1:27017
	MongoURI       string        // RM_MONGO_URI, --mongo-uri: use this MongoDB instead of the embedded one
	MongoDB        string        // RM_MONGO_DB, --mongo-db: database name, default rm
	NATSURL        string        // RM_NATS_URL, --nats-url: use this NATS instead of the embedded one
	LogFormat      string        // RM_LOG_FORMAT, --log-format: text|json, default text on a terminal, json otherwise
	LogLevel       string        // RM_LOG_LEVEL, --log-level: debug|info|warn|error, default info
	EventsMaxAge   time.Duration // RM_EVENTS_MAX_AGE, --events-max-age: age limit of RM_EVENTS, default 0 (keep)
	OutboxInterval time.Duration // RM_OUTBOX_INTERVAL, --outbox-interval: relay sweep period, default 2s
	ExportTTL      time.Duration // RM_EXPORT_TTL, --export-ttl: how long scenario exports are kept, default 168h
	JobRetention   time.Duration // RM_JOB_RETENTION, --job-retention: how long a job is kept after it ended, default 0 (keep)
	ArtifactMax    int64         // RM_ARTIFACT_MAX_BYTES, --artifact-max-bytes: upload limit per artifact, default 1 GiB
	DevIdP         bool          // RM_DEV_IDP=1, --dev-idp: run the development identity provider and turn auth on with it
	DevIdPAddr     string        // RM_DEV_IDP_ADDR, --dev-idp-addr: where the dev IdP listens, default 127.0.0.1:8180
	AuthOff        bool          // RM_AUTH=off: serve without auth on a non-loopback address, deliberately

	// Auth is read from RM_OIDC_* (docs/auth.md); no issuer and no dev IdP: auth is off.
	Auth api.AuthConfig
	// NATSUser and NATSPassword (RM_NATS_USER, RM_NATS_PASSWORD) are the
	// services' NATS account: required by the embedded server while auth is
	// on (a random password if none is set), given to an external one.
	NATSUser, NATSPassword string
	// NATSCreds (RM_NATS_CREDS) authenticates to an external NATS instead.
	NATSCreds string

	// DisableLauncher leaves the launcher out (no setting: for tests that
	// play the launcher's part themselves).
	DisableLauncher bool
}

// setting describes one configuration entry, for flags, env and the README.
type setting struct {
	name, env, def, usage string
	str                   *string
	dur                   *time.Duration
	num                   *int64
}

func (c *Config) settings() []setting {
	return []setting{
		{"data-dir", "RM_DATA_DIR", "./.rm-data", "directory for all data (NATS, SQLite); one system at a time uses it (a second is refused)", &c.DataDir, nil, nil},
		{"http-addr", "RM_HTTP_ADDR", "127.0.0.1:8080", "API listen address", &c.HTTPAddr, nil, nil},
		{"nats-addr", "RM_NATS_ADDR", "127.0.0.1:4222", "embedded NATS listen address", &c.NATSAddr, nil, nil},
		{"mongo-addr", "RM_MONGO_ADDR", "127.0.0.1:27017", "embedded MongoDB-wire (FerretDB) listen address", &c.MongoAddr, nil, nil},
		{"mongo-uri", "RM_MONGO_URI", "", "external MongoDB URI; the embedded store is not started", &c.MongoURI, nil, nil},
		{"mongo-db", "RM_MONGO_DB", "rm", "database name", &c.MongoDB, nil, nil},
		{"nats-url", "RM_NATS_URL", "", "external NATS URL; the embedded server is not started", &c.NATSURL, nil, nil},
		{"log-format", "RM_LOG_FORMAT", "", "text or json (default: text on a terminal, json otherwise)", &c.LogFormat, nil, nil},
		{"log-level", "RM_LOG_LEVEL", "info", "debug, info, warn or error", &c.LogLevel, nil, nil},
		{"events-max-age", "RM_EVENTS_MAX_AGE", "0s", "drop events older than this from RM_EVENTS (0 keeps them)", nil, &c.EventsMaxAge, nil},
		{"outbox-interval", "RM_OUTBOX_INTERVAL", "2s", "how often the relay publishes events left unsent by a crash", nil, &c.OutboxInterval, nil},
		{"export-ttl", "RM_EXPORT_TTL", "168h", "how long a scenario export and its zip are kept", nil, &c.ExportTTL, nil},
		{"job-retention", "RM_JOB_RETENTION", "0s", "delete each job that ended (succeeded, failed, cancelled) this long ago, as DELETE /jobs/{id} does (0 keeps every job)", nil, &c.JobRetention, nil},
		{"artifact-max-bytes", "RM_ARTIFACT_MAX_BYTES", "1073741824", "largest artifact upload accepted, in bytes", nil, nil, &c.ArtifactMax},
		{"dev-idp-addr", "RM_DEV_IDP_ADDR", "127.0.0.1:8180", "dev IdP listen address (loopback only)", &c.DevIdPAddr, nil, nil},
	}
}

// Load reads the environment, then args as flags. -h or --help returns
// flag.ErrHelp, having printed nothing (PrintFlags lists the flags); a bad
// flag is an error that says where the flags are listed.
func Load(args []string, getenv func(string) string) (Config, error) {
	var c Config
	fs, err := c.flagSet(getenv)
	if err != nil {
		return c, err
	}
	if err := flagdoc.Parse(fs, args, "up"); err != nil {
		return c, err
	}
	if fs.NArg() > 0 { // else 'avxrm up extra' would start a server as if it were not there
		return c, fmt.Errorf("unexpected argument %q: 'avxrm up' takes only flags ('avxrm up --help' lists them)", fs.Arg(0))
	}
	c.Auth = api.AuthConfigFromEnv(getenv)
	c.AuthOff = strings.EqualFold(getenv("RM_AUTH"), "off")
	c.NATSUser, c.NATSPassword, c.NATSCreds = getenv("RM_NATS_USER"), getenv("RM_NATS_PASSWORD"), getenv("RM_NATS_CREDS")
	return c, c.validate()
}

// PrintFlags writes the flags of 'avxrm up' with their defaults as the
// environment sets them (getenv).
func PrintFlags(w io.Writer, getenv func(string) string) error {
	return flagdoc.Write(w, func() (*flag.FlagSet, error) { return new(Config).flagSet(getenv) })
}

// flagSet is the flags of 'avxrm up', bound to c, their defaults read
// from the environment.
func (c *Config) flagSet(getenv func(string) string) (*flag.FlagSet, error) {
	fs := flag.NewFlagSet("avxrm up", flag.ContinueOnError)
	for _, s := range c.settings() {
		def := s.def
		if v := getenv(s.env); v != "" {
			def = v
		}
		usage := fmt.Sprintf("%s (env %s)", s.usage, s.env)
		switch {
		case s.str != nil:
			fs.StringVar(s.str, s.name, def, usage)
		case s.num != nil:
			n, err := strconv.ParseInt(def, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.env, err)
			}
			fs.Int64Var(s.num, s.name, n, usage)
		default:
			d, err := time.ParseDuration(def)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.env, err)
			}
			fs.DurationVar(s.dur, s.name, d, usage)
		}
	}
	devIdP := getenv("RM_DEV_IDP")
	fs.BoolVar(&c.DevIdP, "dev-idp", devIdP == "1" || strings.EqualFold(devIdP, "true"), devIdPUsage+" (env RM_DEV_IDP=1)")
	return fs, nil
}

func (c *Config) validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir is empty"))
	}
	switch c.LogFormat {
	case "", "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log format %q: want text or json", c.LogFormat))
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log level %q: want debug, info, warn or error", c.LogLevel))
	}
	if c.OutboxInterval <= 0 {
		errs = append(errs, fmt.Errorf("outbox interval %v: must be positive", c.OutboxInterval))
	}
	if c.ExportTTL <= 0 {
		errs = append(errs, fmt.Errorf("export ttl %v: must be positive", c.ExportTTL))
	}
	if c.ArtifactMax <= 0 {
		errs = append(errs, fmt.Errorf("artifact max bytes %d: must be positive", c.ArtifactMax))
	}
	if c.DevIdP && c.Auth.Enabled() {
		errs = append(errs, errors.New("--dev-idp and RM_OIDC_ISSUER are both set: pick one issuer"))
	}
	if c.JobRetention < 0 {
		errs = append(errs, fmt.Errorf("RM_JOB_RETENTION (--job-retention) %v: must not be negative (0 keeps every job)", c.JobRetention))
	}
	if c.EventsMaxAge < 0 {
		errs = append(errs, fmt.Errorf("events max age %v: must not be negative", c.EventsMaxAge))
	}
	for _, a := range []struct{ flag, addr string }{{"http-addr", c.HTTPAddr}, {"nats-addr", c.NATSAddr},
		{"mongo-addr", c.MongoAddr}, {"dev-idp-addr", c.DevIdPAddr}} {
		if err := checkListenAddr(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("--%s %q: %w", a.flag, a.addr, err))
		}
	}
	if abs, err := filepath.Abs(c.DataDir); err == nil {
		c.DataDir = abs
	}
	return errors.Join(errs...)
}

// checkListenAddr says what is wrong with a listen address, before
// anything listens: "nonsense" would otherwise be refused as a non-loopback
// address without auth.
func checkListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port, e.g. 127.0.0.1:8080 (0.0.0.0:8080 for every interface)")
	}
	if _, err := net.LookupPort("tcp", port); err != nil || port == "" {
		return fmt.Errorf("port %q: want a number from 0 to 65535", port)
	}
	return nil
}

const devIdPUsage = "run the development OIDC provider (users admin, user, viewer; passwords printed) and turn auth on with it"

// Usage prints the settings as a Markdown table (used to keep the README true).
func Usage() string {
	var c Config
	var b strings.Builder
	b.WriteString("| Environment | Flag | Default | Meaning |\n|---|---|---|---|\n")
	for _, s := range c.settings() {
		def := s.def
		if def == "" {
			def = "—"
		}
		fmt.Fprintf(&b, "| `%s` | `--%s` | `%s` | %s |\n", s.env, s.name, def, s.usage)
	}
	fmt.Fprintf(&b, "| `RM_DEV_IDP=1` | `--dev-idp` | off | %s |\n", devIdPUsage)
	return b.String()
}
