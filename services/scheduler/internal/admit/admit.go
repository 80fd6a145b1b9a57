// Package admit owns admission decisions: given the capacity picture of every queue
// and the requests that wait for capacity, it says which of them are admitted and,
// for the others, why not.
//
// It is the pure core of the scheduler (in the manner of Nomad's Scheduler.Process
// and Kueue's scheduler): it imports neither NATS nor Mongo nor anything that does
// I/O, it keeps no state between calls, and time is passed in (Snapshot.Now), so the
// same input always yields the same decisions. The service turns decisions into
// leases and events; Ledger keeps the allocated counts that feed the next Snapshot.
package admit

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Queue is the capacity picture of one queue at decision time.
type Queue struct {
	// Name is the human name used in messages, e.g. "Default". If empty, the
	// queue id is used.
	Name string
	// Limit is maximum_allowed_worker_instances. Nil means unlimited; 0 admits
	// nothing that needs this queue.
	Limit *int
	// Allocated is the number of instances held by live leases now. It may exceed
	// Limit when the limit was lowered under running jobs; nothing new is then
	// admitted on the queue until enough is released.
	Allocated int
	// Replicas is how many of Allocated deployments' replicas hold, for the
	// messages: a queue taken by replicas says so.
	Replicas int
	// Backfill lets a request that fits go before an earlier one on this queue that
	// does not. Without it the queue admits strictly in order.
	Backfill bool
	// Starvation, if positive, bounds backfill: a request pending longer than this
	// that still does not fit pauses backfill on every queue it claims until it is
	// admitted. Zero means no guard.
	Starvation time.Duration
}

// Snapshot is everything Admit needs to know about the world.
type Snapshot struct {
	Queues map[string]Queue // by queue id
	Now    time.Time
	// NoMessages leaves every Decision's Message empty; the decisions are
	// otherwise the same. For a caller that shows none and decides the same
	// requests many times: the scheduler's start estimates, which simulate
	// the queues forward and spent more time formatting messages than
	// deciding.
	NoMessages bool
}

// Claim asks for Count instances on the queue with id Queue.
type Claim struct {
	Queue string
	Count int
}

// Kind says what a request is for. It picks the wording of messages and which
// capacity a claim stands for.
type Kind string

const (
	// KindJob claims its workers first and its simulation controller second. The
	// zero Kind means KindJob.
	KindJob Kind = "job"
	// KindPostController claims one post controller instance.
	KindPostController Kind = "post-controller"
	// KindReplica claims one instance of a deployment on the deployment's queue;
	// it counts against the queue's worker limit like a worker does.
	KindReplica Kind = "replica"
)

// Request is one thing waiting for capacity.
type Request struct {
	// ID identifies the request and the lease it will hold: a job id, a job id
	// plus "/post-controller", or a deployment replica id. IDs must be unique
	// within one call; Ledger.Grant refuses a second lease for the same ID.
	ID   string
	Kind Kind
	// Claims are granted all together or not at all. For a job: {its queue,
	// worker_instances}, then {simulation-controller-queue, 1}. Two claims on the
	// same queue are added up. A claim with Count 0 needs nothing.
	Claims []Claim
	// Requests are considered by Priority (higher first), then SubmittedAt
	// (older first, by wall clock: a monotonic reading is ignored, as it is lost
	// in storage anyway), then ID.
	Priority    int
	SubmittedAt time.Time
	// PendingSince is when the request first became pending; the starvation
	// guard measures from it. If zero, SubmittedAt is used.
	PendingSince time.Time
}

// Decision is the outcome for one request.
type Decision struct {
	ID    string
	Admit bool
	// Grants, when admitted, are exactly the request's claims.
	Grants []Claim
	// Reason, when not admitted, is a Kubernetes-style condition reason (one of the
	// Reason constants); Message says the same for a person, with the numbers.
	Reason  string
	Message string
}

// Condition reasons of a request that is not admitted.
const (
	// The request's workers (or replica) do not fit in what its queue has free.
	ReasonInsufficientWorkerCapacity = "InsufficientWorkerCapacity"
	// A controller (or any claim after a job's first) does not fit.
	ReasonInsufficientControllerCapacity = "InsufficientControllerCapacity"
	// The request needs more than the queue's limit can ever give; it waits for
	// the limit to be raised and blocks nothing meanwhile.
	ReasonExceedsQueueLimit = "ExceedsQueueLimit"
	// A queue without backfill admits strictly in order and an earlier request on
	// it is still pending.
	ReasonBlockedByEarlierJob = "BlockedByEarlierJob"
	// An earlier request past a queue's starvation limit has paused backfill.
	ReasonBlockedByStarvingJob = "BlockedByStarvingJob"
	// A claim names a queue the snapshot does not have.
	ReasonQueueNotFound = "QueueNotFound"
	// A claim has a negative count.
	ReasonInvalidClaim = "InvalidClaim"
)

// Admit decides, for every pending request, whether it is admitted now. It returns
// one Decision per request, in the order of pending, and modifies neither argument.
//
// Requests are considered by Priority, then SubmittedAt, then ID. A request is
// admitted only if every claim fits at once in what its queue has free, counting
// what earlier requests in this call were granted. A request that is pending for
// capacity (or is itself blocked) holds back the later requests on its queues when
// a queue has no backfill, and on all its queues when it has waited past one of
// their starvation limits. A queue with no limit is never held back: nothing can
// be starved of capacity it has without bound. Requests that can never run as they
// stand (unknown queue, over the limit) hold back nothing.
//
// The cost is one sort plus a constant amount of work per claim.
func Admit(snap Snapshot, pending []Request) []Decision {
	var ad Admitter
	return ad.Admit(snap, pending)
}

// An Admitter decides as Admit does, but keeps its working memory from one
// call to the next: for a caller that decides again and again, as the
// scheduler's start estimates do at every step of their simulation (they
// allocated a third of the all-in-one's memory in the 1,000-job load,
// docs/benchmarks.md). The decisions a call returns are valid until the
// next call. The zero value is ready to use; an Admitter is not safe for
// concurrent use.
type Admitter struct {
	decisions []Decision
	needs     []need
	keys      []key
	queues    map[string]*queueState
}

// Admit is the package's Admit, on the Admitter's memory.
func (ad *Admitter) Admit(snap Snapshot, pending []Request) []Decision {
	decisions := grow(ad.decisions, len(pending))[:len(pending)]
	if ad.queues == nil {
		ad.queues = make(map[string]*queueState, min(len(snap.Queues), len(pending)+1))
	}
	clear(ad.queues)
	a := admission{snap: snap, queues: ad.queues, needs: grow(ad.needs, 2*len(pending))}
	// First pass, in input order so that memory is read front to back: resolve
	// every request's claims into what it needs of each queue, and settle at once
	// the requests that can never run as they stand. Their outcome does not depend
	// on order, and they take no part in it.
	keys := grow(ad.keys, len(pending))
	for i := range pending {
		r := &pending[i]
		start := len(a.needs)
		if d, settled := a.resolve(r); settled {
			decisions[i] = d
			a.needs = a.needs[:start]
			continue
		}
		sub := r.SubmittedAt
		keys = append(keys, key{
			priority: r.Priority, sec: sub.Unix(), nsec: int32(sub.Nanosecond()),
			id: r.ID, i: int32(i), start: int32(start), end: int32(len(a.needs)),
		})
	}
	slices.SortFunc(keys, compareKeys)
	// Second pass, in that order: admit what fits and is not held back.
	for _, k := range keys {
		decisions[k.i] = a.decide(&pending[k.i], a.needs[k.start:k.end])
	}
	ad.decisions, ad.needs, ad.keys = decisions, a.needs, keys
	return decisions
}

// grow returns s emptied, with room for n elements.
func grow[S ~[]E, E any](s S, n int) S {
	return slices.Grow(s[:0], n)
}

// key is what orders a request, plus where to find it. Submission time is kept as
// wall-clock seconds and nanoseconds, not a time.Time, so that keys stay small
// and cheap to compare when sorting 100k of them.
type key struct {
	priority   int
	sec        int64
	nsec       int32
	i          int32 // index in pending
	id         string
	start, end int32 // the request's needs in admission.needs
}

// compareKeys orders by priority (higher first), submission (older first), ID,
// then input order, so the result is deterministic even for duplicate IDs.
func compareKeys(a, b key) int {
	if c := cmp.Compare(b.priority, a.priority); c != 0 {
		return c
	}
	if c := cmp.Compare(a.sec, b.sec); c != 0 {
		return c
	}
	if c := cmp.Compare(a.nsec, b.nsec); c != 0 {
		return c
	}
	if c := cmp.Compare(a.id, b.id); c != 0 {
		return c
	}
	return cmp.Compare(a.i, b.i)
}

// queueState is what one call knows about a queue while it decides.
type queueState struct {
	name       string
	limited    bool
	limit      int
	free       int // limit - allocated - granted in this call; may be negative
	replicas   int // of what is in use, the instances replicas hold (granted in this call too)
	backfill   bool
	starvation time.Duration
	// blockReason and blockMessage, once set, hold back every later request
	// claiming this queue. The message is built once, when the queue is blocked.
	blockReason  string
	blockMessage string
}

func (q *queueState) inUse() int { return q.limit - q.free }

// byReplicas says how much of what is in use deployments' replicas hold,
// when they hold any: " (3 by deployments' replicas)".
func (q *queueState) byReplicas() string {
	if q.replicas <= 0 {
		return ""
	}
	return fmt.Sprintf(" (%d by deployments' replicas)", q.replicas)
}

// need is the total a request asks of one queue.
type need struct {
	q     *queueState
	count int
	role  role // of the first claim naming the queue
}

type admission struct {
	snap   Snapshot
	queues map[string]*queueState // by id; filled on first use
	needs  []need                 // of every request still in play, by key.start and key.end
}

// queue returns the state of queue id, or nil if the snapshot has no such queue.
// Only queues that some request claims are ever looked at.
func (a *admission) queue(id string) *queueState {
	if s, ok := a.queues[id]; ok {
		return s
	}
	q, ok := a.snap.Queues[id]
	if !ok {
		return nil
	}
	s := &queueState{
		name:       cmp.Or(q.Name, id),
		backfill:   q.Backfill,
		starvation: q.Starvation,
	}
	if q.Limit != nil {
		s.limited = true
		s.limit = *q.Limit
		s.free = *q.Limit - q.Allocated
		s.replicas = q.Replicas
	}
	a.queues[id] = s
	return s
}

// resolve appends to a.needs what r needs of each queue, two claims on one queue
// added up so that they must fit together. If r can never run as it stands (a
// negative count, an unknown queue, more than a limit allows) it returns the
// decision and settled; such a request holds nothing back.
func (a *admission) resolve(r *Request) (d Decision, settled bool) {
	start := len(a.needs)
	for ci, c := range r.Claims {
		if c.Count < 0 {
			return Decision{ID: r.ID, Reason: ReasonInvalidClaim,
				Message: a.sayf("%s claims %d instances on queue %q; a count cannot be negative", noun(r.Kind), c.Count, c.Queue),
			}, true
		}
		q := a.queue(c.Queue)
		if q == nil {
			return Decision{ID: r.ID, Reason: ReasonQueueNotFound,
				Message: a.sayf("queue %q does not exist", c.Queue),
			}, true
		}
		if c.Count > 0 {
			a.addNeed(start, q, c.Count, roleOf(r.Kind, ci))
		}
	}
	for _, n := range a.needs[start:] {
		if n.q.limited && n.count > n.q.limit {
			return Decision{ID: r.ID, Reason: ReasonExceedsQueueLimit,
				Message: a.sayf("%s needs %d %s but queue %s allows at most %d",
					noun(r.Kind), n.count, n.role.instances(n.count), n.q.name, n.q.limit),
			}, true
		}
	}
	return Decision{}, false
}

// addNeed adds count to what the request whose needs begin at start needs of q.
func (a *admission) addNeed(start int, q *queueState, count int, r role) {
	for i := start; i < len(a.needs); i++ {
		if a.needs[i].q == q {
			a.needs[i].count += count
			return
		}
	}
	a.needs = append(a.needs, need{q: q, count: count, role: r})
}

// decide admits r if everything it needs fits and no queue it claims is held back.
func (a *admission) decide(r *Request, needs []need) Decision {
	d := Decision{ID: r.ID}
	// Capacity before blocking: if the request does not fit, that is the reason a
	// person can act on, whatever else holds it back.
	for _, n := range needs {
		if n.q.limited && n.count > n.q.free {
			d.Reason = n.role.insufficientReason()
			if !a.snap.NoMessages { // not through sayf: its arguments alone allocate
				d.Message = fmt.Sprintf("queue %s allows %d %s, %d in use%s, %s needs %d",
					n.q.name, n.q.limit, n.role.instances(n.q.limit), n.q.inUse(), n.q.byReplicas(), noun(r.Kind), n.count)
			}
			break
		}
	}
	if d.Reason == "" {
		for _, n := range needs {
			if n.q.blockReason != "" {
				d.Reason, d.Message = n.q.blockReason, n.q.blockMessage
				break
			}
		}
	}
	if d.Reason != "" {
		if guard := a.holdBack(r, needs); guard != "" && d.Reason != ReasonBlockedByEarlierJob && d.Reason != ReasonBlockedByStarvingJob {
			d.Message += "; " + guard
		}
		return d
	}
	for _, n := range needs {
		if n.q.limited {
			n.q.free -= n.count
			if r.Kind == KindReplica {
				n.q.replicas += n.count
			}
		}
	}
	d.Admit = true
	d.Grants = slices.Clone(r.Claims)
	return d
}

// holdBack blocks the queues on which later requests must not overtake r, which
// was not admitted although it could run once capacity frees: every limited
// queue without backfill that r claims, and, if r has waited past the starvation
// limit of any queue it claims, every limited queue it claims. The first request
// to block a queue is the one named in the messages: the earliest in order, which
// the queue waits for first.
//
// If the starvation guard now pauses backfill on some queue for r, holdBack
// returns the sentence that says so, for r's own message (it begins with
// StarvationGuardNote); else "".
func (a *admission) holdBack(r *Request, needs []need) (guard string) {
	since := r.PendingSince
	if since.IsZero() {
		since = r.SubmittedAt
	}
	waited := a.snap.Now.Sub(since)
	var starvedOn *queueState // the first claimed queue whose limit r has passed
	var paused []string       // queues whose backfill r now pauses
	for _, n := range needs {
		if n.q.starvation > 0 && waited > n.q.starvation {
			starvedOn = n.q
			break
		}
	}
	for _, n := range needs {
		q := n.q
		if !q.limited || q.blockReason != "" {
			continue
		}
		switch {
		case !q.backfill:
			q.blockReason = ReasonBlockedByEarlierJob
			q.blockMessage = a.sayf("queue %s admits strictly in order: %s %s is ahead and still pending",
				q.name, noun(r.Kind), r.ID)
		case starvedOn != nil:
			q.blockReason = ReasonBlockedByStarvingJob
			q.blockMessage = a.sayf("queue %s: %s %s has waited %s (limit %s); backfill paused until it is admitted",
				q.name, noun(r.Kind), r.ID, waited.Round(time.Second), starvedOn.starvation)
			paused = append(paused, q.name)
		}
	}
	if len(paused) == 0 {
		return ""
	}
	return a.sayf("%s on queue %s: waited %s, past the starvation limit of %s; later requests wait until this one is admitted",
		StarvationGuardNote, strings.Join(paused, ", "), waited.Round(time.Second), starvedOn.starvation)
}

// sayf formats a message, unless the snapshot asks for none.
func (a *admission) sayf(format string, args ...any) string {
	if a.snap.NoMessages {
		return ""
	}
	return fmt.Sprintf(format, args...)
}

// StarvationGuardNote begins the sentence added to the message of a request
// for which the starvation guard pauses backfill. The service looks for it
// to write such a message at once rather than at its next refresh.
const StarvationGuardNote = "starvation guard: backfill paused for it"

// role is the kind of capacity a claim stands for; it picks the reason and wording
// of a capacity message.
type role int

const (
	roleWorker role = iota
	roleController
)

// roleOf says that a job's first claim is its workers and any other its
// controller, that a replica is a worker-like instance (it counts against the
// worker limit of its queue), and that a post controller is a controller.
func roleOf(k Kind, claim int) role {
	switch {
	case k == KindPostController:
		return roleController
	case k == KindReplica, claim == 0:
		return roleWorker
	default:
		return roleController
	}
}

func (r role) insufficientReason() string {
	if r == roleWorker {
		return ReasonInsufficientWorkerCapacity
	}
	return ReasonInsufficientControllerCapacity
}

// instances is the plural-aware unit of n, e.g. "worker instances", "instance".
func (r role) instances(n int) string {
	switch {
	case r == roleWorker && n == 1:
		return "worker instance"
	case r == roleWorker:
		return "worker instances"
	case n == 1:
		return "instance"
	default:
		return "instances"
	}
}

// noun is how messages name a request of kind k.
func noun(k Kind) string {
	if k == "" {
		return string(KindJob)
	}
	return string(k)
}
