package launch

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/local"
)

// TestPluginsOfOneWorkDirShareADriver: the launcher's own local default and
// local plugins whose work_dir is the same directory (left out, or written
// out) get one driver, so an instance running when the launcher restarts is
// adopted once. Each made its own before: every driver re-adopts every
// directory under its root, so each reported the instance and each stopped
// and cleaned it up (a cancel sent its SIGTERM twice). A plugin of another
// work_dir keeps a driver of its own.
func TestPluginsOfOneWorkDirShareADriver(t *testing.T) {
	dataDir := t.TempDir()
	factories := map[string]driver.Factory{driver.TypeLocal: local.New}
	opts := driver.Options{DataDir: dataDir}
	ctx := context.Background()
	def := plugin{ID: defaultPluginID, Type: driver.TypeLocal}

	first := newPool(factories, opts, slog.Default(), func(driver.Ref) {})
	pd, err := first.get(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	ref := driver.Ref{JobID: "job-1", Role: driver.RoleWorker, Index: 0}
	if err := pd.d.Start(ctx, driver.Spec{Ref: ref, Command: []string{"sleep", "60"}}); err != nil {
		t.Fatal(err)
	}
	first.close() // the launcher stops; the instance runs on

	pl := newPool(factories, opts, slog.Default(), func(driver.Ref) {})
	defer pl.close()
	plugins := []plugin{
		{ID: "plg-local", Type: driver.TypeLocal},
		def,
		{ID: "plg-written-out", Type: driver.TypeLocal, Config: map[string]any{"work_dir": filepath.Join(dataDir, "local")}},
	}
	var shared *pooled
	for _, p := range plugins {
		got, err := pl.get(ctx, p)
		if err != nil {
			t.Fatalf("get(%s): %v", p.ID, err)
		}
		if shared == nil {
			shared = got
		} else if got != shared {
			t.Errorf("plugin %s got a driver of its own; want the one of %s, whose work_dir is the same", p.ID, plugins[0].ID)
		}
	}
	other, err := pl.get(ctx, plugin{ID: "plg-other", Type: driver.TypeLocal, Config: map[string]any{"work_dir": t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	if other == shared {
		t.Error("a plugin of another work_dir shares the default's driver")
	}
	if n := len(pl.all()); n != 2 {
		t.Errorf("pool has %d drivers, want 2", n)
	}
	// The shared driver's errors name every plugin it serves, not its first.
	if got, want := shared.plugins(), "plugins plg-local, _default and plg-written-out"; got != want {
		t.Errorf("the shared driver's plugins: %q, want %q", got, want)
	}
	if got, want := other.plugins(), "plugin plg-other"; got != want {
		t.Errorf("the other driver's plugins: %q, want %q", got, want)
	}
	bounded, cancelBound := context.WithTimeoutCause(ctx, 0, errNoAnswer)
	defer cancelBound()
	<-bounded.Done()
	if err := shared.noAnswer(bounded, "a stop", time.Minute, bounded.Err()); err == nil ||
		!strings.Contains(err.Error(), "the local runtime of plugins plg-local, _default and plg-written-out did not answer a stop") {
		t.Errorf("a call to the shared driver without an answer: %v, want it to name every plugin", err)
	}

	knownBy := 0
	for _, d := range pl.all() {
		d.mu.Lock()
		if _, ok := d.jobs[ref.JobID][ref]; ok {
			knownBy++
		}
		d.mu.Unlock()
	}
	if knownBy != 1 {
		t.Errorf("the running instance is known by %d drivers after the restart, want 1", knownBy)
	}
	obs := pl.refsOf(ref.JobID)
	if o, ok := obs[ref]; !ok || o.st.State != driver.Running {
		t.Fatalf("refsOf = %+v, want the instance running", obs)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := shared.cleanup(cctx, ref.JobID); err != nil {
		t.Fatal(err)
	}
}
