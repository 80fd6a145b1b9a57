package scheduler

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestSlowHistoryReadDoesNotHoldAdmissionBack: the history reads of the
// start estimates (lastFinished: a find sorted on finished_at) answer only
// after 3 s, past their 2 s timeout, as on a store busy with thousands of
// jobs. The scheduler must not spend its loop asking again for every
// pending job: a job finishing must let the next one in at once, and the
// store must see the read once, not once per pending job. Before the
// back-off (readbackoff.go) the pass after the first admission asked 40
// times back to back (80 s), and the fault suite's stack wedged on the
// piled-up reads (docs/faults.md).
func TestSlowHistoryReadDoesNotHoldAdmissionBack(t *testing.T) {
	e := newEnv(t)
	q := e.queue("q", ptr(1))
	var ids []string
	for range 40 {
		ids = append(ids, e.submit(q, 1))
	}
	slow := &slowDialer{match: [][]byte{[]byte("\x02find\x00"), []byte("finished_at")}, delay: 3 * time.Second}
	client, err := mongo.Connect(options.Client().ApplyURI(e.uri).SetDialer(slow))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	s, err := New(context.Background(), testConfig(), Deps{DB: client.Database("rm"), JS: e.js, Outbox: e.ob,
		Registerer: prometheus.NewRegistry(), Now: e.clock.Now,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// The jobs are admitted one at a time, in submission order.
	for i, id := range ids[:3] {
		e.waitStatus(id, events.JobAdmitted)
		if i > 0 && slow.matched.Load() == 0 {
			t.Fatal("no history read reached the store: the test does not slow what it means to")
		}
		e.finish(id, events.JobSucceeded)
	}
	if n := slow.matched.Load(); n > 2 {
		t.Errorf("history reads sent to the store: %d, want at most 2 (one per back-off, not one per pending job)", n)
	}
}

// slowDialer makes connections whose reply to a request holding every byte
// string of match comes delay late, honouring the driver's read deadline:
// a store slow to answer some queries and no others.
type slowDialer struct {
	match   [][]byte
	delay   time.Duration
	matched atomic.Int64
}

func (d *slowDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &slowConn{Conn: c, d: d}, nil
}

type slowConn struct {
	net.Conn
	d *slowDialer

	mu       sync.Mutex
	until    time.Time // the reply is held back until then
	deadline time.Time // the read deadline
}

func (c *slowConn) Write(b []byte) (int, error) {
	all := true
	for _, m := range c.d.match {
		all = all && bytes.Contains(b, m)
	}
	if all {
		c.d.matched.Add(1)
		c.mu.Lock()
		c.until = time.Now().Add(c.d.delay)
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
