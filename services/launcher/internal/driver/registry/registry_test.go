package registry_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/registry"
)

func TestFactoriesCoverEveryType(t *testing.T) {
	f := registry.Factories()
	for _, typ := range []string{driver.TypeKubernetes, driver.TypeDocker, driver.TypeLocal, driver.TypeSimulated} {
		if f[typ] == nil {
			t.Errorf("no factory for %q", typ)
		}
		if err := driver.ValidateConfig(typ, nil); err != nil && typ != driver.TypeKubernetes {
			t.Errorf("ValidateConfig(%q, nil) = %v: the zero config should be valid", typ, err)
		}
	}
	if len(f) != 4 {
		t.Errorf("Factories() has %d entries, want 4", len(f))
	}
}

// TestFactoriesValidate checks that every factory rejects a bad config the
// way ValidateConfig does, and builds a driver from a good one.
func TestFactoriesValidate(t *testing.T) {
	f := registry.Factories()
	bad := map[string]string{
		driver.TypeKubernetes: `{"namespace": "x", "bogus": 1}`,
		driver.TypeDocker:     `{"host": "nope"}`,
		driver.TypeLocal:      `{"work_dir": "relative"}`,
		driver.TypeSimulated:  `{"failure_rate": 2}`,
	}
	for typ, cfg := range bad {
		if _, err := f[typ](json.RawMessage(cfg), driver.Options{}); !errors.Is(err, driver.ErrInvalidConfig) {
			t.Errorf("%s factory with %s: error = %v, want ErrInvalidConfig", typ, cfg, err)
		}
	}
	d, err := f[driver.TypeSimulated](json.RawMessage(`{"run_seconds": 1}`), driver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	d, err = f[driver.TypeLocal](nil, driver.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
}
