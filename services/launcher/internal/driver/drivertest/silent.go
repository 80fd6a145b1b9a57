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
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	s := &Silent{Addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.count(1)
			go func() {
				defer s.count(-1)
				defer c.Close()
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return s
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
