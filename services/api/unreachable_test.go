package api_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/services/api/internal/apitest"
)

// TestStoreUnreachableIs503 cuts the API off from its store and checks that
// a request gets a 503 problem with Retry-After, not a 500, and that the
// API serves again once the store can be reached.
func TestStoreUnreachableIs503(t *testing.T) {
	var cut *cutter
	a := apitest.StartThrough(t, apitest.TestLogger(t), func(store string) string {
		cut = newCutter(t, store)
		return cut.addr()
	})
	e := &env{t: t, base: a.URL}
	e.create("/queues", obj{"name": "before"})

	cut.set(true)
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{http.MethodPost, "/queues", obj{"name": "during"}},
		{http.MethodGet, "/queues/before", nil},
		{http.MethodGet, "/jobs", nil},
	} {
		r := e.do(c.method, v1+c.path, c.body)
		if r.Status != http.StatusServiceUnavailable {
			t.Errorf("%s %s with the store cut off = %s, want 503", c.method, c.path, r)
			continue
		}
		if got := r.Header.Get("Retry-After"); got != "2" {
			t.Errorf("%s %s: Retry-After = %q, want \"2\"", c.method, c.path, got)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s %s: Content-Type = %q, want application/problem+json", c.method, c.path, ct)
		}
		if p := r.obj(t); p["status"] != float64(503) || !strings.Contains(p["detail"].(string), "store cannot be reached") {
			t.Errorf("%s %s: problem = %v", c.method, c.path, p)
		}
	}

	cut.set(false)
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := e.do(http.MethodPost, v1+"/queues", obj{"name": "after"})
		if r.Status == http.StatusCreated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("POST /queues once the store is back = %s", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.must(http.StatusNotFound, http.MethodGet, v1+"/queues/during", nil)
}

// cutter forwards TCP connections to target until it is set to cut: then
// it closes every open connection and refuses new ones, as a store that is
// restarting or behind a broken network does.
type cutter struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]bool
}

func newCutter(t *testing.T, target string) *cutter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); c.set(true) })
	go c.serve()
	return c
}

func (c *cutter) addr() string { return c.ln.Addr().String() }

func (c *cutter) set(cut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = cut
	if cut {
		for conn := range c.conns {
			conn.Close()
		}
		clear(c.conns)
	}
}

// track remembers conns, or closes them and reports false while cut.
func (c *cutter) track(conns ...net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut {
		for _, conn := range conns {
			conn.Close()
		}
		return false
	}
	for _, conn := range conns {
		c.conns[conn] = true
	}
	return true
}

func (c *cutter) serve() {
	for {
		in, err := c.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", c.target)
		if err != nil {
			in.Close()
			continue
		}
		if !c.track(in, out) {
			continue
		}
		go func() { _, _ = io.Copy(out, in); out.Close() }()
		go func() { _, _ = io.Copy(in, out); in.Close() }()
	}
}
