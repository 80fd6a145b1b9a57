package natsembed_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/avxrm/rm/pkg/embedded/natsembed"
)

func start(t *testing.T, dir string) *natsembed.Server {
	t.Helper()
	srv, err := natsembed.Start(natsembed.Config{Addr: "127.0.0.1:0", StoreDir: dir})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return srv
}

func connect(t *testing.T, srv *natsembed.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatalf("connect %s: %v", srv.ClientURL(), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

// TestDataSurvivesRestart publishes to a file-backed stream, restarts the
// server on the same StoreDir and reads the acknowledged message back.
func TestDataSurvivesRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir := t.TempDir()

	srv := start(t, dir)
	nc, js := connect(t, srv)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     "T",
		Subjects: []string{"t.>"},
		Storage:  jetstream.FileStorage,
	}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	ack, err := js.Publish(ctx, "t.one", []byte("hello"))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	nc.Close()
	srv.Shutdown()

	srv = start(t, dir)
	defer srv.Shutdown()
	nc, js = connect(t, srv)
	defer nc.Close()

	s, err := js.Stream(ctx, "T")
	if err != nil {
		t.Fatalf("stream after restart: %v", err)
	}
	msg, err := s.GetMsg(ctx, ack.Sequence)
	if err != nil {
		t.Fatalf("get msg %d: %v", ack.Sequence, err)
	}
	if got := string(msg.Data); got != "hello" || msg.Subject != "t.one" {
		t.Errorf("after restart got %q on %q, want %q on %q", got, msg.Subject, "hello", "t.one")
	}
}

func TestStartRequiresStoreDir(t *testing.T) {
	if _, err := natsembed.Start(natsembed.Config{Addr: "127.0.0.1:0"}); err == nil {
		t.Fatal("Start without StoreDir: want error")
	}
}

// TestUsersRefuseAnonymous: with users configured, only they may connect,
// and a user's permissions bound what it may publish. The server holds
// their passwords hashed (it warns of plaintext ones), and a password too
// long for bcrypt still works.
func TestUsersRefuseAnonymous(t *testing.T) {
	logger, logs := logFile(t)
	long := strings.Repeat("p", 80)
	srv, err := natsembed.Start(natsembed.Config{Addr: "127.0.0.1:0", StoreDir: t.TempDir(),
		Logger: logger, Users: []natsembed.User{
			{Name: "svc", Password: "s3cret"},
			{Name: "reader", Password: "r", Publish: []string{"_INBOX.>"}, Subscribe: []string{"_INBOX.>"}},
			{Name: "long", Password: long},
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	lc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("long", long))
	if err != nil {
		t.Fatalf("the user with an 80-byte password: %v", err)
	}
	lc.Close()
	if nc, err := nats.Connect(srv.ClientURL()); err == nil {
		nc.Close()
		t.Fatal("an anonymous client connected")
	}
	if nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("svc", "wrong")); err == nil {
		nc.Close()
		t.Fatal("a wrong password connected")
	}
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("svc", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish("rm.events.x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 1)
	rc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("reader", "r"), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	_ = rc.Publish("rm.events.x", []byte("x"))
	_ = rc.Flush()
	select {
	case err := <-errs:
		if !errors.Is(err, nats.ErrPermissionViolation) && !strings.Contains(err.Error(), "Permissions Violation") {
			t.Fatalf("reader publishing: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a publish outside the user's permissions was not refused")
	}
	// The long password stays in the clear: the server warns of it, once
	// (which also shows that TestHashedPasswordsNoWarning would see it).
	if n := strings.Count(logs(), "Plaintext passwords"); n != 1 {
		t.Errorf("the server warned of plaintext passwords %d times, want 1:\n%s", n, logs())
	}
}

// TestHashedPasswordsNoWarning: users whose passwords bcrypt takes leave the
// server no plaintext password to warn about.
func TestHashedPasswordsNoWarning(t *testing.T) {
	logger, logs := logFile(t)
	srv, err := natsembed.Start(natsembed.Config{Addr: "127.0.0.1:0", StoreDir: t.TempDir(),
		Logger: logger, Users: []natsembed.User{{Name: "svc", Password: "s3cret"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("svc", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if strings.Contains(logs(), "Plaintext passwords") {
		t.Errorf("the server warned of plaintext passwords:\n%s", logs())
	}
}

// logFile is a file the server's logger writes to (each line one write,
// safe from its goroutines), and a function reading what it holds.
func logFile(t *testing.T) (*slog.Logger, func() string) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "nats.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return slog.New(slog.NewTextHandler(f, nil)), func() string {
		b, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
}

// A port in use is the listen error itself, at once: the server listens
// in a goroutine of its own and would otherwise only log it, and Start wait
// for readiness until its timeout.
func TestPortInUseIsRefusedAtOnce(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	began := time.Now()
	srv, err := natsembed.Start(natsembed.Config{Addr: taken.Addr().String(), StoreDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil {
		srv.Shutdown()
		t.Fatalf("Start on %s, which is in use: started", taken.Addr())
	}
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), taken.Addr().String()) {
		t.Errorf("Start on %s, which is in use: %v, want EADDRINUSE naming it", taken.Addr(), err)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("refused after %s, not at once", took)
	}
}

// A server that fails as it starts (here JetStream, its store directory a
// file) logs a fatal error and never becomes ready: Start returns that
// error at once instead of its readiness timeout.
func TestAFatalStartErrorIsReturnedAtOnce(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	srv, err := natsembed.Start(natsembed.Config{Addr: "127.0.0.1:0", StoreDir: file,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil {
		srv.Shutdown()
		t.Fatal("Start with a file as its store directory: started")
	}
	if !strings.Contains(err.Error(), "storage directory is not a directory") {
		t.Errorf("Start with a file as its store directory: %v, want the server's own reason", err)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("refused after %s, not at once", took)
	}
}
