// Package eventstest runs an in-process NATS server with JetStream for tests,
// with the streams of package events created.
package eventstest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// RunServer starts a JetStream server on a free loopback port, storing in a
// temporary directory; it is shut down when the test ends.
func RunServer(tb testing.TB) *server.Server {
	tb.Helper()
	return RunRestartable(tb).Server
}

// Restartable is a JetStream server that a test stops and starts again,
// as a NATS restart does: on the same port, with the same store, so that
// its clients reconnect and find their streams.
type Restartable struct {
	*server.Server // the one running, or the last one
	tb             testing.TB
	opts           *server.Options
}

// RunRestartable starts a Restartable on a free loopback port, storing in
// a temporary directory; it is shut down when the test ends.
func RunRestartable(tb testing.TB) *Restartable {
	tb.Helper()
	r := &Restartable{tb: tb, opts: &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: tb.TempDir()}}
	r.Start()
	r.opts.Port = r.Addr().(*net.TCPAddr).Port
	return r
}

// Stop shuts the server down and waits until it has.
func (r *Restartable) Stop() {
	r.Shutdown()
	r.WaitForShutdown()
}

// Start starts the server (again).
func (r *Restartable) Start() {
	r.tb.Helper()
	s, err := server.NewServer(r.opts)
	if err != nil {
		r.tb.Fatalf("nats server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		r.tb.Fatal("nats server not ready")
	}
	r.tb.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	r.Server = s
}

// Connect connects to s and ensures the events streams exist.
func Connect(tb testing.TB, s *server.Server) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		tb.Fatalf("nats connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("jetstream: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := events.EnsureStreams(ctx, js, 0, 1); err != nil {
		tb.Fatal(err)
	}
	return nc, js
}

// Run starts a server and connects to it.
func Run(tb testing.TB) jetstream.JetStream {
	tb.Helper()
	_, js := Connect(tb, RunServer(tb))
	return js
}

// ReadAll returns every event stored in RM_EVENTS whose subject matches filter
// (all events for ""), in stream order.
func ReadAll(tb testing.TB, js jetstream.JetStream, filter string) []events.Event {
	tb.Helper()
	var out []events.Event
	Each(tb, js, filter, func(m jetstream.Msg) {
		e, err := events.Decode(m.Headers(), m.Data())
		if err != nil {
			tb.Fatalf("decode %s: %v", m.Subject(), err)
		}
		out = append(out, e)
	})
	return out
}

// Each calls fn with every message stored in RM_EVENTS whose subject matches
// filter (all for ""), in stream order: for what ReadAll's events do not
// carry, such as the time the stream stored each (its metadata).
func Each(tb testing.TB, js jetstream.JetStream, filter string, fn func(jetstream.Msg)) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if filter == "" {
		filter = events.SubjectRoot + ".>"
	}
	cons, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		tb.Fatalf("ordered consumer: %v", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		tb.Fatalf("consumer info: %v", err)
	}
	pending := info.NumPending
	for read := uint64(0); read < pending; {
		batch, err := cons.Fetch(int(min(pending-read, 500)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			tb.Fatalf("fetch: %v", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			fn(m)
		}
		if n == 0 {
			tb.Fatalf("read %d of %d messages", read, pending)
		}
		read += uint64(n)
	}
}

// FreeAddr returns a loopback address that nothing listens on at the
// moment, for a server a test starts on an address it must know first (a
// service's RM_HTTP_ADDR), or for one that must refuse connections.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
