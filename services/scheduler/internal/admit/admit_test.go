package admit

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestAdmit(t *testing.T) {
	cases := map[string]struct {
		snap    Snapshot
		pending []Request
		want    []Decision
	}{
		"no pending requests": {
			snap: snapshot(t0, queue("Default").limit(10)),
			want: []Decision{},
		},
		"worked example: a second job waits while the queue is full": {
			snap: snapshot(t0, queue("Default").limit(10)),
			pending: []Request{
				job("j1").workers(10).obj(),
				job("j2").workers(8).submitted(t0.Add(time.Second)).obj(),
			},
			want: []Decision{
				admitted("j1", on("Default", 10), ctl),
				pending("j2", ReasonInsufficientWorkerCapacity, "queue Default allows 10 worker instances, 10 in use, job needs 8"),
			},
		},
		"worked example: a smaller later job backfills around a larger one": {
			snap: snapshot(t0, queue("Default").limit(10).allocated(7).backfill()),
			pending: []Request{
				job("big").workers(4).obj(),
				job("small").workers(3).submitted(t0.Add(time.Minute)).obj(),
			},
			want: []Decision{
				pending("big", ReasonInsufficientWorkerCapacity, "queue Default allows 10 worker instances, 7 in use, job needs 4"),
				admitted("small", on("Default", 3), ctl),
			},
		},
		"the queue name, not its id, is in messages": {
			snap: snapshot(t0, queue("q-7f3a").named("Default").limit(10).allocated(10)),
			pending: []Request{
				job("j1").queue("q-7f3a").workers(8).obj(),
			},
			want: []Decision{
				pending("j1", ReasonInsufficientWorkerCapacity, "queue Default allows 10 worker instances, 10 in use, job needs 8"),
			},
		},
		"higher priority goes first although submitted later": {
			snap: snapshot(t0, queue("Default").limit(10)),
			pending: []Request{
				job("low").workers(6).obj(),
				job("high").workers(6).priority(5).submitted(t0.Add(time.Hour)).obj(),
			},
			want: []Decision{
				pending("low", ReasonInsufficientWorkerCapacity, "queue Default allows 10 worker instances, 6 in use, job needs 6"),
				admitted("high", on("Default", 6), ctl),
			},
		},
		"equal priority: the older job goes first whatever the input order": {
			snap: snapshot(t0, queue("Default").limit(10)),
			pending: []Request{
				job("a-newer").workers(6).submitted(t0.Add(2 * time.Second)).obj(),
				job("z-older").workers(6).submitted(t0.Add(time.Second)).obj(),
			},
			want: []Decision{
				pending("a-newer", ReasonInsufficientWorkerCapacity, "queue Default allows 10 worker instances, 6 in use, job needs 6"),
				admitted("z-older", on("Default", 6), ctl),
			},
		},
		"equal priority and submission time: the lower ID goes first": {
			snap: snapshot(t0, queue("Default").limit(10)),
			pending: []Request{
				job("j2").workers(6).obj(),
				job("j1").workers(6).obj(),
			},
			want: []Decision{
				pending("j2", ReasonInsufficientWorkerCapacity, "queue Default allows 10 worker instances, 6 in use, job needs 6"),
				admitted("j1", on("Default", 6), ctl),
			},
		},
		"controller queue full": {
			snap: snapshot(t0,
				queue("Default").limit(10),
				queue(controllerQueue).limit(2).allocated(2).backfill()),
			pending: []Request{
				job("j1").workers(1).obj(),
			},
			want: []Decision{
				pending("j1", ReasonInsufficientControllerCapacity, "queue simulation-controller-queue allows 2 instances, 2 in use, job needs 1"),
			},
		},
		"controller queue full: the job's workers are not taken": {
			// j2 fits on Default but not on the controller queue; the replica
			// can only be admitted if j2 left Default's capacity alone.
			snap: snapshot(t0,
				queue("Default").limit(10).backfill(),
				queue(controllerQueue).limit(1).backfill()),
			pending: []Request{
				job("j1").workers(8).obj(),
				job("j2").workers(2).submitted(t0.Add(time.Second)).obj(),
				replica("r1").workers(2).submitted(t0.Add(2 * time.Second)).obj(),
			},
			want: []Decision{
				admitted("j1", on("Default", 8), ctl),
				pending("j2", ReasonInsufficientControllerCapacity, "queue simulation-controller-queue allows 1 instance, 1 in use, job needs 1"),
				admitted("r1", on("Default", 2)),
			},
		},
		"both queues fit: both claims granted together": {
			snap: snapshot(t0,
				queue("Default").limit(10).allocated(2),
				queue(controllerQueue).limit(3).allocated(2).backfill()),
			pending: []Request{
				job("j1").workers(8).obj(),
			},
			want: []Decision{
				admitted("j1", on("Default", 8), ctl),
			},
		},
		"nil limit is unlimited": {
			snap: snapshot(t0, queue("Default").allocated(100_000)),
			pending: []Request{
				job("j1").workers(50_000).obj(),
				job("j2").workers(50_000).submitted(t0.Add(time.Second)).obj(),
			},
			want: []Decision{
				admitted("j1", on("Default", 50_000), ctl),
				admitted("j2", on("Default", 50_000), ctl),
			},
		},
		"limit 0 admits nothing and holds nothing back": {
			snap: snapshot(t0,
				queue("Default").limit(0),
				queue("Other").limit(4)),
			pending: []Request{
				job("j1").workers(1).obj(),
				job("j2").queue("Other").workers(4).submitted(t0.Add(time.Second)).obj(),
			},
			want: []Decision{
				pending("j1", ReasonExceedsQueueLimit, "job needs 1 worker instance but queue Default allows at most 0"),
				admitted("j2", on("Other", 4), ctl),
			},
		},
		"controller queue limit 0": {
			snap: snapshot(t0,
				queue("Default").limit(10),
				queue(controllerQueue).limit(0)),
			pending: []Request{
				job("j1").workers(1).obj(),
			},
			want: []Decision{
				pending("j1", ReasonExceedsQueueLimit, "job needs 1 instance but queue simulation-controller-queue allows at most 0"),
			},
		},
		"limit lowered below what a job needs: pending, and it blocks nothing": {
			// Default is strict and j1 is long past its starvation limit, yet
			// j2 goes: j1 cannot run until the limit is raised again.
			snap: snapshot(t0,
				queue("Default").limit(10).starvation(time.Minute)),
			pending: []Request{
				job("j1").workers(12).submitted(t0.Add(-time.Hour)).obj(),
				job("j2").workers(10).obj(),
			},
			want: []Decision{
				pending("j1", ReasonExceedsQueueLimit, "job needs 12 worker instances but queue Default allows at most 10"),
				admitted("j2", on("Default", 10), ctl),
			},
		},
		"limit lowered below what is allocated: in use is over the limit": {
			snap: snapshot(t0, queue("Default").limit(10).allocated(12).backfill()),
			pending: []Request{
				job("j1").workers(1).obj(),
			},
			want: []Decision{
				pending("j1", ReasonInsufficientWorkerCapacity, "queue Default allows 10 worker instances, 12 in use, job needs 1"),
			},
		},
		"strict queue: a smaller later job waits behind a larger one": {
			snap: snapshot(t0,
				queue("Default").limit(10).allocated(5),
				queue("Other").limit(10)),
			pending: []Request{
				job("j0").workers(2).obj(),
				job("j1").workers(4).submitted(t0.Add(time.Second)).obj(),
				job("j2").workers(3).submitted(t0.Add(2 * time.Second)).obj(),
				replica("r1").priority(-1).obj(),
				job("j3").queue("Other").workers(3).submitted(t0.Add(3 * time.Second)).obj(),
			},
			want: []Decision{
				admitted("j0", on("Default", 2), ctl),
				pending("j1", ReasonInsufficientWorkerCapacity, "queue Default allows 10 worker instances, 7 in use, job needs 4"),
				pending("j2", ReasonBlockedByEarlierJob, "queue Default admits strictly in order: job j1 is ahead and still pending"),
				pending("r1", ReasonBlockedByEarlierJob, "queue Default admits strictly in order: job j1 is ahead and still pending"),
				admitted("j3", on("Other", 3), ctl),
			},
		},
		"strict queue: a blocked job holds back the other strict queues it claims": {
			// j2 is held back on A; on B it is ahead of j3, so j3 waits too.
			snap: snapshot(t0,
				queue("A").limit(4).allocated(3),
				queue("B").limit(4)),
			pending: []Request{
				job("j1").queue("A").workers(2).obj(),
				job("j2").queue("A").workers(1).claim("B", 1).submitted(t0.Add(time.Second)).obj(),
				job("j3").queue("B").workers(1).submitted(t0.Add(2 * time.Second)).obj(),
			},
			want: []Decision{
				pending("j1", ReasonInsufficientWorkerCapacity, "queue A allows 4 worker instances, 3 in use, job needs 2"),
				pending("j2", ReasonBlockedByEarlierJob, "queue A admits strictly in order: job j1 is ahead and still pending"),
				pending("j3", ReasonBlockedByEarlierJob, "queue B admits strictly in order: job j2 is ahead and still pending"),
			},
		},
		"strict queue: capacity is reported before blocking": {
			snap: snapshot(t0, queue("Default").limit(10).allocated(5)),
			pending: []Request{
				job("j1").workers(6).obj(),
				job("j2").workers(6).submitted(t0.Add(time.Second)).obj(),
			},
			want: []Decision{
				pending("j1", ReasonInsufficientWorkerCapacity, "queue Default allows 10 worker instances, 5 in use, job needs 6"),
				pending("j2", ReasonInsufficientWorkerCapacity, "queue Default allows 10 worker instances, 5 in use, job needs 6"),
			},
		},
		"starvation: a job past the limit pauses backfill": {
			// The waits are said in whole seconds: 12m0.4s reads 12m0s.
			snap: snapshot(t0.Add(12*time.Minute+400*time.Millisecond),
				queue("Default").limit(10).allocated(7).backfill().starvation(10*time.Minute)),
			pending: []Request{
				job("job-123").workers(4).obj(),
				job("j2").workers(3).submitted(t0.Add(time.Minute)).obj(),
				replica("r1").submitted(t0.Add(2 * time.Minute)).obj(),
			},
			want: []Decision{
				pending("job-123", ReasonInsufficientWorkerCapacity, "queue Default allows 10 worker instances, 7 in use, job needs 4; starvation guard: backfill paused for it on queue Default: waited 12m0s, past the starvation limit of 10m0s; later requests wait until this one is admitted"),
				pending("j2", ReasonBlockedByStarvingJob, "queue Default: job job-123 has waited 12m0s (limit 10m0s); backfill paused until it is admitted"),
				pending("r1", ReasonBlockedByStarvingJob, "queue Default: job job-123 has waited 12m0s (limit 10m0s); backfill paused until it is admitted"),
			},
		},
		"starvation: jobs ahead of the starving one are still admitted": {
			snap: snapshot(t0.Add(12*time.Minute),
				queue("Default").limit(10).allocated(4).backfill().starvation(10*time.Minute)),
			pending: []Request{
				job("j0").workers(3).priority(1).submitted(t0.Add(11 * time.Minute)).obj(),
				job("job-123").workers(4).obj(),
				job("j2").workers(3).submitted(t0.Add(time.Minute)).obj(),
			},
			want: []Decision{
				admitted("j0", on("Default", 3), ctl),
				pending("job-123", ReasonInsufficientWorkerCapacity, "queue Default allows 10 worker instances, 7 in use, job needs 4; starvation guard: backfill paused for it on queue Default: waited 12m0s, past the starvation limit of 10m0s; later requests wait until this one is admitted"),
				pending("j2", ReasonBlockedByStarvingJob, "queue Default: job job-123 has waited 12m0s (limit 10m0s); backfill paused until it is admitted"),
			},
		},
		"starvation limit not yet passed: backfill goes on": {
			snap: snapshot(t0.Add(10*time.Minute),
				queue("Default").limit(10).allocated(7).backfill().starvation(10*time.Minute)),
			pending: []Request{
				job("j1").workers(4).obj(),
				job("j2").workers(3).submitted(t0.Add(time.Minute)).obj(),
			},
			want: []Decision{
				pending("j1", ReasonInsufficientWorkerCapacity, "queue Default allows 10 worker instances, 7 in use, job needs 4"),
				admitted("j2", on("Default", 3), ctl),
			},
		},
		"starvation is measured from PendingSince, not submission": {
			snap: snapshot(t0.Add(time.Hour),
				queue("Default").limit(10).allocated(7).backfill().starvation(10*time.Minute)),
			pending: []Request{
				job("j1").workers(4).pendingSince(t0.Add(55 * time.Minute)).obj(),
				job("j2").workers(3).submitted(t0.Add(time.Minute)).obj(),
			},
			want: []Decision{
				pending("j1", ReasonInsufficientWorkerCapacity, "queue Default allows 10 worker instances, 7 in use, job needs 4"),
				admitted("j2", on("Default", 3), ctl),
			},
		},
		"starvation: a starving job pauses backfill on every limited queue it claims": {
			// j1 starves on Default; Other has room, but j2 would take the last
			// controller j1 needs.
			snap: snapshot(t0.Add(12*time.Minute),
				queue("Default").limit(10).allocated(10).backfill().starvation(10*time.Minute),
				queue("Other").limit(10).backfill(),
				queue(controllerQueue).limit(5).allocated(4).backfill()),
			pending: []Request{
				job("j1").workers(4).obj(),
				job("j2").queue("Other").workers(3).submitted(t0.Add(time.Minute)).obj(),
				replica("r1").queue("Other").submitted(t0.Add(time.Minute)).obj(),
			},
			want: []Decision{
				pending("j1", ReasonInsufficientWorkerCapacity, "queue Default allows 10 worker instances, 10 in use, job needs 4; starvation guard: backfill paused for it on queue Default, simulation-controller-queue: waited 12m0s, past the starvation limit of 10m0s; later requests wait until this one is admitted"),
				pending("j2", ReasonBlockedByStarvingJob, "queue simulation-controller-queue: job j1 has waited 12m0s (limit 10m0s); backfill paused until it is admitted"),
				admitted("r1", on("Other", 1)),
			},
		},
		"starvation: an unlimited queue is never paused": {
			// Same as above with the controller queue unlimited, as it is
			// created: a starving job must not stop every job everywhere.
			snap: snapshot(t0.Add(12*time.Minute),
				queue("Default").limit(10).allocated(10).backfill().starvation(10*time.Minute),
				queue("Other").limit(10).backfill()),
			pending: []Request{
				job("j1").workers(4).obj(),
				job("j2").queue("Other").workers(3).submitted(t0.Add(time.Minute)).obj(),
			},
			want: []Decision{
				pending("j1", ReasonInsufficientWorkerCapacity, "queue Default allows 10 worker instances, 10 in use, job needs 4; starvation guard: backfill paused for it on queue Default: waited 12m0s, past the starvation limit of 10m0s; later requests wait until this one is admitted"),
				admitted("j2", on("Other", 3), ctl),
			},
		},
		"unknown queue: pending, and it blocks nothing": {
			snap: snapshot(t0, queue("Default").limit(10)),
			pending: []Request{
				job("j1").queue("gone").workers(1).obj(),
				job("j2").workers(10).submitted(t0.Add(time.Second)).obj(),
			},
			want: []Decision{
				pending("j1", ReasonQueueNotFound, `queue "gone" does not exist`),
				admitted("j2", on("Default", 10), ctl),
			},
		},
		"unknown controller queue": {
			snap: Snapshot{Now: t0, Queues: map[string]Queue{"Default": {Name: "Default"}}},
			pending: []Request{
				job("j1").obj(),
			},
			want: []Decision{
				pending("j1", ReasonQueueNotFound, `queue "simulation-controller-queue" does not exist`),
			},
		},
		"two claims on the same queue must fit together": {
			snap: snapshot(t0, queue("Default").limit(10).allocated(5).backfill()),
			pending: []Request{
				job("j1").workers(3).claim("Default", 3).obj(),
				job("j2").workers(2).claim("Default", 3).submitted(t0.Add(time.Second)).obj(),
			},
			want: []Decision{
				pending("j1", ReasonInsufficientWorkerCapacity, "queue Default allows 10 worker instances, 5 in use, job needs 6"),
				admitted("j2", on("Default", 2), ctl, on("Default", 3)),
			},
		},
		"two claims on the same queue over its limit": {
			snap: snapshot(t0, queue("Default").limit(10)),
			pending: []Request{
				job("j1").workers(6).claim("Default", 6).obj(),
			},
			want: []Decision{
				pending("j1", ReasonExceedsQueueLimit, "job needs 12 worker instances but queue Default allows at most 10"),
			},
		},
		"the first failing claim is reported": {
			snap: snapshot(t0,
				queue("Default").limit(10).allocated(10),
				queue(controllerQueue).limit(1).allocated(1)),
			pending: []Request{
				job("j1").workers(2).obj(),
			},
			want: []Decision{
				pending("j1", ReasonInsufficientWorkerCapacity, "queue Default allows 10 worker instances, 10 in use, job needs 2"),
			},
		},
		"a claim of zero needs nothing": {
			snap: snapshot(t0, queue("Default").limit(0), queue("Other").limit(1)),
			pending: []Request{
				replica("r1").workers(0).claim("Other", 1).obj(),
			},
			want: []Decision{
				admitted("r1", on("Default", 0), on("Other", 1)),
			},
		},
		"a negative claim is refused": {
			snap: snapshot(t0, queue("Default").limit(10)),
			pending: []Request{
				job("j1").workers(-3).obj(),
			},
			want: []Decision{
				pending("j1", ReasonInvalidClaim, `job claims -3 instances on queue "Default"; a count cannot be negative`),
			},
		},
		"post controller waits for a full post-controller queue": {
			snap: snapshot(t0, queue(postControllerQueue).limit(1).allocated(1).backfill()),
			pending: []Request{
				postController("j1").obj(),
			},
			want: []Decision{
				pending("j1/post-controller", ReasonInsufficientControllerCapacity, "queue post-controller-queue allows 1 instance, 1 in use, post-controller needs 1"),
			},
		},
		"post controller admitted": {
			snap: snapshot(t0, queue(postControllerQueue).limit(2).allocated(1)),
			pending: []Request{
				postController("j1").obj(),
			},
			want: []Decision{
				admitted("j1/post-controller", on(postControllerQueue, 1)),
			},
		},
		"deployment replicas count against the worker limit": {
			snap: snapshot(t0, queue("Apps").limit(3).allocated(1).backfill()),
			pending: []Request{
				replica("web/0").queue("Apps").obj(),
				replica("web/1").queue("Apps").obj(),
				replica("web/2").queue("Apps").obj(),
			},
			want: []Decision{
				admitted("web/0", on("Apps", 1)),
				admitted("web/1", on("Apps", 1)),
				pending("web/2", ReasonInsufficientWorkerCapacity, "queue Apps allows 3 worker instances, 3 in use (2 by deployments' replicas), replica needs 1"),
			},
		},
		"a job waiting on a queue replicas hold is told so": {
			snap: snapshot(t0, queue("Apps").limit(4).allocated(3).replicas(2).backfill()),
			pending: []Request{
				job("sim").queue("Apps").workers(2).obj(),
			},
			want: []Decision{
				pending("sim", ReasonInsufficientWorkerCapacity, "queue Apps allows 4 worker instances, 3 in use (2 by deployments' replicas), job needs 2"),
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			snapBefore, pendingBefore := copySnapshot(tc.snap), copyRequests(tc.pending)
			got := Admit(tc.snap, tc.pending)
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Admit() mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(snapBefore, tc.snap); diff != "" {
				t.Errorf("Admit() modified the snapshot (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(pendingBefore, tc.pending); diff != "" {
				t.Errorf("Admit() modified pending (-before +after):\n%s", diff)
			}
		})
	}
}

// TestAdmitWorkedExampleRelease follows the product documents' example through a
// Ledger: job 2 waits while job 1 holds the queue and is admitted once job 1's
// lease is released.
func TestAdmitWorkedExampleRelease(t *testing.T) {
	var l testLedger
	limit := ptr(10)
	snap := func() Snapshot {
		return snapshot(t0, &queueBuilder{id: "Default", q: Queue{Name: "Default", Limit: limit, Allocated: l.Allocated("Default")}})
	}
	grant := func(ds []Decision) {
		t.Helper()
		for _, d := range ds {
			if d.Admit {
				if err := l.Grant(d.ID, d.Grants); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	j1 := job("j1").workers(10).obj()
	j2 := job("j2").workers(8).submitted(t0.Add(time.Second)).obj()

	got := Admit(snap(), []Request{j1, j2})
	want := []Decision{
		admitted("j1", on("Default", 10), ctl),
		pending("j2", ReasonInsufficientWorkerCapacity, "queue Default allows 10 worker instances, 10 in use, job needs 8"),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Admit() mismatch (-want +got):\n%s", diff)
	}
	grant(got)

	// Nothing changed: job 2 still waits, now on job 1's lease.
	got = Admit(snap(), []Request{j2})
	want = []Decision{
		pending("j2", ReasonInsufficientWorkerCapacity, "queue Default allows 10 worker instances, 10 in use, job needs 8"),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Admit() before release mismatch (-want +got):\n%s", diff)
	}

	if !l.Release("j1") {
		t.Fatal("Release(j1) = false, want true")
	}
	got = Admit(snap(), []Request{j2})
	want = []Decision{admitted("j2", on("Default", 8), ctl)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Admit() after release mismatch (-want +got):\n%s", diff)
	}
	grant(got)
	if got, want := l.Allocated("Default"), 8; got != want {
		t.Errorf("Allocated(Default) = %d, want %d", got, want)
	}
}

// TestAdmitDoesNotAlias checks that grants share no memory with the request, so a
// caller changing one cannot change the other.
func TestAdmitDoesNotAlias(t *testing.T) {
	pending := []Request{job("j1").workers(2).obj()}
	got := Admit(snapshot(t0, queue("Default").limit(10)), pending)
	got[0].Grants[0].Count = 99
	if c := pending[0].Claims[0].Count; c != 2 {
		t.Errorf("request claim count = %d after changing the grant, want 2", c)
	}
}

// TestAdmitIgnoresInputOrder checks that decisions depend on the requests, not on
// the order the caller lists them in.
func TestAdmitIgnoresInputOrder(t *testing.T) {
	snap := snapshot(t0.Add(20*time.Minute),
		queue("Default").limit(10).allocated(3).backfill().starvation(15*time.Minute),
		queue("Strict").limit(5).allocated(1),
		queue(controllerQueue).limit(4).backfill())
	pending := []Request{
		job("a").workers(5).priority(1).obj(),
		job("b").workers(4).obj(),
		job("c").queue("Strict").workers(3).submitted(t0.Add(time.Minute)).obj(),
		job("d").queue("Strict").workers(2).submitted(t0.Add(2 * time.Minute)).obj(),
		replica("e").submitted(t0.Add(3 * time.Minute)).obj(),
		job("f").workers(1).submitted(t0.Add(3 * time.Minute)).obj(),
	}
	want := byID(pending, Admit(snap, pending))
	reversed := make([]Request, len(pending))
	for i, r := range pending {
		reversed[len(pending)-1-i] = r
	}
	if diff := cmp.Diff(want, byID(reversed, Admit(snap, reversed))); diff != "" {
		t.Errorf("Admit() depends on input order (-forward +reversed):\n%s", diff)
	}
}

func byID(pending []Request, ds []Decision) map[string]Decision {
	m := make(map[string]Decision, len(ds))
	for i, d := range ds {
		if d.ID != pending[i].ID {
			panic("decision out of input order")
		}
		m[d.ID] = d
	}
	return m
}

func copySnapshot(s Snapshot) Snapshot {
	c := Snapshot{Now: s.Now, Queues: make(map[string]Queue, len(s.Queues))}
	for id, q := range s.Queues {
		if q.Limit != nil {
			q.Limit = ptr(*q.Limit)
		}
		c.Queues[id] = q
	}
	return c
}

func copyRequests(rs []Request) []Request {
	if rs == nil {
		return nil
	}
	c := make([]Request, len(rs))
	for i, r := range rs {
		r.Claims = append([]Claim(nil), r.Claims...)
		c[i] = r
	}
	return c
}
