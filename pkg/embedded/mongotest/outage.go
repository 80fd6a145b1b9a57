package mongotest

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Outage is a dialer for options.Client().SetDialer that can take the
// store away as a restart does: Down closes every connection it made and
// refuses new ones (connection refused) until Up.
type Outage struct {
	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool
}

// DialContext dials TCP unless the store is down.
func (o *Outage) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	o.mu.Lock()
	down := o.down
	o.mu.Unlock()
	if down {
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
	}
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.down { // went down while dialling
		_ = c.Close()
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
	}
	if o.conns == nil {
		o.conns = map[net.Conn]bool{}
	}
	o.conns[c] = true
	return c, nil
}

// Down closes the connections made so far and refuses new ones.
func (o *Outage) Down() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.down = true
	for c := range o.conns {
		_ = c.Close()
	}
	o.conns = nil
}

// Up lets dials through again.
func (o *Outage) Up() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.down = false
}

// Forward listens on a free loopback port and forwards each connection to
// the store at uri through o, for a client that only takes a URI (a service
// binary's RM_MONGO_URI): o.Down takes the store away from it as from a
// client dialling through o. It returns the URI to give that client; the
// listener closes when the test ends.
func (o *Outage) Forward(tb testing.TB, uri string) string {
	tb.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		tb.Fatalf("mongotest: %s: %v", uri, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = ln.Close() })
	target := u.Host
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go o.forward(c, target)
		}
	}()
	u.Host = ln.Addr().String()
	return u.String()
}

// forward copies between c and a connection to target dialled through o,
// until either ends (o.Down closes the dialled one); while o is down it
// closes c at once, as a stopped server's port does.
func (o *Outage) forward(c net.Conn, target string) {
	defer c.Close()
	up, err := o.DialContext(context.Background(), "tcp", target)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
}

// Check503 takes the store away and GETs url, a resource that a server over
// the store reads from it: the answer must come within hc's timeout (a
// client's patience), as a 503 with Retry-After whose body holds detail.
// Then it brings the store back and waits up to a minute for url to
// answer 200 again.
func (o *Outage) Check503(tb testing.TB, hc *http.Client, url, detail string) {
	tb.Helper()
	o.Down()
	resp, err := hc.Get(url)
	if err != nil {
		tb.Fatalf("GET %s with the store down: %v; want a 503 before the client gives up", url, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), detail) {
		tb.Errorf("GET %s with the store down: %d, Retry-After %q, %s; want 503 with Retry-After and %q",
			url, resp.StatusCode, resp.Header.Get("Retry-After"), body, detail)
	}
	o.Up()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the store is back, GET %s: %v, %v", url, resp, err)
		}
	}
}
