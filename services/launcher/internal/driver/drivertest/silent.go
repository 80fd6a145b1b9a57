package drivertest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Silent is a TCP listener that accepts connections, reads what comes and
// never answers: a runtime that hangs.
type Silent struct {
	// Addr is where it listens, host:port.
	Addr string

	mu             sync.Mutex
	accepted, open int
}

// ListenSilently starts a Silent for the test.
func ListenSilently(t testing.TB) *Silent {
	t.Helper()
	s := &Silent{}
	s.Addr = serveLoopback(t, func(c net.Conn) {
		s.count(1)
		defer s.count(-1)
		defer c.Close()
		io.Copy(io.Discard, c)
	})
	return s
}

// serveLoopback listens on a loopback port for the test and serves each
// connection it accepts in a goroutine of its own; it returns the address.
func serveLoopback(t testing.TB, serve func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return l.Addr().String()
}

// Conns reports how many connections it accepted and how many of them
// their client has not closed yet.
func (s *Silent) Conns() (accepted, open int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted, s.open
}

func (s *Silent) count(d int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d > 0 {
		s.accepted++
	}
	s.open += d
}
