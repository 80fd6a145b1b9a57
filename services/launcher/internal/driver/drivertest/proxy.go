package drivertest

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
)

// Proxy is a TCP listener that forwards each connection to a runtime's
// socket until Swallow is called: from then on it passes nothing either
// way, on the connections it holds and on new ones, as a runtime that
// hangs after its driver was made (a daemon stuck, a socket that accepts
// and never answers). After Refuse it closes each new connection at once,
// as a runtime that is down; after Pass it forwards new connections again,
// as a runtime that is back.
type Proxy struct {
	// Addr is where it listens, host:port.
	Addr string

	mode atomic.Int32 // passing, swallowing or refusing
}

// Modes of a Proxy.
const (
	passing int32 = iota
	swallowing
	refusing
)

// ListenProxy starts a Proxy to the unix socket at target for the test.
func ListenProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p := &Proxy{}
	p.Addr = serveLoopback(t, func(c net.Conn) { p.serve(c, target) })
	return p
}

// Swallow makes the proxy pass nothing from now on.
func (p *Proxy) Swallow() { p.mode.Store(swallowing) }

// Refuse makes the proxy close the connections it accepts from now on.
func (p *Proxy) Refuse() { p.mode.Store(refusing) }

// Pass makes the proxy forward the connections it accepts from now on
// (those it swallows or holds stay as they are).
func (p *Proxy) Pass() { p.mode.Store(passing) }

func (p *Proxy) serve(c net.Conn, target string) {
	defer c.Close()
	switch p.mode.Load() {
	case swallowing:
		_, _ = io.Copy(io.Discard, c)
		return
	case refusing:
		return
	}
	up, err := net.Dial("unix", target)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { p.pass(up, c); done <- struct{}{} }()
	go func() { p.pass(c, up); done <- struct{}{} }()
	<-done
}

// pass copies from src to dst until either ends, dropping what comes once
// the proxy no longer passes.
func (p *Proxy) pass(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && p.mode.Load() == passing {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
