package launch

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/registry"
)

// TestDefaultDriverConfig: the launcher's own default driver runs with the
// config it is given (here a local work_dir elsewhere than the data
// directory), as a plugin of that type would. Its config was always the
// type's zero one, which the kubernetes driver refuses, so a launcher whose
// default was kubernetes (the Helm chart's) failed every job on a queue
// without a plugin while no plugin was the default. A config its type
// refuses stops New, naming the field; a default that cannot run without
// one is warned about at the start.
func TestDefaultDriverConfig(t *testing.T) {
	e := newEnv(t)
	workDir := t.TempDir()
	e.configure = func(c *Config, _ map[string]driver.Factory) {
		c.DefaultDriverConfig = json.RawMessage(`{"work_dir": "` + workDir + `"}`)
	}
	e.start()
	e.admit("job-wd", 1, `echo ran`, nil)
	if j := e.wait("job-wd", "final", final); j.Status != events.JobSucceeded {
		t.Fatalf("job: %s %+v", j.Status, j.Conditions)
	}
	if out, err := os.ReadFile(filepath.Join(workDir, "job-wd", "worker-0", "output.log")); err != nil || string(out) != "ran\n" {
		t.Fatalf("the worker's log under the configured work_dir: %q, %v", out, err)
	}
	if _, err := os.Stat(filepath.Join(e.dataDir, "local", "job-wd")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the job ran under the data directory too: %v", err)
	}

	deps := Deps{DB: e.db, JS: e.js, Outbox: e.ob, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Drivers: registry.Factories()}
	_, err := New(Config{DataDir: e.dataDir, DefaultDriver: driver.TypeKubernetes, DefaultDriverConfig: json.RawMessage(`{"namespace": "jobs"}`)}, deps)
	var fe *driver.FieldError
	if !errors.As(err, &fe) || fe.Field != "kubeconfig" {
		t.Errorf("New with a kubernetes default of no cluster = %v, want the field kubeconfig named", err)
	}
	var log bytes.Buffer
	deps.Logger = slog.New(slog.NewTextHandler(&log, nil))
	if _, err := New(Config{DataDir: e.dataDir, DefaultDriver: driver.TypeKubernetes}, deps); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "the default driver has no config and cannot run without one") {
		t.Errorf("a kubernetes default with no config was not warned about; log:\n%s", log.String())
	}
}
