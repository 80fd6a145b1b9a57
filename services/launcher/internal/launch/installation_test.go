package launch

import (
	"context"
	"sync"
	"testing"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
)

// TestInstallationIDIsTheStores: every launcher of one store (restarts,
// fail-over replicas racing at the first start) gets the same installation
// id; another store has another.
func TestInstallationIDIsTheStores(t *testing.T) {
	ctx := context.Background()
	uri, _ := mongotest.Start(t)
	cl := mongotest.Client(t, uri)
	one, other := cl.Database("rm"), cl.Database("rm-other")

	ids := make([]string, 4)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := (&installation{coll: one.Collection(InstallationCollection)}).get(ctx)
			if err != nil {
				t.Errorf("get() error = %v", err)
			}
			ids[i] = id
		}()
	}
	wg.Wait()
	for _, id := range ids[1:] {
		if id == "" || id != ids[0] {
			t.Fatalf("launchers of one store got ids %q, want one id", ids)
		}
	}
	again, err := (&installation{coll: one.Collection(InstallationCollection)}).get(ctx)
	if err != nil || again != ids[0] {
		t.Errorf("after a restart: %q, %v; want %q", again, err, ids[0])
	}
	elsewhere, err := (&installation{coll: other.Collection(InstallationCollection)}).get(ctx)
	if err != nil || elsewhere == "" || elsewhere == ids[0] {
		t.Errorf("another store's id = %q, %v; want a different one than %q", elsewhere, err, ids[0])
	}
}
