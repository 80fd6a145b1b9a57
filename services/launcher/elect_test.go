package launcher_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/elect"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/launcher"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Two launcher replicas share the jobs: only the elected one launches. When
// the leader dies without resigning (its NATS connection cut, as by kill -9
// of its process), the standby takes over once the lease expires and adopts
// the running instances: each instance starts exactly once, the job
// succeeds, and the two never lead at once. rm_launcher_leader says which
// one launches.
func TestTwoLaunchersOneLeads(t *testing.T) {
	uri, _ := mongotest.Start(t)
	db := mongotest.Client(t, uri).Database("rm")
	ns := eventstest.RunServer(t)
	dataDir, marks := t.TempDir(), t.TempDir()
	ctx := context.Background()
	for _, name := range []string{events.ControllerQueue, events.PostControllerQueue, "Default"} {
		if _, err := db.Collection("queues").InsertOne(ctx, &events.Queue{Meta: events.Meta{ID: "q-" + name, Version: 1}, Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	type replica struct {
		l    *launcher.Launcher
		cut  func()
		done chan struct{} // closed when Run has returned err
		err  error
		ob   *outbox.Outbox
		reg  *prometheus.Registry
	}
	start := func(id string) *replica {
		nc, js := eventstest.Connect(t, ns)
		ob := outbox.New(events.NewPublisher(js), nil)
		reg := prometheus.NewRegistry()
		l, err := launcher.New(launcher.Config{
			DataDir: dataDir, ResyncInterval: time.Second,
			Elect: true, InstanceID: id, LeaderTTL: 2 * time.Second, RenewInterval: 200 * time.Millisecond,
		}, launcher.Deps{DB: db, JS: js, Outbox: ob, Registerer: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		r := &replica{l: l, cut: nc.Close, done: make(chan struct{}), ob: ob, reg: reg}
		go func() { r.err = l.Run(rctx); close(r.done) }()
		t.Cleanup(func() { cancel(); <-r.done })
		return r
	}
	a, b := start("a"), start("b")
	var both atomic.Bool
	stopWatch := make(chan struct{})
	defer close(stopWatch)
	go func() {
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(5 * time.Millisecond):
				if a.l.Leading() && b.l.Leading() {
					both.Store(true)
				}
			}
		}
	}()
	leader, standby := waitLeader(t, a, b, func(r *replica) bool { return r.l.Leading() })
	if l, s := leaderGauge(t, leader.reg), leaderGauge(t, standby.reg); l != 1 || s != 0 {
		t.Errorf("rm_launcher_leader: leader %v, standby %v; want 1 and 0", l, s)
	}

	// A job of 3 workers (plus its controller), each instance marking its start.
	now := time.Now().UTC().Truncate(time.Millisecond)
	j := &events.Job{
		Meta: events.Meta{ID: "job-x", CreatedAt: now, UpdatedAt: now, Version: 1}, QueueID: "q-Default", QueueName: "Default",
		WorkerInstances: 3, Status: events.JobAdmitted, SubmittedAt: now, AdmittedAt: &now,
		Conditions: []events.Condition{}, Warnings: []string{}, Instances: []events.Instance{},
		Runtime: events.RuntimeSpec{Image: "local", Command: []string{"/bin/sh", "-c",
			`echo "$RM_ROLE-$RM_INSTANCE_INDEX" >> ` + filepath.Join(marks, "starts") + `; sleep 4`}},
	}
	ev, err := events.New(events.TypeJobAdmitted, "/test", j.QueueID, j.ID, j)
	if err != nil {
		t.Fatal(err)
	}
	if err := leader.ob.Insert(ctx, db.Collection("jobs"), j.ID, j.Version, j, ev); err != nil {
		t.Fatal(err)
	}
	waitJob(t, db, "job-x", func(j events.Job) bool { return j.Status == events.JobRunning })

	// The leader dies: it can neither renew nor resign.
	leader.cut()
	cut := time.Now()
	waitLeader(t, standby, standby, func(r *replica) bool { return r.l.Leading() })
	takeover := time.Since(cut)
	if leaderGauge(t, standby.reg) != 1 {
		t.Error("rm_launcher_leader of the new leader is not 1")
	}
	t.Logf("take-over %v after the leader's connection was cut (TTL 2s)", takeover.Round(10*time.Millisecond))
	select {
	case <-leader.done:
		if !errors.Is(leader.err, elect.ErrLost) {
			t.Errorf("dead leader's Run: %v, want ErrLost", leader.err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the cut-off leader kept running")
	}
	got := waitJob(t, db, "job-x", func(j events.Job) bool { return events.JobFinal(j.Status) })
	if got.Status != events.JobSucceeded {
		t.Errorf("job %s: %+v", got.Status, got.Conditions)
	}
	raw, err := os.ReadFile(filepath.Join(marks, "starts"))
	if err != nil {
		t.Fatal(err)
	}
	starts := strings.Fields(string(raw))
	slices.Sort(starts)
	if want := []string{"controller-0", "worker-0", "worker-1", "worker-2"}; !slices.Equal(starts, want) {
		t.Errorf("instance starts %v, want each once: %v", starts, want)
	}
	if both.Load() {
		t.Error("both replicas led at once")
	}
}

func leaderGauge(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "rm_launcher_leader" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no rm_launcher_leader")
	return 0
}

func waitLeader[R any](t *testing.T, a, b R, leads func(R) bool) (leader, standby R) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if leads(a) {
			return a, b
		}
		if leads(b) {
			return b, a
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no launcher leads")
	return a, b
}

func waitJob(t *testing.T, db *mongo.Database, id string, ok func(events.Job) bool) events.Job {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var j events.Job
		if err := db.Collection("jobs").FindOne(context.Background(), bson.D{{Key: "_id", Value: id}}).Decode(&j); err != nil {
			t.Fatal(err)
		}
		if ok(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: %s %+v %+v", id, j.Status, j.Conditions, j.Instances)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
