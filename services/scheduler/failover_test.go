package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// childEnv makes the test binary run one scheduler process instead of the
// tests (as cmd/rm-scheduler does), so that a test can SIGKILL a real leader.
const childEnv = "RM_TEST_RUN_SCHEDULER"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(runChild())
	}
	os.Exit(m.Run())
}

func runChild() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	mc, err := mongo.Connect(options.Client().ApplyURI(os.Getenv("RM_MONGO_URI")).SetTimeout(10 * time.Second))
	if err != nil {
		log.Error("mongo", "err", err)
		return 1
	}
	nc, err := nats.Connect(os.Getenv("RM_NATS_URL"))
	if err != nil {
		log.Error("nats", "err", err)
		return 1
	}
	js, _ := jetstream.New(nc)
	db := mc.Database("rm")
	ob := outbox.New(events.NewPublisher(js), log)
	ob.Register(db.Collection(JobsCollection))
	go ob.Run(ctx, 500*time.Millisecond)
	// The production defaults: TTL 5s, renewal every 1s.
	err = Run(ctx, Config{InstanceID: os.Getenv("RM_INSTANCE_ID"), TickInterval: 200 * time.Millisecond}, Deps{DB: db, JS: js, Outbox: ob, Logger: log})
	if err != nil {
		log.Error("scheduler", "err", err)
		return 1
	}
	return 0
}

type schedulerProcess struct {
	name   string
	cmd    *exec.Cmd
	stderr *eventstest.SyncBuffer
	done   chan struct{}
}

func startSchedulerProcess(t *testing.T, name, mongoURI, natsURL string) *schedulerProcess {
	t.Helper()
	p := &schedulerProcess{name: name, stderr: &eventstest.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(os.Environ(), childEnv+"=1", "RM_MONGO_URI="+mongoURI, "RM_NATS_URL="+natsURL, "RM_INSTANCE_ID="+name)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, p.stderr)
		}
	})
	return p
}

// leader reads who holds the election key.
func leader(t *testing.T, js jetstream.JetStream) string {
	t.Helper()
	kv, err := js.KeyValue(context.Background(), "rm_scheduler")
	if err != nil {
		return ""
	}
	e, err := kv.Get(context.Background(), "leader")
	if err != nil {
		return ""
	}
	return string(e.Value())
}

// Two scheduler processes against one NATS and one MongoDB, under a stream of
// submissions and finishes: kill -9 the leader; the other takes over within
// 10 s, and no job is admitted twice nor any queue over its limit, before or
// after.
func TestFailoverKillLeader(t *testing.T) {
	uri, fdb := mongotest.Start(t)
	ensureIDIndexes(t, fdb)
	srv := eventstest.RunServer(t)
	_, js := eventstest.Connect(t, srv)
	e := &env{t: t, db: mongotest.Client(t, uri).Database("rm"), js: js, clock: &clock{now: time.Now()}, byName: map[string]string{}}
	e.ob = outbox.New(events.NewPublisher(js), nil)
	e.ctlID = e.queue(events.ControllerQueue, nil)
	e.pcID = e.queue(events.PostControllerQueue, nil)
	queues := []string{e.queue("q0", ptr(8)), e.queue("q1", ptr(5))}

	procs := map[string]*schedulerProcess{
		"alpha": startSchedulerProcess(t, "alpha", uri, srv.ClientURL()),
		"beta":  startSchedulerProcess(t, "beta", uri, srv.ClientURL()),
	}
	var first string
	e.eventually("a leader", func() bool { first = leader(t, js); return first != "" })

	// Load: submissions, and the launcher's part: admitted jobs finish after a while.
	ctx, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		for ctx.Err() == nil {
			e.clock.Advance(time.Millisecond)
			e.submit(queues[rng.IntN(2)], 1+rng.IntN(4))
			time.Sleep(50 * time.Millisecond)
		}
	}()
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			var admitted []events.Job
			cur, err := e.db.Collection(JobsCollection).Find(ctx, map[string]any{"status": events.JobAdmitted})
			if err == nil && cur.All(ctx, &admitted) == nil {
				for i, j := range admitted {
					if i%2 == 0 {
						_ = e.tryChange(j.ID, events.TypeJobSucceeded, func(j *events.Job) bool {
							if j.Status != events.JobAdmitted {
								return false
							}
							now := time.Now()
							j.Status, j.FinishedAt = events.JobSucceeded, &now
							return true
						})
					}
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()

	time.Sleep(2 * time.Second)
	admittedBefore := count(eventTypes(t, js), events.TypeJobAdmitted)
	killed := time.Now()
	if err := procs[first].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-procs[first].done
	var second string
	deadline := killed.Add(10 * time.Second)
	for {
		second = leader(t, js)
		if second != "" && second != first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no takeover within 10s of killing %s", first)
		}
		time.Sleep(20 * time.Millisecond)
	}
	takeover := time.Since(killed)
	// The new leader admits again.
	for count(eventTypes(t, js), events.TypeJobAdmitted) <= admittedBefore+2 {
		if time.Now().After(killed.Add(20 * time.Second)) {
			t.Fatalf("the new leader %s admitted nothing", second)
		}
		time.Sleep(50 * time.Millisecond)
	}
	admittedAgain := time.Since(killed)
	time.Sleep(2 * time.Second)
	stopLoad()
	wg.Wait()
	t.Logf("killed %s; %s took over after %v and admitted again after %v", first, second, takeover, admittedAgain)

	// Quiet now: check the books.
	for deadline := time.Now().Add(15 * time.Second); ; {
		var stuck []map[string]any
		cur, err := e.db.Collection(JobsCollection).Find(context.Background(), map[string]any{"status": events.JobSubmitted})
		if err != nil {
			t.Fatal(err)
		}
		if err := cur.All(context.Background(), &stuck); err != nil {
			t.Fatal(err)
		}
		if len(stuck) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, j := range stuck {
				t.Logf("stuck: %v version %v outbox %v", j["_id"], j["version"], j["_outbox"])
			}
			_ = procs[second].cmd.Process.Signal(syscall.SIGQUIT) // its goroutines, in its stderr
			<-procs[second].done
			t.Fatalf("%d jobs left submitted", len(stuck))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	perJob := map[string]int{}
	for _, ev := range eventstest.ReadAll(t, js, events.FilterSubject(events.KindJob, "", "")) {
		if ev.Type == events.TypeJobAdmitted {
			perJob[ev.ResourceID]++
		}
	}
	for id, n := range perJob {
		if n > 1 {
			t.Errorf("job %s admitted %d times", id, n)
		}
	}
	l := e.ledger()
	var jobs []events.Job
	cur, err := e.db.Collection(JobsCollection).Find(context.Background(), map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cur.All(context.Background(), &jobs); err != nil {
		t.Fatal(err)
	}
	active := map[string]int{}
	for _, j := range jobs {
		live := j.Status == events.JobAdmitted || j.Status == events.JobRunning
		if live {
			active[j.QueueID] += j.WorkerInstances
		}
		if held := l.Leases[j.ID] != nil; held != live {
			t.Errorf("job %s is %s, holds a lease: %v", j.ID, j.Status, held)
		}
	}
	alloc := l.Allocated()
	for i, q := range queues {
		limit := []int{8, 5}[i]
		if alloc[q] != active[q] || alloc[q] > limit {
			t.Errorf("queue q%d: ledger %d, admitted jobs %d, limit %d", i, alloc[q], active[q], limit)
		}
	}
	if want := fmt.Sprint(second); l.Epoch == 0 || leader(t, js) != want {
		t.Errorf("ledger epoch %d, leader %q", l.Epoch, leader(t, js))
	}
	t.Logf("%d jobs, %d admitted", len(jobs), len(perJob))
}

func eventTypes(t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	var out []string
	for _, ev := range eventstest.ReadAll(t, js, events.FilterSubject(events.KindJob, "", "")) {
		out = append(out, ev.Type)
	}
	return out
}
