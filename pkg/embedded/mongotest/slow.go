package mongotest

import (
	"bytes"
	"context"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// SlowReplies is a dialer for options.Client().SetDialer whose connections
// hold back, by Delay, the reply to every request that contains each byte
// string of Match, honouring the driver's read deadline: a store slow to
// answer some queries (a scan of a big collection) and quick for the rest.
// Matched counts those requests. The request itself reaches the store at
// once, as it would reach a busy one.
type SlowReplies struct {
	Match   [][]byte
	Delay   time.Duration
	Matched atomic.Int64
}

// DialContext dials TCP and wraps the connection.
func (d *SlowReplies) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &slowConn{Conn: c, d: d}, nil
}

type slowConn struct {
	net.Conn
	d *SlowReplies

	mu       sync.Mutex
	until    time.Time // the reply is held back until then
	deadline time.Time // the read deadline
}

func (c *slowConn) Write(b []byte) (int, error) {
	all := true
	for _, m := range c.d.Match {
		all = all && bytes.Contains(b, m)
	}
	if all {
		c.d.Matched.Add(1)
		c.mu.Lock()
		c.until = time.Now().Add(c.d.Delay)
		c.mu.Unlock()
	}
	return c.Conn.Write(b)
}

func (c *slowConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	until, deadline := c.until, c.deadline
	c.mu.Unlock()
	if time.Now().Before(until) {
		if !deadline.IsZero() && deadline.Before(until) {
			time.Sleep(time.Until(deadline))
			return 0, os.ErrDeadlineExceeded
		}
		time.Sleep(time.Until(until))
	}
	return c.Conn.Read(b)
}

func (c *slowConn) SetDeadline(t time.Time) error {
	c.setReadDeadline(t)
	return c.Conn.SetDeadline(t)
}

func (c *slowConn) SetReadDeadline(t time.Time) error {
	c.setReadDeadline(t)
	return c.Conn.SetReadDeadline(t)
}

func (c *slowConn) setReadDeadline(t time.Time) {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
}
