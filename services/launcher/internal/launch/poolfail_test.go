package launch

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/avxrm/rm/services/launcher/internal/driver"
)

// TestPoolCreationFailureIsShared: jobs that waited for a plugin's driver
// while another job's try to make it failed get that failure, and do not
// each try again. A runtime that does not answer takes a try 10 s (the
// docker driver's wait): one such try per job on the plugin, one after the
// other, held the launcher's workers for as long, its other jobs waiting.
func TestPoolCreationFailureIsShared(t *testing.T) {
	var tries atomic.Int32
	down := errors.New("engine does not answer")
	factories := map[string]driver.Factory{"slow": func(json.RawMessage, driver.Options) (driver.Driver, error) {
		tries.Add(1)
		time.Sleep(300 * time.Millisecond)
		return nil, down
	}}
	pl := newPool(factories, driver.Options{}, slog.Default(), func(driver.Ref) {})
	defer pl.close()
	p := plugin{ID: "plg-1", Type: "slow"}
	began := time.Now()
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := pl.get(context.Background(), p); !errors.Is(err, down) {
				t.Errorf("get() error = %v, want %v", err, down)
			}
		}()
	}
	wg.Wait()
	if n, took := tries.Load(), time.Since(began); n != 1 || took > time.Second {
		t.Errorf("5 jobs waiting for the driver: %d tries in %s, want 1 in about 300 ms", n, took)
	}
	// A job that comes after the failure tries again.
	if _, err := pl.get(context.Background(), p); !errors.Is(err, down) || tries.Load() != 2 {
		t.Errorf("get() after the failure: error %v after %d tries, want a second try", err, tries.Load())
	}
}
