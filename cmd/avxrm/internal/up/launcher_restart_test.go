package up_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The all-in-one killed with SIGKILL while a job runs on the local driver,
// then started again on the same data: the job completes, each instance
// ran once (no duplicate), no process is left, and the job's events are
// all there, in order, once each.
func TestLauncherSurvivesSIGKILL(t *testing.T) {
	dataDir := t.TempDir()
	addrs := [3]string{eventstest.FreeAddr(t), eventstest.FreeAddr(t), eventstest.FreeAddr(t)}
	ch := startChild(t, dataDir, addrs)
	c := newClient(t, ch.http)
	app := createSleeperApp(c)
	c.createQueue("Default", 10)
	j := c.submitApp("Default", app, 4, map[string]string{"SLEEP": "6"})
	c.waitJobFor(j.ID, "running", 30*time.Second, hasStatus(events.JobRunning))
	groups := instanceGroups(t, dataDir, j.ID)
	if len(groups) != 5 {
		t.Fatalf("%d process groups, want 5", len(groups))
	}
	ch.kill(t)
	if live := liveInGroups(t, groups); len(live) == 0 {
		t.Fatal("the instances died with the all-in-one; they must outlive it")
	}

	ch = startChild(t, dataDir, addrs)
	c = newClient(t, ch.http)
	got := c.waitJobFor(j.ID, "final", 60*time.Second, isFinal)
	if got.Status != events.JobSucceeded {
		t.Fatalf("job after the restart: %s %+v %+v", got.Status, got.Conditions, got.Instances)
	}
	checkInstances(t, got, events.InstanceSucceeded, 0)
	// Each instance started once: one greeting in each output (appended to
	// on every start of the same instance).
	logs, err := filepath.Glob(filepath.Join(dataDir, "launcher", "local", j.ID, "*", "output.log"))
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) != 5 {
		t.Errorf("%d instance directories, want 5", len(logs))
	}
	for _, f := range logs {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(raw), "hello from"); n != 1 {
			t.Errorf("%s: started %d times", f, n)
		}
	}
	if live := liveInGroups(t, instanceGroups(t, dataDir, j.ID)); len(live) > 0 {
		t.Errorf("processes left: %v", live)
	}
	nc, err := nats.Connect("nats://" + ch.natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if ev := waitEvents(t, js, j.ID, "succeeded"); !slices.Equal(ev, []string{"submitted", "admitted", "running", "succeeded"}) {
		t.Errorf("events: %v", ev)
	}
	// The capacity came back.
	deadline := time.Now().Add(10 * time.Second)
	for c.queue("Default").Usage.AllocatedWorkerInstances != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("lease not released: %+v", *c.queue("Default").Usage)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
