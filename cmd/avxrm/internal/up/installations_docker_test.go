package up_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
)

// TestTwoInstallationsShareTheDockerEngine: two all-in-ones (two stores, so
// two installation ids) run docker jobs on the one local engine. The second
// one's launcher, whose docker driver lists the engine and cleans up the
// containers of jobs it does not know, leaves the first one's running job
// alone, and their containers carry different rm.managed labels.
func TestTwoInstallationsShareTheDockerEngine(t *testing.T) {
	image := buildSleeperImage(t)
	setup := func() (*client, string) {
		sys := startSystemIn(t, t.TempDir())
		c := newClient(t, sys.HTTPAddr)
		var plg, app struct {
			ID string `json:"id"`
		}
		c.must(http.MethodPost, "/api/resources/v1/plugins", map[string]any{"name": "engine", "type": "docker", "config": map[string]any{}, "is_default": true},
			http.StatusCreated, &plg)
		c.must(http.MethodPost, "/api/resources/v1/applications", map[string]any{"name": "sleeper", "version": "1", "image": image},
			http.StatusCreated, &app)
		c.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "dock", "plugin_id": plg.ID, "maximum_allowed_worker_instances": 4},
			http.StatusCreated, nil)
		return c, app.ID
	}
	var jobs []string
	t.Cleanup(func() { removeContainersOf(t, jobs) })

	a, appA := setup()
	long := a.submitApp("dock", appA, 1, map[string]string{"SLEEP": "300"})
	jobs = append(jobs, long.ID)
	a.waitJobFor(long.ID, "running", 120*time.Second, hasStatus(events.JobRunning))

	b, appB := setup()
	short := b.submitApp("dock", appB, 1, map[string]string{"SLEEP": "1"})
	jobs = append(jobs, short.ID)
	if got := b.waitJobFor(short.ID, "final", 120*time.Second, isFinal); got.Status != events.JobSucceeded {
		t.Fatalf("second installation's job: %s %+v", got.Status, got.Conditions)
	}

	if got := a.job(long.ID); got.Status != events.JobRunning {
		t.Fatalf("first installation's job became %s %+v once the second one ran", got.Status, got.Conditions)
	}
	csA, csB := containersOf(t, long.ID), containersOf(t, short.ID)
	if len(csA) != 2 || len(csB) != 2 {
		t.Fatalf("containers: %d of the first installation's job, %d of the second's; want 2 each (controller and worker)", len(csA), len(csB))
	}
	for _, ct := range csA {
		if ct.State != "running" {
			t.Errorf("container %s of the first installation's job is %s, want running", ct.ID[:12], ct.State)
		}
	}
	if la, lb := csA[0].Labels["rm.managed"], csB[0].Labels["rm.managed"]; la == "" || la == lb {
		t.Errorf("rm.managed labels %q and %q: want one installation id each", la, lb)
	}
	// The containers go with the test (removeContainersOf).
}
