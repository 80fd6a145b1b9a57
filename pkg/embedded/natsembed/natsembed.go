// Package natsembed owns the in-process NATS server of the local all-in-one:
// JetStream on disk, no auth unless users are given, logs sent to slog. It must not know about
// events, streams or subjects; pkg/events declares those.
package natsembed

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/crypto/bcrypt"
)

// DefaultAddr is the address used when Config.Addr is empty: the standard
// NATS client port, on loopback only because the embedded server has no auth.
const DefaultAddr = "127.0.0.1:4222"

// readyTimeout bounds how long Start waits for the server to accept clients.
const readyTimeout = 10 * time.Second

// Config configures the embedded server.
type Config struct {
	// Addr is the client listen address, host:port. A port of 0 picks a free
	// port (see Server.ClientURL). If empty, DefaultAddr is used.
	Addr string
	// StoreDir is the JetStream file store directory. Required.
	StoreDir string
	// Logger receives the server's warnings and errors. If nil, slog.Default()
	// is used.
	Logger *slog.Logger
	// Users, if any, are the only accounts that may connect: anonymous
	// clients are refused.
	Users []User
}

// User is an account of the embedded server. Publish and Subscribe, if not
// empty, are the subjects it may use (wildcards allowed); empty means all.
type User struct {
	Name, Password     string
	Publish, Subscribe []string
}

// stored is how the server keeps password: its bcrypt hash, which the
// server compares each connection's password with, so that it holds no
// password in the clear (and does not warn "Plaintext passwords detected"
// at every start). The cost is bcrypt's least: the password is the
// all-in-one's own random one or the operator's, compared on each of the
// services' few connections. A password bcrypt cannot take (over 72 bytes)
// is kept as given.
func stored(password string) string {
	if password == "" {
		return ""
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		return password
	}
	return string(h)
}

// Server is a running embedded NATS server.
type Server struct {
	ns *server.Server
}

// Start starts the server and returns once it accepts client connections.
func Start(cfg Config) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("start nats: StoreDir is required")
	}
	addr := cfg.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("start nats: parse addr %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("start nats: parse port of %q: %w", addr, err)
	}
	if port == 0 {
		// nats-server treats 0 as "default port 4222"; -1 asks for a free one.
		port = server.RANDOM_PORT
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}

	opts := &server.Options{
		Host:      host,
		Port:      port,
		JetStream: true,
		StoreDir:  cfg.StoreDir,
		// The default fsyncs lazily (every 2 minutes), so messages already
		// acknowledged to a publisher can be lost on power failure. Events are
		// facts about committed changes; losing one breaks the outbox contract.
		SyncAlways: true,
		// Stated, not left to the default: events stay far below it (job
		// events carry no instance list, < 64 KiB); the outbox drops for
		// good, and counts, anything NATS refuses as larger.
		MaxPayload: 1 << 20,
		// The embedding process owns signal handling (signal.NotifyContext in main).
		NoSigs: true,
	}
	for _, u := range cfg.Users {
		su := &server.User{Username: u.Name, Password: stored(u.Password)}
		if len(u.Publish) > 0 || len(u.Subscribe) > 0 {
			su.Permissions = &server.Permissions{}
			if len(u.Publish) > 0 {
				su.Permissions.Publish = &server.SubjectPermission{Allow: u.Publish}
			}
			if len(u.Subscribe) > 0 {
				su.Permissions.Subscribe = &server.SubjectPermission{Allow: u.Subscribe}
			}
		}
		opts.Users = append(opts.Users, su)
	}
	if port != server.RANDOM_PORT {
		// The server listens in its own goroutine and only logs a failure
		// to listen, as text (the fatal log below ends the wait for it).
		// Trying the address first returns the listen error itself, which
		// callers can tell apart (errors.Is EADDRINUSE).
		ln, err := net.Listen("tcp", net.JoinHostPort(host, portStr))
		if err != nil {
			return nil, fmt.Errorf("start nats on %s: %w", addr, err)
		}
		ln.Close()
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start nats: %w", err)
	}
	fatal := make(chan string, 1)
	ns.SetLogger(slogLogger{l: logger.With("component", "nats"), fatal: fatal}, false, false)

	go ns.Start()
	for deadline := time.Now().Add(readyTimeout); !ns.ReadyForConnections(readyPoll); {
		var why string
		select {
		case msg := <-fatal:
			why = msg
		default:
			if time.Now().Before(deadline) {
				continue
			}
			why = fmt.Sprintf("not ready for connections after %s", readyTimeout)
		}
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("start nats on %s: %s", addr, why)
	}
	return &Server{ns: ns}, nil
}

// readyPoll is how long Start waits for the server at a time before it
// looks whether the server has failed.
const readyPoll = 50 * time.Millisecond

// ClientURL returns the URL clients connect to, with the bound port.
func (s *Server) ClientURL() string {
	return s.ns.ClientURL()
}

// Shutdown stops the server and returns when it has stopped, so the same
// StoreDir can be reused at once.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// slogLogger implements server.Logger. Only warnings and errors are passed
// on: notices are emitted for every start, stream and consumer and would
// drown the services' own logs.
type slogLogger struct {
	l     *slog.Logger
	fatal chan<- string // the first fatal error's message, for Start
}

var _ server.Logger = slogLogger{}

func (g slogLogger) Noticef(string, ...any) {}
func (g slogLogger) Debugf(string, ...any)  {}
func (g slogLogger) Tracef(string, ...any)  {}

func (g slogLogger) Warnf(format string, v ...any) {
	g.l.Warn(fmt.Sprintf(format, v...))
}

func (g slogLogger) Errorf(format string, v ...any) {
	g.l.Error(fmt.Sprintf(format, v...))
}

// Fatalf logs at error level and does not exit: the embedding process decides
// what a failed server means for it.
func (g slogLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	g.l.Error(msg, "fatal", true)
	select {
	case g.fatal <- msg:
	default:
	}
}
