package launch

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/avxrm/rm/services/launcher/internal/driver"
)

// TestPoolCreationFailureIsShared: one try to make a plugin's driver is
// under way at a time, and the jobs that ask meanwhile do not wait for it:
// before any try failed they are told to come back when it ends
// (*tryUnderWay), after one failed they get that failure. A runtime that
// does not answer takes a try 10 s (the docker driver's wait): calls that
// waited for it held as many of the launcher's workers, its other jobs
// waiting, and before that each made its own try, one after the other.
func TestPoolCreationFailureIsShared(t *testing.T) {
	var tries atomic.Int32
	down := errors.New("engine does not answer")
	release := make(chan struct{})
	factories := map[string]driver.Factory{"slow": func(json.RawMessage, driver.Options) (driver.Driver, error) {
		tries.Add(1)
		<-release
		return nil, down
	}}
	pl := newPool(factories, driver.Options{}, slog.Default(), func(driver.Ref) {})
	defer pl.close()
	p := plugin{ID: "plg-1", Type: "slow"}
	ctx := context.Background()

	// tryInFlight starts a get that makes a try and waits until it has.
	tryInFlight := func(n int32) <-chan error {
		t.Helper()
		out := make(chan error, 1)
		go func() {
			_, err := pl.get(ctx, p)
			out <- err
		}()
		for tries.Load() < n {
			runtime.Gosched()
		}
		return out
	}
	first := tryInFlight(1)
	for range 5 {
		_, err := pl.get(ctx, p)
		var pending *tryUnderWay
		if !errors.As(err, &pending) {
			t.Fatalf("get() while the first try is under way = %v, want *tryUnderWay", err)
		}
		select {
		case <-pending.done:
			t.Fatal("the try under way has ended before it was let")
		default:
		}
	}
	release <- struct{}{}
	if err := <-first; !errors.Is(err, down) {
		t.Fatalf("first try: error %v, want %v", err, down)
	}

	// A job that comes after the failure tries again; the others get the
	// failure meanwhile, without waiting.
	second := tryInFlight(2)
	for range 5 {
		if _, err := pl.get(ctx, p); !errors.Is(err, down) {
			t.Fatalf("get() while the second try is under way = %v, want the first one's failure", err)
		}
	}
	release <- struct{}{}
	if err := <-second; !errors.Is(err, down) {
		t.Fatalf("second try: error %v, want %v", err, down)
	}
	if n := tries.Load(); n != 2 {
		t.Errorf("%d tries, want 2", n)
	}
}
