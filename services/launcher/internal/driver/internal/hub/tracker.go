package hub

import (
	"context"
	"sync"
	"time"

	"github.com/avxrm/rm/services/launcher/internal/driver"
)

// Tracker keeps the last status of every instance of a driver whose
// runtime reports states (events, informers) rather than the driver
// deciding them, and publishes only what is news. The zero value is ready.
type Tracker struct {
	mu     sync.Mutex
	known  map[driver.Ref]driver.Status
	hub    Hub
	closed bool
}

// Update records st and publishes it unless it repeats the last status. A
// final status is never followed by another status of the same instance:
// a late event must not revive or rewrite an ended instance.
func (t *Tracker) Update(st driver.Status) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.updateLocked(st)
}

func (t *Tracker) updateLocked(st driver.Status) {
	if t.known == nil {
		t.known = make(map[driver.Ref]driver.Status)
	}
	if prev, ok := t.known[st.Ref]; ok {
		if prev.State.Final() {
			return
		}
		if prev.State == st.State && codeEq(prev.ExitCode, st.ExitCode) && prev.Message == st.Message && prev.Reason == st.Reason {
			return
		}
	}
	t.known[st.Ref] = st
	if !t.closed {
		t.hub.Publish(st)
	}
}

// Gone records that the instance no longer exists: if it had not ended, it
// ends Failed with message why. It is then forgotten.
func (t *Tracker) Gone(ref driver.Ref, why string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.goneLocked(ref, why, "")
}

// Lost is Gone for an instance someone else than the driver removed: if
// it had not ended, it ends Failed with driver.ReasonLost.
func (t *Tracker) Lost(ref driver.Ref, why string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.goneLocked(ref, why, driver.ReasonLost)
}

func (t *Tracker) goneLocked(ref driver.Ref, why, reason string) {
	if prev, ok := t.known[ref]; ok && !prev.State.Final() {
		prev.State, prev.ExitCode, prev.Message, prev.Reason, prev.FinishedAt = driver.Failed, nil, why, reason, time.Now()
		t.updateLocked(prev)
	}
	delete(t.known, ref)
}

// Remove is Gone for a runtime whose instances a driver.Reaper removes:
// an instance that had ended is reported once more, with Removed set, so
// that the launcher knows it is gone.
func (t *Tracker) Remove(ref driver.Ref, why string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	prev, ok := t.known[ref]
	if ok && prev.State.Final() {
		delete(t.known, ref)
		prev.Removed = true
		if !t.closed {
			t.hub.Publish(prev)
		}
		return
	}
	t.goneLocked(ref, why, "")
}

// Known returns the refs currently tracked.
func (t *Tracker) Known() []driver.Ref {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]driver.Ref, 0, len(t.known))
	for ref := range t.known {
		out = append(out, ref)
	}
	return out
}

// Subscribe is Hub.Subscribe with the tracked statuses as the initial ones.
func (t *Tracker) Subscribe(ctx context.Context) <-chan driver.Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	initial := make([]driver.Status, 0, len(t.known))
	for _, st := range t.known {
		initial = append(initial, st)
	}
	return t.hub.Subscribe(ctx, initial)
}

// Close ends every subscription; later updates are only recorded.
func (t *Tracker) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	t.hub.Close()
}

func codeEq(a, b *int) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}
