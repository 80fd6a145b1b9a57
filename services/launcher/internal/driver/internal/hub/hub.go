// Package hub fans driver status changes out to Watch subscribers without
// ever blocking the publisher or dropping an event: each subscriber has its
// own unbounded queue drained by one goroutine. It imports nothing but the
// driver contract.
package hub

import (
	"context"
	"sync"

	"github.com/avxrm/rm/services/launcher/internal/driver"
)

// Hub is a set of subscribers. The zero value is ready to use.
type Hub struct {
	mu     sync.Mutex
	subs   map[*sub]struct{}
	closed bool
}

type sub struct {
	mu    sync.Mutex
	queue []driver.Status
	wake  chan struct{} // capacity 1: "queue is not empty or the hub closed"
	stop  chan struct{} // closed by Hub.Close
}

// Subscribe returns a channel that first receives initial, then every
// status published afterwards, until ctx ends or the hub is closed; then it
// is closed. Callers that must not miss a change between computing initial
// and subscribing hold the lock that serializes their Publish calls.
func (h *Hub) Subscribe(ctx context.Context, initial []driver.Status) <-chan driver.Status {
	out := make(chan driver.Status)
	s := &sub{
		queue: append([]driver.Status(nil), initial...),
		wake:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
	}
	s.wake <- struct{}{}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		close(out)
		return out
	}
	if h.subs == nil {
		h.subs = make(map[*sub]struct{})
	}
	h.subs[s] = struct{}{}
	h.mu.Unlock()

	go func() {
		defer close(out)
		defer h.remove(s)
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.stop:
				return
			case <-s.wake:
			}
			for {
				s.mu.Lock()
				if len(s.queue) == 0 {
					s.queue = nil // let a large drained backlog be collected
					s.mu.Unlock()
					break
				}
				next := s.queue[0]
				s.queue = s.queue[1:]
				s.mu.Unlock()
				select {
				case out <- next:
				case <-ctx.Done():
					return
				case <-s.stop:
					return
				}
			}
		}
	}()
	return out
}

// Publish queues st for every subscriber; it never blocks on a reader.
func (h *Hub) Publish(st driver.Status) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.mu.Lock()
		s.queue = append(s.queue, st)
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// Close ends every subscription and refuses new ones.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	for s := range h.subs {
		close(s.stop)
	}
	h.subs = nil
}

func (h *Hub) remove(s *sub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, s)
}
