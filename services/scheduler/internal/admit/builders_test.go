package admit

import "time"

// Test data builders, in the manner of Kueue's testing wrappers:
// job("j1").queue("Default").workers(8).submitted(t0).obj().

const (
	controllerQueue     = "simulation-controller-queue"
	postControllerQueue = "post-controller-queue"
)

// t0 is the fixed instant every test measures from.
var t0 = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

type requestBuilder struct {
	r     Request
	own   Claim // workers, replica or post controller
	ctl   bool
	extra []Claim
}

// job starts a job request on queue "Default" with one worker and a controller
// claim, submitted at t0.
func job(id string) *requestBuilder {
	return &requestBuilder{
		r:   Request{ID: id, Kind: KindJob, SubmittedAt: t0},
		own: Claim{Queue: "Default", Count: 1},
		ctl: true,
	}
}

// replica starts a deployment replica request: one instance on queue "Default".
func replica(id string) *requestBuilder {
	return &requestBuilder{
		r:   Request{ID: id, Kind: KindReplica, SubmittedAt: t0},
		own: Claim{Queue: "Default", Count: 1},
	}
}

// postController starts the post controller request of job jobID.
func postController(jobID string) *requestBuilder {
	return &requestBuilder{
		r:   Request{ID: jobID + "/post-controller", Kind: KindPostController, SubmittedAt: t0},
		own: Claim{Queue: postControllerQueue, Count: 1},
	}
}

func (b *requestBuilder) queue(q string) *requestBuilder { b.own.Queue = q; return b }
func (b *requestBuilder) workers(n int) *requestBuilder  { b.own.Count = n; return b }
func (b *requestBuilder) priority(p int) *requestBuilder { b.r.Priority = p; return b }

// claim adds a claim after the request's own.
func (b *requestBuilder) claim(q string, n int) *requestBuilder {
	b.extra = append(b.extra, Claim{Queue: q, Count: n})
	return b
}

func (b *requestBuilder) submitted(t time.Time) *requestBuilder { b.r.SubmittedAt = t; return b }

func (b *requestBuilder) pendingSince(t time.Time) *requestBuilder {
	b.r.PendingSince = t
	return b
}

func (b *requestBuilder) obj() Request {
	r := b.r
	r.Claims = []Claim{b.own}
	if b.ctl {
		r.Claims = append(r.Claims, Claim{Queue: controllerQueue, Count: 1})
	}
	r.Claims = append(r.Claims, b.extra...)
	return r
}

type queueBuilder struct {
	id string
	q  Queue
}

// queue starts an unlimited queue without backfill whose name is its id.
func queue(id string) *queueBuilder { return &queueBuilder{id: id, q: Queue{Name: id}} }

func (b *queueBuilder) named(n string) *queueBuilder { b.q.Name = n; return b }
func (b *queueBuilder) limit(n int) *queueBuilder    { b.q.Limit = ptr(n); return b }
func (b *queueBuilder) allocated(n int) *queueBuilder {
	b.q.Allocated = n
	return b
}
func (b *queueBuilder) backfill() *queueBuilder { b.q.Backfill = true; return b }

// replicas says how many of the allocated instances replicas hold.
func (b *queueBuilder) replicas(n int) *queueBuilder {
	b.q.Replicas = n
	return b
}
func (b *queueBuilder) starvation(d time.Duration) *queueBuilder {
	b.q.Starvation = d
	return b
}

// snapshot builds a Snapshot at now. The controller and post-controller queues are
// added, unlimited with backfill as they are created, unless given.
func snapshot(now time.Time, qs ...*queueBuilder) Snapshot {
	s := Snapshot{Now: now, Queues: map[string]Queue{
		controllerQueue:     {Name: controllerQueue, Backfill: true},
		postControllerQueue: {Name: postControllerQueue, Backfill: true},
	}}
	for _, q := range qs {
		s.Queues[q.id] = q.q
	}
	return s
}

// admitted is the Decision admitting id with grants. The grants are spelled out
// rather than copied from the request, so a test states what it expects.
func admitted(id string, grants ...Claim) Decision {
	return Decision{ID: id, Admit: true, Grants: grants}
}

// on is a Claim of n instances on queue q; ctl is a job's controller claim.
func on(q string, n int) Claim { return Claim{Queue: q, Count: n} }

var ctl = on(controllerQueue, 1)

// pending is the Decision leaving id pending.
func pending(id, reason, message string) Decision {
	return Decision{ID: id, Reason: reason, Message: message}
}
