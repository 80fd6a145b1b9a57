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
// are on MongoDB; serializing writes restores that. Every client must use
// Server.URI, never FerretDB's own port.
//
// # The locking rule
//
// Every command except the reads listed in readCommands (find, getMore,
// aggregate without $out or $merge, count, distinct, hello, ping, …) is a
// write, and so is any message whose command cannot be seen. A write takes
// the one write lock before it is forwarded, and the lock is released only
// when FerretDB's reply to it has been read by the proxy, whatever happens to
// the client meanwhile:
//
//   - A client that goes away (its driver gave up on a timeout and closed the
//     connection) does not release the lock; the proxy keeps the upstream
//     connection, reads and drops the replies still due, then releases.
//   - An unacknowledged write (OP_MSG flag moreToCome) is sent to FerretDB
//     with the flag cleared, holds the lock until FerretDB's reply, and that
//     reply is dropped, as the client expects none.
//   - A write held longer than the lock timeout (2 minutes) is logged; the
//     lock stays held.
//   - The lock is released without a reply only when FerretDB has closed the
//     upstream connection, which it does only after the command it was
//     running has returned (it runs one connection's commands one at a
//     time), or when the store shuts down: Server.Close then stops FerretDB,
//     which waits for its running commands, so no write of a closed store
//     lands after the next Start.
//
// Several writes pipelined on one connection share its hold on the lock;
// FerretDB runs them in order. Reads are not serialized: FerretDB writes a
// document with one SQLite statement, so a read sees it wholly before or
// wholly after.
//
// # What the proxy answers itself
//
// Under the write lock, and only for a write that is its connection's only
// one awaiting a reply, the proxy takes over the filter evaluation of
// exactly these commands (fastpath.go), because FerretDB uses its _id index
// only for a filter that is exactly {_id: X}:
//
//   - update with one statement (in the body or in an "updates" document
//     sequence) whose multi is absent or false, whose upsert is too unless
//     the filter is the _id alone and u a replacement, and whose u is a
//     replacement document or an update document of $set, $unset, $inc,
//     $mul, $min, $max, $setOnInsert, $push, $pull, $pullAll, $addToSet or
//     $pop, each on a non-empty document, no path set twice or inside
//     another;
//   - delete with one statement whose limit is 1;
//   - findAndModify with remove: true or such an update, upsert absent or
//     false, and new a bool (not true with remove);
//
// with no command fields but those, $db, and the ones FerretDB v1.24 accepts
// for the command and ignores (neutralFields in fastpath.go: lsid,
// txnNumber, $clusterTime, writeConcern, comment if a string, and so on;
// never let, collation, hint, sort, fields or arrayFilters); an OP_MSG
// whose flags are at most checksumPresent; and a filter that is _id equal
// to a string or ObjectId plus at least one other top-level field (no dot,
// no $) compared with a scalar (string, bool, int32, int64, double other
// than NaN, null, ObjectId) by value, $eq or $ne, or with $in of scalars, or
// $exists with a bool. Its semantics are MongoDB's: null matches null or a
// missing field, numbers compare by value across types, $ne is the negation
// of $eq (so {$ne: null} is false for a missing field), $in matches if any
// value is equal.
//
// For such a write it reads the document by {_id} on a connection of its
// own. If the document holds an array, document or other non-scalar under
// a condition, or a comparison of a double with an integer beyond 2^53, it
// forwards the command unchanged. If the document is missing, or the
// conditions hold, it forwards the command with the filter rewritten to
// {_id: X} (and any checksum dropped), so FerretDB does the write and
// replies. If the conditions are false, it replies itself with what FerretDB
// replies when nothing matches: update {n: 0, nModified: 0, ok: 1}, delete
// {n: 0, ok: 1}, findAndModify {lastErrorObject: {n: 0, updatedExisting:
// false (for an update)}, value: null, ok: 1}. Every other message, and any
// of these when the lookup fails, goes to FerretDB unchanged.
//
// Some it writes in SQL itself, in a transaction shared with the writes
// around it (groupcommit.go), and replies as FerretDB would
// (fastpath_direct.go): an insert of a document with a string _id, a
// replacement of a document its lookup found, and an upsert's new document
// when its lookup found none (FerretDB's unique _id_ index checks that
// miss: a refused insert goes to FerretDB).
//
// The tests hold it to this: TestProxyIsLinearizable checks histories of
// concurrent conditional writes across store restarts with porcupine, and
// TestFastPathDifferential compares random writes with FerretDB's own
// answers.
//
// It also answers, without forwarding them, its own commands avxrmLookup,
// avxrmMatchingIDs, avxrmMatchingVersions and avxrmLatestIDs
// (wirelookup.go): MatchingIDs, MatchingVersions and LatestIDs for clients
// that reach the store over the wire.
//
// # What the proxy changes
//
// It removes a top-level maxTimeMS from every OP_MSG command before
// forwarding it (maxtime.go): FerretDB v1.24 with modernc.org/sqlite v1.32
// can leave a pooled SQLite connection with a stale read snapshot when it
// cancels a query on maxTimeMS, which made reads, and the fast path's
// lookups, see old documents. Clients keep their own deadlines.
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
	"sync"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/avxrm/rm/pkg/embedded/dirlock"
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
	release     func() // the directory's lock
	dir         string
	uri         string        // the proxy's, for clients
	internalURI string        // FerretDB's own; nothing but the proxy may use it
	client      *mongo.Client // used by EnsureIDIndex to create collections through FerretDB
	proxy       *proxy
	fieldState                  // MatchingIDs' SQLite pools and indexes
	sqlLookups  sqlFieldLookups // the fast path's lookups in SQL (fastpath_sql.go)
	commits     groupCommit     // the direct writes' open transaction (groupcommit.go)

	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
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
	// One FerretDB on the SQLite files: a second would not see the first's
	// writes in its caches, nor the first its.
	release, err := dirlock.Lock(dir)
	if err != nil {
		return nil, fmt.Errorf("start ferretdb: store dir %w", err)
	}
	started := false
	defer func() {
		if !started {
			release()
		}
	}()
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
		release:     release,
		dir:         dir,
		uri:         (&url.URL{Scheme: "mongodb", Host: ln.Addr().String(), Path: "/"}).String(),
		internalURI: f.MongoDBURI(),
		done:        make(chan struct{}),
	}
	s.fieldSlots = make(chan struct{}, fieldConns)

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
	s.proxy.server.Store(s)

	started = true // from here Close releases the directory
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

// DialContext connects to the store in memory, for a client in the same
// process: options.Client().ApplyURI(s.URI()).SetDialer(s). network and
// address are ignored; the connection is the proxy's, as one to URI is.
func (s *Server) DialContext(ctx context.Context, _, _ string) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.proxy.dialPipe()
}

// Dir returns the absolute directory holding the SQLite files.
func (s *Server) Dir() string { return s.dir }

// Close stops accepting connections, closes the open ones (an in-flight
// request may or may not complete), stops FerretDB and closes the SQLite
// databases. Calls after the first do nothing.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		if s.client != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = s.client.Disconnect(ctx)
			cancel()
		}
		s.proxy.close()
		s.failAll() // a transaction left open is rolled back as its connection closes
		s.fieldDBs.close()
		s.closePinned()
		s.sqlLookups.dbs.close()
		s.sqlLookups.reads.close()
		s.cancel()
		<-s.done
		s.release()
	})
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
