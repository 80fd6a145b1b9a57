package mongotest

import (
	"context"
	"net"
	"sync"
	"syscall"
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
