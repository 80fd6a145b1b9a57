package launch

import (
	"context"
	"sync"
	"time"
)

// workqueue hands keys ("job/<id>", "dep/<id>") to workers, each key to at
// most one worker at a time, and coalesces: a key added while it waits is
// queued once; one added while a worker has it is queued again when the
// worker is done. Reconciliation is level-triggered (it reads the state
// fresh each time), so coalescing never loses anything.
type workqueue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	queue      []string
	queued     map[string]bool
	processing map[string]bool
	again      map[string]bool // added while processing
	closed     bool
}

func newWorkqueue() *workqueue {
	q := &workqueue{queued: map[string]bool{}, processing: map[string]bool{}, again: map[string]bool{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Add queues key unless it is queued already.
func (q *workqueue) Add(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if q.processing[key] {
		q.again[key] = true
		return
	}
	if q.queued[key] {
		return
	}
	q.queued[key] = true
	q.queue = append(q.queue, key)
	q.cond.Signal()
}

// AddAfter queues key after d.
func (q *workqueue) AddAfter(key string, d time.Duration) {
	if d <= 0 {
		q.Add(key)
		return
	}
	time.AfterFunc(d, func() { q.Add(key) })
}

// Get blocks until a key is available or the queue is closed (ok false).
func (q *workqueue) Get() (key string, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.queue) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return "", false
	}
	key, q.queue = q.queue[0], q.queue[1:]
	if len(q.queue) == 0 {
		q.queue = nil // let a large drained backlog be collected
	}
	delete(q.queued, key)
	q.processing[key] = true
	return key, true
}

// Done releases key; it is queued again if it was added meanwhile.
func (q *workqueue) Done(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, key)
	if q.again[key] {
		delete(q.again, key)
		if !q.closed && !q.queued[key] {
			q.queued[key] = true
			q.queue = append(q.queue, key)
			q.cond.Signal()
		}
	}
}

// Len is the number of keys waiting.
func (q *workqueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.queue)
}

// CloseWhen closes the queue when ctx ends: Get then returns ok false.
func (q *workqueue) CloseWhen(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.closed = true
		q.mu.Unlock()
		q.cond.Broadcast()
	})
}
