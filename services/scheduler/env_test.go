package scheduler

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/scheduler/internal/lease"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// env is a real MongoDB-wire store (FerretDB) and a real JetStream server, with
// helpers that write queues and jobs the way the API and the launcher do:
// version-conditioned single-document writes with their events, through the
// outbox.
type env struct {
	t      *testing.T
	uri    string // the store's, for a test's own client
	db     *mongo.Database
	js     jetstream.JetStream
	ob     *outbox.Outbox
	clock  *clock
	ctlID  string
	pcID   string
	byName map[string]string
	srv    *ferretembed.Server
	lookup indexed.Lookup // given to the schedulers started after it is set
}

// clock is the injected time: tests move it instead of sleeping.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

var t0 = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

func newEnv(t *testing.T) *env {
	t.Helper()
	uri, srv := mongotest.Start(t)
	db := mongotest.Client(t, uri).Database("rm")
	ensureIDIndexes(t, srv)
	js := eventstest.Run(t)
	e := &env{t: t, uri: uri, db: db, srv: srv, js: js, ob: outbox.New(events.NewPublisher(js), nil), clock: &clock{now: t0}, byName: map[string]string{}}
	e.ctlID = e.queue(events.ControllerQueue, nil)
	e.pcID = e.queue(events.PostControllerQueue, nil)
	return e
}

func testConfig() Config {
	return Config{LeaderTTL: 2 * time.Second, RenewInterval: 200 * time.Millisecond, TickInterval: 50 * time.Millisecond, ResyncInterval: 2 * time.Second}
}

// start runs a scheduler until the test ends (or stop is called) and waits
// until it leads.
func (e *env) start(cfg Config) (s *Scheduler, stop func()) {
	e.t.Helper()
	s, stop = e.startStandby(cfg)
	e.eventually("scheduler leads", func() bool { return s.Leading() })
	return s, stop
}

// startStandby runs a scheduler until the test ends (or stop is called).
func (e *env) startStandby(cfg Config) (s *Scheduler, stop func()) {
	e.t.Helper()
	s, err := New(context.Background(), cfg, Deps{DB: e.db, JS: e.js, Outbox: e.ob, Registerer: prometheus.NewRegistry(), Now: e.clock.Now, Lookup: e.lookup,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("scheduler run: %v", err)
			}
		})
	}
	e.t.Cleanup(stop)
	return s, stop
}

func (e *env) eventually(what string, ok func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// queue stores a queue as the API creates it and returns its id.
func (e *env) queue(name string, limit *int, mods ...func(*events.Queue)) string {
	e.t.Helper()
	now := e.clock.Now()
	yes := true
	q := &events.Queue{Meta: events.Meta{ID: events.NewID("q"), CreatedAt: now, UpdatedAt: now, Version: 1},
		Name: name, MaximumAllowedWorkerInstances: limit, Scheduling: events.QueueScheduling{Backfill: &yes}}
	for _, m := range mods {
		m(q)
	}
	ev, err := events.New(events.TypeQueueCreated, "/rm/api", q.ID, q.ID, q)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.ob.Insert(context.Background(), e.db.Collection(QueuesCollection), q.ID, q.Version, q, ev); err != nil {
		e.t.Fatal(err)
	}
	e.byName[name] = q.ID
	return q.ID
}

// updateQueue changes queue id as PUT /queues/{id} does.
func (e *env) updateQueue(id string, f func(*events.Queue)) {
	e.t.Helper()
	coll := e.db.Collection(QueuesCollection)
	var q events.Queue
	var en outbox.Envelope
	raw, err := coll.FindOne(context.Background(), bson.D{{Key: "_id", Value: id}}).Raw()
	if err != nil {
		e.t.Fatal(err)
	}
	_ = bson.Unmarshal(raw, &q)
	_ = bson.Unmarshal(raw, &en)
	prev := q.Version
	f(&q)
	q.Version++
	ev, err := events.New(events.TypeQueueUpdated, "/rm/api", q.ID, q.ID, &q)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.ob.Replace(context.Background(), coll, id, prev, q.Version, en.Outbox, &q, ev); err != nil {
		e.t.Fatal(err)
	}
}

// submit stores a job as POST /jobs does and returns its id.
func (e *env) submit(queueID string, workers int, mods ...func(*events.Job)) string {
	e.t.Helper()
	now := e.clock.Now()
	j := &events.Job{Meta: events.Meta{ID: events.NewID("job"), CreatedAt: now, UpdatedAt: now, Version: 1},
		QueueID: queueID, QueueName: e.nameOf(queueID), WorkerInstances: workers, Status: events.JobSubmitted,
		Conditions: []events.Condition{}, Warnings: []string{}, Instances: []events.Instance{}, SubmittedAt: now,
		Runtime: events.RuntimeSpec{Image: "sim:1"}}
	for _, m := range mods {
		m(j)
	}
	ev, err := events.New(events.TypeJobSubmitted, "/rm/api", j.QueueID, j.ID, j)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.ob.Insert(context.Background(), e.db.Collection(JobsCollection), j.ID, j.Version, j, ev); err != nil {
		e.t.Fatal(err)
	}
	return j.ID
}

func (e *env) nameOf(id string) string {
	for n, i := range e.byName {
		if i == id {
			return n
		}
	}
	return id
}

// change applies f to job id and stores it with an event of type typ,
// conditioned on the version read, retrying lost races, as the API and the
// launcher do. f returns false to refuse the change, which fails the test.
func (e *env) change(id, typ string, f func(*events.Job) bool) {
	e.t.Helper()
	if err := e.tryChange(id, typ, f); err != nil {
		e.t.Fatal(err)
	}
}

var errRefused = errors.New("change refused")

func (e *env) tryChange(id, typ string, f func(*events.Job) bool) error {
	coll := e.db.Collection(JobsCollection)
	for {
		raw, err := coll.FindOne(context.Background(), bson.D{{Key: "_id", Value: id}}).Raw()
		if err != nil {
			return err
		}
		var j events.Job
		var en outbox.Envelope
		_ = bson.Unmarshal(raw, &j)
		_ = bson.Unmarshal(raw, &en)
		if !f(&j) {
			return errRefused
		}
		prev := j.Version
		j.Version++
		j.UpdatedAt = e.clock.Now()
		ev, err := events.New(typ, "/rm/test", j.QueueID, j.ID, &j)
		if err != nil {
			return err
		}
		err = e.ob.Replace(context.Background(), coll, id, prev, j.Version, en.Outbox, &j, ev)
		if errors.Is(err, outbox.ErrVersionConflict) {
			continue
		}
		return err
	}
}

// finish reports job id final, as the launcher does.
func (e *env) finish(id, status string) {
	e.t.Helper()
	e.change(id, events.Type(events.KindJob, status), func(j *events.Job) bool {
		if j.Status != events.JobAdmitted && j.Status != events.JobRunning {
			e.t.Errorf("finish %s: job is %s", id, j.Status)
			return false
		}
		now := e.clock.Now()
		j.Status, j.FinishedAt = status, &now
		return true
	})
}

func (e *env) job(id string) events.Job {
	e.t.Helper()
	var j events.Job
	if err := e.db.Collection(JobsCollection).FindOne(context.Background(), bson.D{{Key: "_id", Value: id}}).Decode(&j); err != nil {
		e.t.Fatalf("job %s: %v", id, err)
	}
	return j
}

// waitStatus waits until job id has status and returns it.
func (e *env) waitStatus(id, status string) events.Job {
	e.t.Helper()
	var j events.Job
	e.eventually("job "+id+" "+status, func() bool { j = e.job(id); return j.Status == status })
	return j
}

func (e *env) ledger() lease.Ledger {
	e.t.Helper()
	l, err := lease.New(e.db).Load(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

// jobEvents returns the types of the events of job id, in order.
func (e *env) jobEvents(id string) []string {
	e.t.Helper()
	var out []string
	for _, ev := range eventstest.ReadAll(e.t, e.js, events.FilterSubject(events.KindJob, "", id)) {
		out = append(out, ev.Type)
	}
	return out
}

func admittedCond(j events.Job) events.Condition {
	for _, c := range j.Conditions {
		if c.Type == condAdmitted {
			return c
		}
	}
	return events.Condition{}
}

func ptr[T any](v T) *T { return &v }

// ensureIDIndexes gives the collections the _id index the all-in-one gives
// them (see ferretembed.EnsureIDIndex): without it FerretDB scans a
// collection for every update by _id.
func ensureIDIndexes(t *testing.T, srv *ferretembed.Server) {
	t.Helper()
	for _, c := range []string{JobsCollection, QueuesCollection, LeasesCollection} {
		if err := srv.EnsureIDIndex(context.Background(), "rm", c); err != nil {
			t.Fatal(err)
		}
	}
}
