package scheduler

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/indexed/ferretlookup"
	"github.com/avxrm/rm/services/scheduler/internal/lease"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// A snapshot read while the loop went on must not undo what the loop
// learned meanwhile, and must still show what it missed.
func TestApplyBackgroundResync(t *testing.T) {
	job := func(id, status string, v int64) *events.Job {
		return &events.Job{Meta: events.Meta{ID: id, Version: v}, Status: status, QueueID: "q"}
	}
	tm := &term{
		epoch: 3, log: slog.Default(),
		ledger:  lease.Ledger{Epoch: 3, Version: 11},
		queues:  map[string]*events.Queue{},
		retired: map[string]int64{"job-finished": 5},
		jobs: map[string]*events.Job{
			"job-unchanged": job("job-unchanged", events.JobPending, 2), // gone from MongoDB before the read
			"job-changed":   job("job-changed", events.JobAdmitted, 3),  // admitted by the loop during the read
			"job-new":       job("job-new", events.JobSubmitted, 1),     // submitted during the read
		},
	}
	tm.jobs["job-same"] = job("job-same", events.JobPending, 6)              // stored at the version known: not read
	tm.jobs["job-same-moved"] = job("job-same-moved", events.JobAdmitted, 8) // not read, admitted by the loop since
	base := &resyncBase{ledger: 10, jobs: map[string]int64{"job-unchanged": 2, "job-changed": 2, "job-finished": 4,
		"job-same": 6, "job-same-moved": 7, "job-same-left": 3}}
	snap := resyncSnapshot{
		ledger: lease.Ledger{Epoch: 3, Version: 10},
		// job-same-left: unchanged in the store, but it left the picture
		// since the read began.
		same: []string{"job-same", "job-same-moved", "job-same-left"},
		jobs: []*events.Job{
			job("job-changed", events.JobPending, 2),
			job("job-finished", events.JobRunning, 4), // final since, retired at 5
			job("job-missed", events.JobSubmitted, 1), // its event never came
		},
	}
	if err := tm.applyResync(snap, base); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"job-changed": events.JobAdmitted, "job-new": events.JobSubmitted, "job-missed": events.JobSubmitted,
		"job-same": events.JobPending, "job-same-moved": events.JobAdmitted}
	if len(tm.jobs) != len(want) {
		t.Errorf("jobs %v, want %v", keys(tm.jobs), want)
	}
	for id, status := range want {
		if j := tm.jobs[id]; j == nil || j.Status != status {
			t.Errorf("job %s = %+v, want status %s", id, j, status)
		}
	}
	if tm.retired["job-unchanged"] != 2 || tm.retired["job-finished"] != 5 {
		t.Errorf("retired %v, want job-unchanged at 2 and job-finished still at 5", tm.retired)
	}
	if tm.ledger.Version != 11 {
		t.Errorf("ledger version %d, want the loop's own 11 kept over the older read", tm.ledger.Version)
	}
	if err := tm.applyResync(resyncSnapshot{ledger: lease.Ledger{Epoch: 4}}, base); err == nil {
		t.Error("a snapshot of a newer epoch was applied; want ErrFenced")
	}
}

func keys(m map[string]*events.Job) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestResyncReadsOnlyJobsThatMoved: with the embedded store's Lookup, a
// resync of a backlog of waiting jobs that did not change reads none of
// them (it used to read every one, every ResyncInterval), and a job changed
// behind the scheduler's back (no event) is still read and taken.
func TestResyncReadsOnlyJobsThatMoved(t *testing.T) {
	e := newEnv(t)
	e.lookup = ferretlookup.New(e.srv, "rm")
	one := 1
	q := e.queue("q", &one)
	cfg := testConfig()
	cfg.ResyncInterval = 100 * time.Millisecond
	s, _ := e.start(cfg)
	const n = 150
	ids := make([]string, n)
	for i := range ids {
		ids[i] = e.submit(q, 1)
	}
	e.eventually("all but one job pending, one admitted", func() bool {
		pending, _ := e.db.Collection(JobsCollection).CountDocuments(context.Background(), bson.D{{Key: "status", Value: events.JobPending}})
		return pending == n-1
	})
	resyncs := func() float64 { return testutil.ToFloat64(s.metrics.resyncs) }
	after := resyncs() + 1 // one may have begun before the last pending write
	e.eventually("a resync after the backlog settled", func() bool { return resyncs() >= after })
	r0, read0 := resyncs(), s.active.DocsRead()
	e.eventually("three more resyncs", func() bool { return resyncs() >= r0+3 })
	r1, read1 := resyncs(), s.active.DocsRead()
	// Nothing changed: no job is read (the lease holder, named by _id, is
	// also active, so its version comes from the index too). Without the
	// versions each resync read all n.
	if read1 != read0 {
		t.Errorf("%v resyncs read %d jobs of a backlog of %d that did not change; want none", r1-r0, read1-read0, n)
	}

	// Behind the scheduler's back: a new version, no event. The next
	// resync reads it.
	var waiting string
	for _, id := range ids {
		var j events.Job
		if err := e.db.Collection(JobsCollection).FindOne(context.Background(), bson.D{{Key: "_id", Value: id}}).Decode(&j); err == nil && j.Status == events.JobPending {
			waiting = id
			break
		}
	}
	read2 := s.active.DocsRead()
	if _, err := e.db.Collection(JobsCollection).UpdateOne(context.Background(), bson.D{{Key: "_id", Value: waiting}},
		bson.D{{Key: "$inc", Value: bson.D{{Key: "version", Value: 1}}}}); err != nil {
		t.Fatal(err)
	}
	r2 := resyncs()
	e.eventually("two more resyncs", func() bool { return resyncs() >= r2+2 })
	if got := s.active.DocsRead() - read2; got != 1 {
		t.Errorf("the next resyncs read %d jobs; want 1, the job changed without an event", got)
	}
}
