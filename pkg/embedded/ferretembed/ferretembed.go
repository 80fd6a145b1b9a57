// Package ferretembed owns the in-process MongoDB-wire-compatible store of the
// local all-in-one: FerretDB v1 with its SQLite backend, listening on TCP, plus
// the one SQLite-level repair FerretDB needs for fast updates by _id (see
// Server.EnsureIDIndex). It must not know about the services' collections or
// documents; callers name the collections they want indexed.
//
// FerretDB itself listens on a private loopback port; the public address is
// served by a small wire-protocol proxy (serialize.go) that lets one write
// command at a time through, across all client connections. FerretDB v1
// executes update, findAndModify and delete as query, filter in Go, then
// write by _id, with no lock or transaction spanning the read and the write
// (internal/handler/msg_update.go, common/update.go), so two concurrent
// conditional updates such as updateOne({_id, version: 3}, {$set: {version:
// 4}}) can both match and the second silently overwrites the first. The
// services rely on conditional single-document writes being atomic, as they
// are on MongoDB; serializing writes restores that. Reads are not serialized.
// Every client must use Server.URI, never FerretDB's own port.
package ferretembed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
)

// DefaultAddr is the address used when Config.Addr is empty: the standard
// MongoDB port, on loopback only because the embedded store has no auth.
const DefaultAddr = "127.0.0.1:27017"

// readyTimeout bounds how long Start waits for the first successful ping.
const readyTimeout = 10 * time.Second

// Config configures the embedded store.
type Config struct {
	// Addr is the TCP listen address, host:port. A port of 0 picks a free
	// port (see Server.URI). If empty, DefaultAddr is used.
	Addr string
	// Dir holds one SQLite file per database. Required; created if missing.
	Dir string
	// Logger receives FerretDB's warnings and errors. If nil, slog.Default()
	// is used.
	Logger *slog.Logger
}

// Server is a running embedded FerretDB.
type Server struct {
	dir         string
	uri         string        // the proxy's, for clients
	internalURI string        // FerretDB's own; nothing but the proxy may use it
	client      *mongo.Client // used by EnsureIDIndex to create collections through FerretDB
	proxy       *proxy

	cancel context.CancelFunc
	done   chan struct{}
}

// Start starts FerretDB and returns once it answers a ping. ctx bounds the
// start only; the server runs until Close.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("start ferretdb: Dir is required")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("start ferretdb: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("start ferretdb: %w", err)
	}
	addr := cfg.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	// The public listener first, so a taken address fails before FerretDB
	// opens anything.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("start ferretdb on %s: %w", addr, err)
	}
	proxyLog := logger.With("component", "ferretembed-proxy")
	// FerretDB logs every connection at info level; only warnings and errors
	// are worth the services' log volume.
	logger = slog.New(quietHandler{h: logger.Handler()}).With("component", "ferretdb")

	// FerretDB's SQLite URI must be a file: URL of a directory ending in "/".
	// It adds busy_timeout(10000) and journal_mode(wal) itself.
	sqliteURL := (&url.URL{Scheme: "file", Path: dir + "/"}).String()

	// Telemetry: ferretdb.New disables it and locks it off; the embedded
	// package never starts a reporter, so no network access is attempted.
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: sqliteURL,
	})
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("start ferretdb on %s: %w", addr, err)
	}

	// ferretdb.New binds its listener, so MongoDBURI reports the real port.
	s := &Server{
		dir:         dir,
		uri:         (&url.URL{Scheme: "mongodb", Host: ln.Addr().String(), Path: "/"}).String(),
		internalURI: f.MongoDBURI(),
		done:        make(chan struct{}),
	}

	// The server outlives Start's ctx; only Close stops it.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	go func() {
		defer close(s.done)
		_ = f.Run(runCtx) // always nil; it returns when runCtx is canceled
	}()

	upstream, err := url.Parse(s.internalURI)
	if err != nil {
		_ = ln.Close()
		cancel()
		<-s.done
		return nil, fmt.Errorf("start ferretdb on %s: %w", addr, err)
	}
	s.proxy = newProxy(ln, upstream.Host, defaultWriteLockTimeout, proxyLog)

	if err := s.waitReady(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("start ferretdb on %s: %w", addr, err)
	}
	return s, nil
}

func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI(s.uri))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	s.client = client
	if err := client.Ping(ctx, readpref.Primary()); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// URI returns the mongodb:// URI clients connect to, with the bound port: the
// write-serializing proxy's, never FerretDB's own.
func (s *Server) URI() string { return s.uri }

// Dir returns the absolute directory holding the SQLite files.
func (s *Server) Dir() string { return s.dir }

// Close stops accepting connections, closes the open ones (an in-flight
// request may or may not complete), stops FerretDB and closes the SQLite
// databases.
func (s *Server) Close() {
	if s.client != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.client.Disconnect(ctx)
		cancel()
	}
	s.proxy.close()
	s.cancel()
	<-s.done
}

// quietHandler passes FerretDB's warnings and errors on, except the dumps of
// failed command responses. FerretDB logs every ok:0 reply at warn level,
// header and body, and clients cause those routinely (the Go driver's
// endSessions on Disconnect, create on an existing collection); the client
// already gets the error, so they are dropped. Responses that close the
// connection are logged at error level and kept.
//
// WithAttrs and WithGroup are deferred to the rare record that is logged:
// FerretDB attaches every query's fields (whole documents) to its logger, and
// pre-formatting them took ~15% of an insert's time for nothing.
type quietHandler struct {
	h   slog.Handler
	ops []func(slog.Handler) slog.Handler
}

func (q quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && q.h.Enabled(ctx, l)
}

func (q quietHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelError &&
		(strings.HasPrefix(r.Message, "Response header:") || strings.HasPrefix(r.Message, "Response message:")) {
		return nil
	}
	h := q.h
	for _, op := range q.ops {
		h = op(h)
	}
	return h.Handle(ctx, r)
}

func (q quietHandler) with(op func(slog.Handler) slog.Handler) quietHandler {
	return quietHandler{h: q.h, ops: append(q.ops[:len(q.ops):len(q.ops)], op)}
}

func (q quietHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return q.with(func(h slog.Handler) slog.Handler { return h.WithAttrs(attrs) })
}

func (q quietHandler) WithGroup(name string) slog.Handler {
	return q.with(func(h slog.Handler) slog.Handler { return h.WithGroup(name) })
}
