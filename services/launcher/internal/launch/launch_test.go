package launch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/pkg/events/ledger"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/local"
	"github.com/avxrm/rm/services/launcher/internal/driver/registry"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// env is a launcher on a real FerretDB and JetStream, with the documents
// the API would have written inserted directly.
type env struct {
	t       *testing.T
	uri     string // the store's, for a test's own client
	db      *mongo.Database
	js      jetstream.JetStream
	ob      *outbox.Outbox
	dataDir string
	// launcherDB, if set, is the launcher's connection (a counting one).
	launcherDB *mongo.Database
	// configure, if set, changes the launcher's config and drivers before
	// start.
	configure func(*Config, map[string]driver.Factory)
	// logTo, if set, gets the launcher's log.
	logTo io.Writer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	uri, _ := mongotest.Start(t)
	db := mongotest.Client(t, uri).Database("rm")
	js := eventstest.Run(t)
	e := &env{t: t, uri: uri, db: db, js: js, ob: outbox.New(events.NewPublisher(js), nil), dataDir: t.TempDir()}
	for _, name := range []string{events.ControllerQueue, events.PostControllerQueue, "Default"} {
		e.insert(QueuesCollection, &events.Queue{Meta: events.Meta{ID: "q-" + name, Version: 1}, Name: name,
			EnvironmentVariables: map[string]string{"QUEUE": name}})
	}
	return e
}

func (e *env) insert(coll string, doc any) {
	e.t.Helper()
	if _, err := e.db.Collection(coll).InsertOne(context.Background(), doc); err != nil {
		e.t.Fatal(err)
	}
}

// start runs a launcher until the test ends or stop is called.
func (e *env) start() (stop func()) {
	e.t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("RM_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if e.logTo != nil {
		log = slog.New(slog.NewTextHandler(e.logTo, nil))
	}
	cfg, drivers := Config{DataDir: e.dataDir, ResyncInterval: time.Second}, registry.Factories()
	if e.configure != nil {
		e.configure(&cfg, drivers)
	}
	db := e.db
	if e.launcherDB != nil {
		db = e.launcherDB
	}
	s, err := New(cfg, Deps{
		DB: db, JS: e.js, Outbox: e.ob, Logger: log, Drivers: drivers,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("Run() = %v", err)
		}
	}
	e.t.Cleanup(stop)
	return stop
}

// admit inserts an admitted job running sh -c script, changed by opts,
// and announces it.
func (e *env) admit(id string, workers int, script string, jobEnv map[string]string, opts ...func(*events.Job)) {
	e.t.Helper()
	now := time.Now().UTC().Truncate(time.Millisecond)
	envVars := map[string]string{"QUEUE": "Default"}
	for k, v := range jobEnv {
		envVars[k] = v
	}
	j := &events.Job{
		Meta: events.Meta{ID: id, CreatedAt: now, UpdatedAt: now, Version: 1}, QueueID: "q-Default", QueueName: "Default",
		WorkerInstances: workers, Status: events.JobAdmitted, SubmittedAt: now, AdmittedAt: &now,
		Conditions: []events.Condition{}, Warnings: []string{}, Instances: []events.Instance{},
		Runtime: events.RuntimeSpec{Image: "local", Command: []string{"/bin/sh", "-c", script}, EnvironmentVariables: envVars},
	}
	for _, o := range opts {
		o(j)
	}
	ev, err := events.New(events.TypeJobAdmitted, "/test", j.QueueID, j.ID, j)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.ob.Insert(context.Background(), e.db.Collection(JobsCollection), j.ID, j.Version, j, ev); err != nil {
		e.t.Fatal(err)
	}
}

// change applies f to job id in a version-conditioned write with an event
// of type typ, as the API does.
func (e *env) change(id, typ string, f func(j *events.Job)) {
	e.t.Helper()
	for {
		raw, err := e.db.Collection(JobsCollection).FindOne(context.Background(), bson.D{{Key: "_id", Value: id}}).Raw()
		if err != nil {
			e.t.Fatal(err)
		}
		var j events.Job
		var envl outbox.Envelope
		_ = bson.Unmarshal(raw, &j)
		_ = bson.Unmarshal(raw, &envl)
		prev := j.Version
		f(&j)
		j.Version++
		ev, err := events.New(typ, "/test", j.QueueID, j.ID, &j)
		if err != nil {
			e.t.Fatal(err)
		}
		err = e.ob.Replace(context.Background(), e.db.Collection(JobsCollection), id, prev, j.Version, envl.Outbox, &j, ev)
		if err == outbox.ErrVersionConflict {
			continue
		}
		if err != nil {
			e.t.Fatal(err)
		}
		return
	}
}

// job reads job id with its instances, as the API does.
func (e *env) job(id string) events.Job {
	e.t.Helper()
	j, err := jobdoc.New(e.db, e.ob, jobdoc.API, "/test").GetWithInstances(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return *j
}

func (e *env) wait(id, what string, ok func(events.Job) bool) events.Job {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		j := e.job(id)
		if ok(j) {
			return j
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("job %s never became %s: %s %+v %+v", id, what, j.Status, j.Conditions, j.Instances)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) types(id string) []string {
	e.t.Helper()
	var out []string
	for _, ev := range eventstest.ReadAll(e.t, e.js, events.FilterSubject(events.KindJob, "", id)) {
		if ev.Type != events.TypeJobUpdated {
			out = append(out, strings.TrimPrefix(ev.Type, "rm.job."))
		}
	}
	return out
}

func final(j events.Job) bool { return events.JobFinal(j.Status) }

func TestJobRunsToSuccess(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.admit("job-a", 3, `echo "$QUEUE $RM_ROLE $RM_INSTANCE_INDEX/$RM_WORKER_INSTANCES $RM_JOB_ID"; sleep 0.3`, nil)
	j := e.wait("job-a", "final", final)
	if j.Status != events.JobSucceeded || j.StartedAt == nil || j.FinishedAt == nil {
		t.Fatalf("job: %s %+v", j.Status, j.Conditions)
	}
	if len(j.Instances) != 4 {
		t.Fatalf("instances %+v", j.Instances)
	}
	for _, in := range j.Instances {
		if in.Status != events.InstanceSucceeded || in.ExitCode == nil || *in.ExitCode != 0 {
			t.Errorf("instance %+v", in)
		}
	}
	if got, want := e.types("job-a"), []string{"admitted", "running", "succeeded"}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
	out, err := os.ReadFile(e.dataDir + "/local/job-a/worker-2/output.log")
	if err != nil {
		t.Fatal(err)
	}
	// The controller runs on simulation-controller-queue: its variables
	// under the job's (which carry the job queue's).
	if got, want := string(out), "Default worker 2/3 job-a\n"; got != want {
		t.Errorf("worker 2 printed %q, want %q", got, want)
	}
}

func TestFailingWorkerFailsJobAndStopsOthers(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.admit("job-f", 4, `[ "$RM_ROLE" = worker ] && [ "$RM_INSTANCE_INDEX" = 2 ] && exit 3; sleep 60`, nil)
	j := e.wait("job-f", "failed", final)
	if j.Status != events.JobFailed {
		t.Fatalf("status %s", j.Status)
	}
	c := *jobdoc.FindCondition(&j, condFailed)
	if c.Type != condFailed || c.Reason != reasonInstanceFailed || c.Message != "worker 2 exited with code 3" {
		t.Errorf("condition %+v", c)
	}
	j = e.wait("job-f", "others stopped", func(j events.Job) bool {
		n := 0
		for _, in := range j.Instances {
			if in.Status == events.InstanceStopped {
				n++
			}
		}
		return n == 4
	})
	if got, want := e.types("job-f"), []string{"admitted", "failed"}; !slices.Equal(got, want) && !slices.Equal(got, []string{"admitted", "running", "failed"}) {
		t.Errorf("events %v, want %v (running optional)", got, want)
	}
}

// A job whose command does not exist fails saying so and naming it, as the
// local driver reports it; before, it said only "exited with code 127" and
// the reason was in the instances' logs.
func TestCommandNotFoundFailsJobSayingSo(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.admit("job-nocmd", 1, "", nil, func(j *events.Job) { j.Runtime.Command = []string{"nosuchcmd-rm-test"} })
	j := e.wait("job-nocmd", "failed", final)
	c := jobdoc.FindCondition(&j, condFailed)
	if j.Status != events.JobFailed || c == nil || c.Reason != reasonInstanceFailed ||
		!strings.HasSuffix(c.Message, ` 0 exited with code 127: command "nosuchcmd-rm-test" not found: no executable file of that name in PATH`) {
		t.Errorf("job %s, condition %+v; want failed saying the command was not found", j.Status, c)
	}
}

// A launcher stopped while a job runs (its processes keep running) and
// started again re-adopts the instances: none is started twice, the job
// completes.
func TestRestartResumes(t *testing.T) {
	e := newEnv(t)
	stop := e.start()
	e.admit("job-r", 2, `echo start >> "$MARKS"; sleep 2`, map[string]string{"MARKS": e.dataDir + "/marks"})
	e.wait("job-r", "running", func(j events.Job) bool { return j.Status == events.JobRunning })
	stop()
	e.start()
	j := e.wait("job-r", "final", final)
	if j.Status != events.JobSucceeded || len(j.Instances) != 3 {
		t.Fatalf("job after restart: %s %+v", j.Status, j.Instances)
	}
	marks, err := os.ReadFile(e.dataDir + "/marks")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(marks), "start"); n != 3 {
		t.Errorf("%d instance starts, want 3", n)
	}
}

// A job whose instances end while no launcher runs is recorded as ended
// when they ended, as its instances are, not when the next launcher saw
// them: its finished_at (and the run time measured from it) leaves out the
// time the launcher was down.
func TestJobEndedWhileLauncherDownKeepsItsEndTime(t *testing.T) {
	for _, tc := range []struct {
		name, script, status string
	}{
		{"succeeded", `sleep 1`, events.JobSucceeded},
		{"failed", `sleep 1; [ "$RM_ROLE" = controller ] || exit 3`, events.JobFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			stop := e.start()
			id := "job-down-" + tc.name
			e.admit(id, 2, tc.script, nil)
			e.wait(id, "running", func(j events.Job) bool { return j.Status == events.JobRunning })
			stop()
			time.Sleep(2500 * time.Millisecond) // the instances end meanwhile
			restarted := time.Now()
			e.start()
			j := e.wait(id, "final", final)
			if j.Status != tc.status || j.FinishedAt == nil || j.StartedAt == nil {
				t.Fatalf("job %s, started %v, finished %v; want %s with both times", j.Status, j.StartedAt, j.FinishedAt, tc.status)
			}
			var want time.Time // the last instance's end, or the first failure's
			for _, in := range j.Instances {
				if in.FinishedAt == nil {
					t.Fatalf("instance %s %d has no end time: %+v", in.Role, in.Index, in)
				}
				first := in.Status == events.InstanceFailed && (want.IsZero() || in.FinishedAt.Before(want))
				if first || (tc.status == events.JobSucceeded && in.FinishedAt.After(want)) {
					want = *in.FinishedAt
				}
			}
			if !want.Before(restarted) {
				t.Fatalf("the instances ended at %v, after the launcher restarted at %v: the test did not stop it in time", want, restarted)
			}
			if !j.FinishedAt.Equal(want) {
				t.Errorf("finished_at %v, want the instances' end %v (the launcher restarted at %v)", j.FinishedAt, want, restarted)
			}
			if tc.status == events.JobFailed {
				if c := jobdoc.FindCondition(&j, condFailed); c == nil || !c.LastTransitionTime.Equal(want) {
					t.Errorf("Failed condition %+v, want it dated %v", c, want)
				}
			}
		})
	}
}

func TestCancelStopsEverything(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.admit("job-c", 2, `sleep 60`, nil)
	e.wait("job-c", "running", func(j events.Job) bool { return j.Status == events.JobRunning })
	e.change("job-c", events.TypeJobCancelRequested, func(j *events.Job) { j.CancelRequested = true })
	j := e.wait("job-c", "cancelled", final)
	if j.Status != events.JobCancelled {
		t.Fatalf("status %s", j.Status)
	}
	for _, in := range j.Instances {
		if in.Status != events.InstanceStopped {
			t.Errorf("instance %+v", in)
		}
	}
	if got, want := e.types("job-c"), []string{"admitted", "running", "cancel-requested", "cancelled"}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

// A post controller starts once admitted and stops when asked.
func TestPostController(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.admit("job-p", 1, `sleep 0.2`, nil)
	e.wait("job-p", "final", final)
	now := time.Now().UTC().Truncate(time.Millisecond)
	e.change("job-p", events.TypeJobUpdated, func(j *events.Job) {
		j.PostController = &events.PostController{Status: pcAdmitted, RequestedAt: now}
		j.Runtime.Command = []string{"/bin/sh", "-c", "sleep 60"}
	})
	e.wait("job-p", "post controller running", func(j events.Job) bool { return j.PostController.Status == pcRunning })
	e.change("job-p", events.TypeJobUpdated, func(j *events.Job) { j.PostController.StopRequested = true })
	j := e.wait("job-p", "post controller stopped", func(j events.Job) bool {
		for _, in := range j.Instances {
			if in.Role == events.RolePostController {
				return in.Status == events.InstanceStopped
			}
		}
		return false
	})
	if j.Status != events.JobSucceeded {
		t.Errorf("the post controller changed the job's status: %s", j.Status)
	}
}

var _ = driver.RoleWorker

// A deployment is kept at its replica count: scaled up and down, a failed
// replica restarted, its ready replicas written back. Replicas start from
// the runtime the API stored on the deployment: no application or
// app-runtime-config exists here. A deployment stored without a runtime
// (written before the API resolved them) gets Available=False, StartFailed.
func TestDeploymentReplicas(t *testing.T) {
	e := newEnv(t)
	e.insert(DeploymentsCollection, deployment{Meta: events.Meta{ID: "dep-01X", Version: 1}, Name: "viz",
		ApplicationID: "app-1", QueueID: "q-Default", Replicas: 2, Status: deploymentStatus{Conditions: []events.Condition{}},
		Runtime: events.RuntimeSpec{Image: "local", Command: []string{"/bin/sh", "-c"},
			Args:                 []string{`echo "$RM_DEPLOYMENT_ID $RM_INSTANCE_INDEX $FROM"; exec sleep 60`},
			EnvironmentVariables: map[string]string{"FROM": "runtime"}}})
	e.insert(DeploymentsCollection, deployment{Meta: events.Meta{ID: "dep-01OLD", Version: 1}, Name: "old",
		ApplicationID: "app-1", QueueID: "q-Default", Replicas: 1, Status: deploymentStatus{Conditions: []events.Condition{}}})
	// The scheduler's grants: a replica starts only with its lease.
	claim := []ledger.Claim{{Queue: "q-Default", Count: 1}}
	leases := map[string][]ledger.Claim{"dep-01X/replica/0": claim, "dep-01X/replica/1": claim, "dep-01OLD/replica/0": claim}
	e.insert(ledger.Collection, ledger.Doc{ID: ledger.ID, Epoch: 1, Version: 1, Held: ledger.Encode(leases)})
	e.start()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var old deployment
		if err := e.db.Collection(DeploymentsCollection).FindOne(context.Background(), bson.D{{Key: "_id", Value: "dep-01OLD"}}).Decode(&old); err != nil {
			t.Fatal(err)
		}
		if c := findDepCondition(old.Status, "Available"); c != nil {
			if c.Status != "False" || c.Reason != "StartFailed" || !strings.Contains(c.Message, "no resolved runtime") {
				t.Errorf("deployment without runtime: %+v", c)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("deployment without runtime: no condition")
		}
		time.Sleep(50 * time.Millisecond)
	}
	read := func() deployment {
		var d deployment
		if err := e.db.Collection(DeploymentsCollection).FindOne(context.Background(), bson.D{{Key: "_id", Value: "dep-01X"}}).Decode(&d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	waitReady := func(n int) deployment {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			d := read()
			if d.Status.ReadyReplicas == n {
				return d
			}
			if time.Now().After(deadline) {
				t.Fatalf("ready replicas %d, want %d: %+v", d.Status.ReadyReplicas, n, d.Status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	d := waitReady(2)
	if c := findDepCondition(d.Status, "Available"); c == nil || c.Status != "True" {
		t.Errorf("conditions %+v", d.Status.Conditions)
	}
	if c := findDepCondition(d.Status, "Admitted"); c == nil || c.Status != "True" {
		t.Errorf("conditions %+v", d.Status.Conditions)
	}
	out, err := os.ReadFile(e.dataDir + "/local/dep-01X-r1/replica-0/output.log")
	if err != nil || string(out) != "dep-01X 1 runtime\n" {
		t.Errorf("replica 1 printed %q (%v)", out, err)
	}

	// Scale up to 3 without a lease for slot 2: it waits, and says so.
	_, err = e.db.Collection(DeploymentsCollection).UpdateOne(context.Background(), bson.D{{Key: "_id", Value: "dep-01X"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "replicas", Value: 3}}}, {Key: "$inc", Value: bson.D{{Key: "version", Value: 1}}}})
	if err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		c := findDepCondition(read().Status, "Admitted")
		if c != nil && c.Status == "False" {
			if c.Reason != "InsufficientWorkerCapacity" || !strings.Contains(c.Message, "2 of 3 replicas admitted, 1 pending: queue Default has no limit") {
				t.Errorf("slot 2 without a lease: %+v", c)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Admitted=False condition with slot 2 waiting: %+v", read().Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(e.dataDir + "/local/dep-01X-r2"); !os.IsNotExist(err) {
		t.Errorf("slot 2 started without a lease (%v)", err)
	}
	if reps := read().Status.Replicas; len(reps) != 3 || reps[0].State != replicaRunning || reps[0].StartedAt == nil ||
		reps[1].State != replicaRunning || reps[2].State != replicaPending || reps[2].Slot != 2 {
		t.Errorf("replicas with slot 2 waiting for its lease: %+v", reps)
	}
	leases["dep-01X/replica/2"] = claim
	_, err = e.db.Collection(ledger.Collection).UpdateOne(context.Background(), bson.D{{Key: "_id", Value: ledger.ID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "held", Value: ledger.Encode(leases)}}}})
	if err != nil {
		t.Fatal(err)
	}
	waitReady(3)

	// Scale down: slots 1 and 2 go.
	_, err = e.db.Collection(DeploymentsCollection).UpdateOne(context.Background(), bson.D{{Key: "_id", Value: "dep-01X"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "replicas", Value: 1}}}, {Key: "$inc", Value: bson.D{{Key: "version", Value: 1}}}})
	if err != nil {
		t.Fatal(err)
	}
	waitReady(1)
	deadline = time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(e.dataDir + "/local/dep-01X-r1"); os.IsNotExist(err) {
			break // its log too: no route reads the log of a slot that is no more
		}
		if time.Now().After(deadline) {
			t.Fatal("slot 1 not removed after scaling down")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The replica dies: it is started again, as the next generation.
	// The local driver's record: the wrapper's line "pid <pid>".
	record, err := os.ReadFile(e.dataDir + "/local/dep-01X-r0/replica-0/record")
	if err != nil {
		t.Fatal(err)
	}
	_, pid, _ := strings.Cut(string(record), "\npid ")
	var n int
	if _, err := fmt.Sscan(pid, &n); err != nil {
		t.Fatalf("no pid line in the record %q: %v", record, err)
	}
	if err := syscall.Kill(-n, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		out, err := os.ReadFile(e.dataDir + "/local/dep-01X-r0/replica-1/output.log")
		if err == nil && string(out) == "dep-01X 0 runtime\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica 0 not restarted: %q %v", out, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Its status says it restarted once, and how the one before ended.
	deadline = time.Now().Add(30 * time.Second)
	for {
		d = waitReady(1)
		reps := d.Status.Replicas
		if len(reps) == 1 && reps[0].State == replicaRunning && reps[0].Restarts == 1 {
			if r := reps[0]; r.LastEndedAt == nil || r.LastMessage == "" || r.StartedAt == nil || r.StartedAt.Before(*r.LastEndedAt) {
				t.Errorf("restarted replica: %+v, want when and why the last one ended, and its successor's start", r)
			}
			t.Logf("the replica's last end: %s", reps[0].LastMessage)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas after the restart: %+v, want slot 0 running, restarted once", reps)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Its events carry the status without the per-replica list, which
	// grows with the replicas: every event stays small.
	evs := eventstest.ReadAll(t, e.js, events.FilterSubject(events.KindDeployment, "", "dep-01X"))
	for _, ev := range evs {
		var data map[string]any
		if err := json.Unmarshal(ev.Data, &data); err != nil {
			t.Fatal(err)
		}
		status, _ := data["status"].(map[string]any)
		if _, listed := status["replicas"]; listed || status["conditions"] == nil || data["name"] != "viz" {
			t.Errorf("%s carries %v, want the deployment with its status but no replica list", ev.Type, data)
		}
	}
	if len(evs) == 0 {
		t.Error("no event of the deployment")
	}
}

func findDepCondition(st deploymentStatus, typ string) *events.Condition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == typ {
			return &st.Conditions[i]
		}
	}
	return nil
}

// stopAfter is a driver whose Stop of an instance waits until the file
// named by its ref's worker index in ended exists: the instance has ended
// on its own by then, and the stop comes after.
type stopAfter struct {
	driver.Driver
	ended map[int]string
}

func (d stopAfter) Stop(ctx context.Context, r driver.Ref) error {
	if f, ok := d.ended[r.Index]; ok && r.Role == driver.RoleWorker {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(f); err == nil {
				time.Sleep(50 * time.Millisecond) // its exit recorded
				break
			}
		}
	}
	return d.Driver.Stop(ctx, r)
}

// A worker that fails on its own while the launcher is stopping its failed
// job's others is recorded failed with its code, not stopped; one that
// exits non-zero because the stop's SIGTERM reached it is stopped.
func TestOwnFailureWhileStoppingIsAFailure(t *testing.T) {
	e := newEnv(t)
	own := e.dataDir + "/worker-1-ended"
	e.configure = func(_ *Config, drivers map[string]driver.Factory) {
		local := drivers["local"]
		drivers["local"] = func(raw json.RawMessage, opts driver.Options) (driver.Driver, error) {
			d, err := local(raw, opts)
			return stopAfter{Driver: d, ended: map[int]string{1: own}}, err
		}
	}
	e.start()
	e.admit("job-own", 3, `case "$RM_ROLE$RM_INSTANCE_INDEX" in
worker0) exit 3 ;;
worker1) trap '' TERM; sleep 0.5; touch "$OWN"; exit 4 ;;
worker2) trap 'exit 5' TERM; sleep 60 & wait ;;
*) sleep 60 ;;
esac`, map[string]string{"OWN": own})
	j := e.wait("job-own", "failed with every instance ended", func(j events.Job) bool {
		if !final(j) || len(j.Instances) != 4 {
			return false
		}
		for _, in := range j.Instances {
			if !isFinalInstance(in.Status) {
				return false
			}
		}
		return true
	})
	want := map[string]struct {
		status string
		code   int
	}{
		"worker0": {events.InstanceFailed, 3}, "worker1": {events.InstanceFailed, 4},
		"worker2": {events.InstanceStopped, 5}, "controller0": {events.InstanceStopped, 143},
	}
	for _, in := range j.Instances {
		w := want[in.Role+strconv.Itoa(in.Index)]
		if in.Status != w.status || in.ExitCode == nil || *in.ExitCode != w.code {
			t.Errorf("%s %d: %s, code %v (%q); want %s, code %d", in.Role, in.Index, in.Status, ptrString(in.ExitCode), in.Message, w.status, w.code)
		}
	}
	if c := jobdoc.FindCondition(&j, condFailed); c == nil || c.Message != "worker 0 exited with code 3" {
		t.Errorf("condition %+v, want the first failure's", c)
	}
}

func ptrString(p *int) string {
	if p == nil {
		return "none"
	}
	return strconv.Itoa(*p)
}

// A cancelled job's instances are recorded as ended when they ended: one
// that ignores SIGTERM ends when the grace period's SIGKILL comes, not when
// the stop began. Before, stopRecords stamped them with the round's start,
// a grace period before they were killed.
func TestCancelRecordsWhenTheInstancesEnded(t *testing.T) {
	e := newEnv(t)
	const grace = 700 * time.Millisecond
	e.configure = func(_ *Config, drivers map[string]driver.Factory) {
		drivers["local"] = func(raw json.RawMessage, opts driver.Options) (driver.Driver, error) {
			return local.NewDriver(driver.LocalConfig{}, opts, local.WithGracePeriod(grace))
		}
	}
	e.start()
	e.admit("job-g", 1, `trap '' TERM; echo up; sleep 60`, nil)
	e.wait("job-g", "running", func(j events.Job) bool { return j.Status == events.JobRunning })
	asked := time.Now()
	e.change("job-g", events.TypeJobCancelRequested, func(j *events.Job) { j.CancelRequested = true })
	j := e.wait("job-g", "cancelled with its instances' codes", func(j events.Job) bool {
		if j.Status != events.JobCancelled {
			return false
		}
		for _, in := range j.Instances {
			if in.ExitCode == nil {
				return false
			}
		}
		return true
	})
	for _, in := range j.Instances {
		if in.Status != events.InstanceStopped || in.FinishedAt == nil || *in.ExitCode != 137 {
			t.Fatalf("%s %d: %s, code %v, finished %v; want stopped, 137", in.Role, in.Index, in.Status, ptrString(in.ExitCode), in.FinishedAt)
		}
		if ended := in.FinishedAt.Sub(asked); ended < grace-50*time.Millisecond {
			t.Errorf("%s %d recorded ended %s after the cancel; it was killed at the grace period's end, %s after", in.Role, in.Index, ended, grace)
		}
	}
	if j.FinishedAt == nil || j.FinishedAt.Sub(asked) < grace-50*time.Millisecond {
		t.Errorf("the job finished at %v, %s after the cancel; want at least the grace period, as its instances", j.FinishedAt, j.FinishedAt.Sub(asked))
	}
}
