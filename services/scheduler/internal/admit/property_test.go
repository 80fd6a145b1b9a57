package admit

import (
	"fmt"
	"github.com/avxrm/rm/services/scheduler/internal/lease"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestAdmitProperties drives Admit and a Ledger the way the scheduler does, through
// thousands of random but seeded sequences of submissions, finishes, cancels,
// cleanups, limit changes and clock advances, and checks after every step the
// invariants the product promises: capacity is never exceeded by a grant, nothing
// is admitted twice, every lease is released exactly once, the ledger agrees with
// the live grants, strict queues admit in order, a starving request is never
// overtaken on its queues, and every pending request has a true reason.
func TestAdmitProperties(t *testing.T) {
	const steps = 40
	sequences := 2000
	if testing.Short() {
		sequences = 200
	}
	seen := map[string]int{} // reasons, to show the sequences reach every rule
	for seed := range uint64(sequences) {
		s := newSim(seed)
		for i := range steps {
			what := s.step()
			if err := s.admitAndCheck(seen); err != nil {
				t.Fatalf("seed %d, step %d (%s): %v", seed, i, what, err)
			}
		}
		if err := s.finishAll(); err != nil {
			t.Fatalf("seed %d, finishing: %v", seed, err)
		}
	}
	t.Logf("decisions by reason: %v", seen)
	for _, r := range []string{"admitted", ReasonInsufficientWorkerCapacity, ReasonInsufficientControllerCapacity,
		ReasonExceedsQueueLimit, ReasonBlockedByEarlierJob, ReasonBlockedByStarvingJob} {
		if seen[r] < 100 {
			t.Errorf("only %d decisions with %s: the sequences do not exercise that rule", seen[r], r)
		}
	}
}

var workerQueues = []string{"q0", "q1", "q2", "q3"}

type simState int

const (
	simPending simState = iota
	simAdmitted
	simDone
)

type simRequest struct {
	req      Request
	state    simState
	admitted bool // ever
	released int  // successful Release calls
}

// sim is the scheduler around Admit, reduced to its bookkeeping.
type sim struct {
	rng      *rand.Rand
	now      time.Time
	queues   map[string]Queue // Allocated is filled from the ledger at each Admit
	requests []*simRequest    // in submission order, for reproducible picks
	byID     map[string]*simRequest
	ledger   testLedger
	next     int
	ad       Admitter // reused for the whole sequence: it must decide as Admit does
}

func newSim(seed uint64) *sim {
	s := &sim{
		rng:    rand.New(rand.NewPCG(seed, 0x5eed)),
		now:    t0,
		queues: map[string]Queue{},
		byID:   map[string]*simRequest{},
	}
	for _, id := range append(slices.Clone(workerQueues), controllerQueue, postControllerQueue) {
		s.queues[id] = Queue{
			Name:       id,
			Limit:      s.randomLimit(),
			Backfill:   s.rng.IntN(4) != 0,
			Starvation: []time.Duration{0, 0, 10 * time.Minute, 30 * time.Minute}[s.rng.IntN(4)],
		}
	}
	return s
}

// randomLimit is small, so that queues are often full, and sometimes nil or 0.
func (s *sim) randomLimit() *int {
	switch n := s.rng.IntN(20); {
	case n < 2:
		return nil
	case n < 3:
		return ptr(0)
	default:
		return ptr(s.rng.IntN(10) + 3)
	}
}

// step applies one random event and says what it was.
func (s *sim) step() string {
	switch p := s.rng.IntN(100); {
	case p < 35:
		return s.submit()
	case p < 50:
		return s.finish()
	case p < 60:
		return s.cancel()
	case p < 70:
		return s.cleanup()
	case p < 80:
		return s.changeLimit()
	default:
		d := time.Duration(s.rng.IntN(15)+1) * time.Minute
		s.now = s.now.Add(d)
		return "advance " + d.String()
	}
}

func (s *sim) submit() string {
	s.next++
	r := Request{
		ID:          fmt.Sprintf("r%03d", s.next),
		Priority:    s.rng.IntN(3),
		SubmittedAt: s.now, // often equal: ties fall to the ID
	}
	if s.rng.IntN(2) == 0 {
		r.PendingSince = s.now.Add(time.Duration(s.rng.IntN(10)) * time.Minute)
	}
	q := workerQueues[s.rng.IntN(len(workerQueues))]
	switch p := s.rng.IntN(10); {
	case p < 6:
		r.Kind = KindJob
		r.Claims = []Claim{{q, s.rng.IntN(6) + 1}, {controllerQueue, 1}}
	case p < 7: // a job that also claims a second worker queue
		r.Kind = KindJob
		r.Claims = []Claim{{q, s.rng.IntN(4) + 1}, {controllerQueue, 1},
			{workerQueues[s.rng.IntN(len(workerQueues))], s.rng.IntN(3) + 1}}
	case p < 9:
		r.Kind = KindReplica
		r.Claims = []Claim{{q, 1}}
	default:
		r.Kind = KindPostController
		r.ID += "/post-controller"
		r.Claims = []Claim{{postControllerQueue, 1}}
	}
	sr := &simRequest{req: r}
	s.requests = append(s.requests, sr)
	s.byID[r.ID] = sr
	return "submit " + r.ID
}

// pick returns a random request in one of states, or nil if there is none.
func (s *sim) pick(states ...simState) *simRequest {
	var in []*simRequest
	for _, r := range s.requests {
		if slices.Contains(states, r.state) {
			in = append(in, r)
		}
	}
	if len(in) == 0 {
		return nil
	}
	return in[s.rng.IntN(len(in))]
}

// release ends r, releasing its lease if it holds one, and checks that the ledger
// agrees on whether there was one.
func (s *sim) release(r *simRequest) {
	held := r.state == simAdmitted
	if got := s.ledger.Release(r.req.ID); got != held {
		panic(fmt.Sprintf("Release(%s) = %t, want %t", r.req.ID, got, held))
	}
	if held {
		r.released++
	}
	r.state = simDone
}

func (s *sim) finish() string {
	r := s.pick(simAdmitted)
	if r == nil {
		return "finish: nothing running"
	}
	s.release(r)
	return "finish " + r.req.ID
}

// cancel releases an admitted request or drops a pending one.
func (s *sim) cancel() string {
	r := s.pick(simPending, simAdmitted)
	if r == nil {
		return "cancel: nothing to cancel"
	}
	s.release(r)
	return "cancel " + r.req.ID
}

// cleanup may hit a request in any state, and twice: the second is a no-op.
func (s *sim) cleanup() string {
	r := s.pick(simPending, simAdmitted, simDone)
	if r == nil {
		return "cleanup: nothing"
	}
	s.release(r)
	s.release(r)
	return "cleanup " + r.req.ID
}

func (s *sim) changeLimit() string {
	ids := append(slices.Clone(workerQueues), controllerQueue, postControllerQueue)
	id := ids[s.rng.IntN(len(ids))]
	q := s.queues[id]
	switch p := s.rng.IntN(10); {
	case p == 0:
		q.Limit = nil
	case p == 1:
		q.Limit = ptr(0)
	case q.Limit == nil:
		q.Limit = ptr(s.rng.IntN(10) + 1)
	default:
		q.Limit = ptr(max(1, *q.Limit+s.rng.IntN(9)-4)) // up or down
	}
	s.queues[id] = q
	if q.Limit == nil {
		return "limit " + id + " unlimited"
	}
	return fmt.Sprintf("limit %s %d", id, *q.Limit)
}

// admitAndCheck runs Admit over every pending request, grants what it admits and
// checks the invariants.
func (s *sim) admitAndCheck(seen map[string]int) error {
	snap := Snapshot{Now: s.now, Queues: make(map[string]Queue, len(s.queues))}
	before := map[string]int{}
	for id, q := range s.queues {
		q.Allocated = s.ledger.Allocated(id)
		before[id] = q.Allocated
		snap.Queues[id] = q
	}
	var pending []Request
	for _, r := range s.requests {
		if r.state == simPending {
			pending = append(pending, r.req)
		}
	}
	s.rng.Shuffle(len(pending), func(i, j int) { pending[i], pending[j] = pending[j], pending[i] })
	pendingCopy := copyRequests(pending)

	ds := Admit(snap, pending)

	if !slices.EqualFunc(pending, pendingCopy, sameRequest) {
		return fmt.Errorf("Admit modified its input")
	}
	if len(ds) != len(pending) {
		return fmt.Errorf("%d decisions for %d requests", len(ds), len(pending))
	}
	reversed := slices.Clone(pending)
	slices.Reverse(reversed)
	again := Admit(snap, reversed)
	quiet := snap
	quiet.NoMessages = true
	for i, d := range Admit(quiet, pending) {
		want := ds[i]
		want.Message = ""
		if !sameDecision(d, want) || d.Message != "" {
			return fmt.Errorf("without messages, the decision for %s is %+v; want %+v", d.ID, d, want)
		}
	}
	// The reused Admitter, after calls of other sizes and orders (its
	// memory still holds them), decides as a fresh call does.
	s.ad.Admit(quiet, reversed)
	reused := s.ad.Admit(snap, pending)
	if len(reused) != len(ds) {
		return fmt.Errorf("a reused Admitter made %d decisions for %d requests", len(reused), len(ds))
	}
	for i, d := range reused {
		if !sameDecision(d, ds[i]) {
			return fmt.Errorf("a reused Admitter decided %+v for %s; a fresh call %+v", d, d.ID, ds[i])
		}
	}
	for i, d := range ds {
		r := pending[i]
		if d.ID != r.ID {
			return fmt.Errorf("decision %d is for %s, want %s: not in input order", i, d.ID, r.ID)
		}
		if e := again[len(ds)-1-i]; !sameDecision(d, e) {
			return fmt.Errorf("decision for %s depends on input order: %+v vs %+v", r.ID, d, e)
		}
		sr := s.byID[r.ID]
		if !d.Admit {
			if d.Reason == "" || d.Message == "" || d.Grants != nil {
				return fmt.Errorf("%s not admitted without reason and message: %+v", r.ID, d)
			}
			seen[d.Reason]++
			continue
		}
		seen["admitted"]++
		if d.Reason != "" || !slices.Equal(d.Grants, r.Claims) {
			return fmt.Errorf("%s admitted with grants %v, reason %q; want exactly its claims %v", r.ID, d.Grants, d.Reason, r.Claims)
		}
		if sr.admitted {
			return fmt.Errorf("%s admitted twice", r.ID)
		}
		if err := s.ledger.Grant(d.ID, d.Grants); err != nil {
			return err
		}
		sr.state, sr.admitted = simAdmitted, true
	}

	if err := s.checkCapacity(before); err != nil {
		return err
	}
	if err := s.checkLedger(); err != nil {
		return err
	}
	return checkOrder(snap, pending, ds, func(q string) int { return s.ledger.Allocated(q) })
}

// checkCapacity: a queue may be over its limit only if it already was before the
// step (the limit was lowered under running leases) and nothing was added since.
func (s *sim) checkCapacity(before map[string]int) error {
	for id, q := range s.queues {
		if q.Limit == nil {
			continue
		}
		after := s.ledger.Allocated(id)
		if after > *q.Limit && (before[id] <= *q.Limit || after > before[id]) {
			return fmt.Errorf("queue %s: allocated %d → %d with limit %d", id, before[id], after, *q.Limit)
		}
	}
	return nil
}

// checkLedger: the ledger holds exactly the live grants, and every request that
// ended after being admitted was released exactly once.
func (s *sim) checkLedger() error {
	want := map[string]int{}
	var live []string
	for _, r := range s.requests {
		switch {
		case r.state == simAdmitted:
			live = append(live, r.req.ID)
			for _, c := range r.req.Claims {
				want[c.Queue] += c.Count
			}
			if r.released != 0 {
				return fmt.Errorf("%s is live but was released %d times", r.req.ID, r.released)
			}
		case r.state == simDone && r.admitted && r.released != 1:
			return fmt.Errorf("%s ended after admission and was released %d times", r.req.ID, r.released)
		case r.state != simAdmitted && s.ledger.Holds(r.req.ID):
			return fmt.Errorf("%s holds a lease in state %d", r.req.ID, r.state)
		}
	}
	for id := range s.queues {
		if got := s.ledger.Allocated(id); got != want[id] {
			return fmt.Errorf("ledger: queue %s allocated %d, live grants sum to %d", id, got, want[id])
		}
	}
	slices.Sort(live)
	if got := s.ledger.Leases(); !slices.Equal(got, live) {
		return fmt.Errorf("ledger leases %v, live requests %v", got, live)
	}
	return nil
}

// finishAll ends every request, as a cleanup of everything would, and checks that
// nothing is left allocated.
func (s *sim) finishAll() error {
	for _, r := range s.requests {
		if r.state != simDone {
			s.release(r)
		}
	}
	if err := s.checkLedger(); err != nil {
		return err
	}
	if l := s.ledger.Leases(); len(l) != 0 {
		return fmt.Errorf("leases left after everything ended: %v", l)
	}
	return nil
}

// checkOrder checks the ordering rules of one Admit call against its outcome,
// walking the requests in the documented order (priority, submission, ID):
//   - a request that could run (not over a limit) and was not admitted holds back
//     later requests on every limited queue it claims without backfill, and, if it
//     has waited past the starvation limit of a queue it claims, on every limited
//     queue it claims: none of them is admitted there;
//   - a request pending for capacity really does not fit in what is left after
//     the call; one over the limit really is over it; one blocked is really held
//     back, and its message names the request that holds it.
//
// Unlimited queues are left out: nobody can be starved of what has no bound, and
// Admit deliberately never holds them back.
func checkOrder(snap Snapshot, pending []Request, ds []Decision, allocated func(string) int) error {
	idx := make([]int, len(pending))
	for i := range idx {
		idx[i] = i
	}
	// Written out here rather than borrowed from the package, so that a wrong
	// order in Admit cannot hide behind the same mistake.
	slices.SortStableFunc(idx, func(a, b int) int {
		ra, rb := pending[a], pending[b]
		switch {
		case ra.Priority != rb.Priority:
			return rb.Priority - ra.Priority
		case !ra.SubmittedAt.Equal(rb.SubmittedAt):
			return ra.SubmittedAt.Compare(rb.SubmittedAt)
		default:
			return strings.Compare(ra.ID, rb.ID)
		}
	})
	type held struct{ by, reason string }
	blocked := map[string]held{} // limited queue → first request holding it back
	for _, i := range idx {
		r, d := pending[i], ds[i]
		need := map[string]int{}
		var queues []string // claimed, in claim order
		for _, c := range r.Claims {
			if c.Count > 0 {
				if _, dup := need[c.Queue]; !dup {
					queues = append(queues, c.Queue)
				}
				need[c.Queue] += c.Count
			}
		}
		if d.Admit {
			for _, q := range queues {
				if h, ok := blocked[q]; ok {
					return fmt.Errorf("%s admitted on queue %s after %s, which holds it back (%s)", r.ID, q, h.by, h.reason)
				}
			}
			continue
		}
		switch d.Reason {
		case ReasonExceedsQueueLimit:
			over := false
			for q, n := range need {
				if l := snap.Queues[q].Limit; l != nil && n > *l {
					over = true
				}
			}
			if !over {
				return fmt.Errorf("%s: %s but it is within every limit", r.ID, d.Reason)
			}
			continue // it holds nothing back
		case ReasonInsufficientWorkerCapacity, ReasonInsufficientControllerCapacity:
			short := false
			for q, n := range need {
				if l := snap.Queues[q].Limit; l != nil && n > *l-allocated(q) {
					short = true
				}
			}
			if !short {
				return fmt.Errorf("%s: %s but it fits in what is left: %q", r.ID, d.Reason, d.Message)
			}
		case ReasonBlockedByEarlierJob, ReasonBlockedByStarvingJob:
			var h held
			for _, q := range queues {
				if b, ok := blocked[q]; ok {
					h = b
					break
				}
			}
			if h.by == "" {
				return fmt.Errorf("%s: %s but nothing holds back its queues: %q", r.ID, d.Reason, d.Message)
			}
			if h.reason != d.Reason || !strings.Contains(d.Message, " "+h.by+" ") {
				return fmt.Errorf("%s: %s %q, want %s naming %s", r.ID, d.Reason, d.Message, h.reason, h.by)
			}
		default:
			return fmt.Errorf("%s: unexpected reason %s: %q", r.ID, d.Reason, d.Message)
		}

		waited := snap.Now.Sub(cmpOr(r.PendingSince, r.SubmittedAt))
		starving := false
		for q := range need {
			if st := snap.Queues[q].Starvation; st > 0 && waited > st {
				starving = true
			}
		}
		for q := range need {
			sq := snap.Queues[q]
			if _, ok := blocked[q]; ok || sq.Limit == nil {
				continue
			}
			switch {
			case !sq.Backfill:
				blocked[q] = held{r.ID, ReasonBlockedByEarlierJob}
			case starving:
				blocked[q] = held{r.ID, ReasonBlockedByStarvingJob}
			}
		}
	}
	return nil
}

func cmpOr(t, otherwise time.Time) time.Time {
	if t.IsZero() {
		return otherwise
	}
	return t
}

func sameRequest(a, b Request) bool {
	return a.ID == b.ID && a.Kind == b.Kind && a.Priority == b.Priority &&
		a.SubmittedAt.Equal(b.SubmittedAt) && a.PendingSince.Equal(b.PendingSince) &&
		slices.Equal(a.Claims, b.Claims)
}

func sameDecision(a, b Decision) bool {
	return a.ID == b.ID && a.Admit == b.Admit && a.Reason == b.Reason &&
		a.Message == b.Message && slices.Equal(a.Grants, b.Grants)
}

// testLedger drives the ledger production uses (lease.Ledger, through
// Commit, as lease.Store.Apply does after its write) with the checks the
// scheduler's pass makes around it: no second grant to a holder, and a
// release reports whether there was a lease.
type testLedger struct{ l lease.Ledger }

func (t *testLedger) Grant(id string, claims []Claim) error {
	if _, held := t.l.Leases[id]; held {
		return fmt.Errorf("grant %q: lease already held", id)
	}
	cs := make([]lease.Claim, len(claims))
	for i, c := range claims {
		cs[i] = lease.Claim{Queue: c.Queue, Count: c.Count}
	}
	t.l.Commit(lease.Change{Grants: map[string][]lease.Claim{id: cs}})
	return nil
}

func (t *testLedger) Release(id string) bool {
	_, held := t.l.Leases[id]
	t.l.Commit(lease.Change{Releases: []string{id}})
	return held
}

func (t *testLedger) Allocated(queue string) int { return t.l.Allocated()[queue] }

func (t *testLedger) Holds(id string) bool { _, ok := t.l.Leases[id]; return ok }

func (t *testLedger) Leases() []string { return t.l.Holders() }
