// Package store is `avxrm store`: the all-in-one's embedded MongoDB-wire
// store (FerretDB on SQLite behind its write-serializing proxy) served alone,
// for deployments that cannot have MongoDB (deploy/compose's offline
// variant). It keeps the _id index FerretDB/SQLite needs for fast updates on
// every collection of the services' database as they appear.
//
// `avxrm store probe` pings a running store: the container's health check.
package store

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/avxrm/rm/cmd/avxrm/internal/flagdoc"
	"github.com/avxrm/rm/pkg/embedded/ferretembed"
)

// Config of the store; each field is an RM_* variable and a flag, which wins.
type Config struct {
	Addr     string        // RM_STORE_ADDR, --addr
	DataDir  string        // RM_DATA_DIR, --data-dir
	MongoDB  string        // RM_MONGO_DB, --mongo-db
	IndexGap time.Duration // RM_STORE_INDEX_INTERVAL, --index-interval
	// PprofAddr, if set, serves Go's profiles (net/http/pprof) there, to
	// find where the store's CPU goes under load: RM_STORE_PPROF_ADDR,
	// --pprof-addr. Off by default.
	PprofAddr string
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
	if err := flagdoc.Parse(fs, args, "store"); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.DataDir == "" || c.MongoDB == "" || c.IndexGap <= 0 {
		return c, errors.New("data dir and database must not be empty, index interval must be positive")
	}
	return c, nil
}

// PrintFlags writes the flags of 'avxrm store' with their defaults as the
// environment sets them (getenv), as cobra lists a command's flags.
func PrintFlags(w io.Writer, getenv func(string) string) error {
	return flagdoc.Write(w, func() (*flag.FlagSet, error) { return new(Config).flagSet(getenv) })
}

// flagSet is the flags of 'avxrm store', bound to c, their defaults read
// from the environment.
func (c *Config) flagSet(getenv func(string) string) (*flag.FlagSet, error) {
	fs := flag.NewFlagSet("avxrm store", flag.ContinueOnError)
	str := func(p *string, name, env, def, usage string) {
		if v := getenv(env); v != "" {
			def = v
		}
		fs.StringVar(p, name, def, usage+" (env "+env+")")
	}
	str(&c.Addr, "addr", "RM_STORE_ADDR", "127.0.0.1:27017", "MongoDB-wire listen address (0.0.0.0:27017 in a container)")
	str(&c.DataDir, "data-dir", "RM_DATA_DIR", "./.rm-data/store", "directory of the SQLite files")
	str(&c.MongoDB, "mongo-db", "RM_MONGO_DB", "rm", "the services' database, whose collections get the _id index")
	str(&c.PprofAddr, "pprof-addr", "RM_STORE_PPROF_ADDR", "", "serve Go's profiles (/debug/pprof/) on this address; off if empty")
	gap := "10s"
	if v := getenv("RM_STORE_INDEX_INTERVAL"); v != "" {
		gap = v
	}
	d, err := time.ParseDuration(gap)
	if err != nil || d <= 0 {
		return nil, fmt.Errorf("RM_STORE_INDEX_INTERVAL=%q: want a positive duration", gap)
	}
	fs.DurationVar(&c.IndexGap, "index-interval", d, "how often new collections are looked for (env RM_STORE_INDEX_INTERVAL)")
	return fs, nil
}

// Run serves the store until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	// Profiles are served before the store listens, so that a client that
	// sees the store answer finds them too, and a slow start can be profiled.
	if cfg.PprofAddr != "" {
		stop, err := servePprof(cfg.PprofAddr, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	srv, err := ferretembed.Start(ctx, ferretembed.Config{Addr: cfg.Addr, Dir: cfg.DataDir, Logger: log.With("component", "ferretdb")})
	if err != nil && ctx.Err() != nil {
		log.Info("store stopped while starting")
		return nil // asked to stop: not a failure to start
	}
	if err != nil {
		return err
	}
	defer srv.Close()
	log.Info("store serving", "addr", cfg.Addr, "dir", srv.Dir())
	client, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
	if err != nil {
		return err
	}
	defer func() { _ = client.Disconnect(context.WithoutCancel(ctx)) }()
	indexed := map[string]bool{}
	t := time.NewTicker(cfg.IndexGap)
	defer t.Stop()
	for {
		names, err := client.Database(cfg.MongoDB).ListCollectionNames(ctx, bson.D{})
		for _, c := range names {
			if indexed[c] || err != nil {
				continue
			}
			if err = srv.EnsureIDIndex(ctx, cfg.MongoDB, c); err == nil {
				indexed[c] = true
				log.Info("_id index ensured", "collection", c)
			}
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("ensure _id indexes", "err", err)
		}
		select {
		case <-ctx.Done():
			log.Info("store stopping")
			return nil
		case <-t.C:
		}
	}
}

// Probe pings the store at addr (0.0.0.0 or an empty host mean this host).
func Probe(ctx context.Context, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	uri := "mongodb://" + net.JoinHostPort(host, port) + "/?directConnection=true"
	const wait = 5 * time.Second
	pctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetServerSelectionTimeout(wait - time.Second))
	if err != nil {
		return err
	}
	defer func() { _ = client.Disconnect(context.WithoutCancel(pctx)) }()
	if err := client.Ping(pctx, nil); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The driver's error lists its topology, which says nothing more.
		return fmt.Errorf("no store answers at %s (waited %s)", net.JoinHostPort(host, port), wait)
	}
	return nil
}

// Main is `avxrm store [probe] [flags]`; -h or --help returns flag.ErrHelp
// for the caller to print the help (PrintFlags).
func Main(ctx context.Context, args []string, getenv func(string) string, log *slog.Logger) error {
	probe := len(args) > 0 && args[0] == "probe"
	if probe {
		args = args[1:]
	}
	cfg, err := Load(args, getenv)
	if err != nil {
		return err
	}
	if probe {
		return Probe(ctx, cfg.Addr)
	}
	return Run(ctx, cfg, log)
}

// servePprof serves net/http/pprof's handlers on addr until stop.
func servePprof(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof address: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	log.Info("profiles served", "addr", ln.Addr().String())
	return func() { _ = hs.Close() }, nil
}
