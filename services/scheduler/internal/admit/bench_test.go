package admit

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkAdmit measures one Admit call over 1,000 queues, most of them nearly
// full, as pending grows a hundredfold. ns/decision should stay flat: the call is
// one sort plus constant work per request.
func BenchmarkAdmit(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("pending=%d", n), func(b *testing.B) {
			snap, pending := benchWorkload(n, 1_000)
			var admitted int
			b.ReportAllocs()
			for b.Loop() {
				admitted = 0
				for _, d := range Admit(snap, pending) {
					if d.Admit {
						admitted++
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(pending)), "ns/decision")
			b.ReportMetric(float64(admitted), "admitted/op")
		})
	}
}

// benchWorkload builds, from a fixed seed, a cluster of queues whose capacity is
// mostly in use and pending requests spread over them: mostly jobs (workers plus a
// controller), some deployment replicas and post controllers.
func benchWorkload(pending, queues int) (Snapshot, []Request) {
	rng := rand.New(rand.NewPCG(uint64(pending), 42))
	now := t0.Add(2 * time.Hour)
	snap := Snapshot{Now: now, Queues: make(map[string]Queue, queues+2)}
	ids := make([]string, queues)
	for i := range ids {
		ids[i] = fmt.Sprintf("q-%04d", i)
		limit := 20 + rng.IntN(180)
		free := rng.IntN(limit/10 + 1) // most queues nearly full
		if rng.IntN(10) == 0 {
			free = limit / 2
		}
		q := Queue{Name: ids[i], Limit: ptr(limit), Allocated: limit - free, Backfill: rng.IntN(5) != 0}
		if rng.IntN(3) == 0 {
			q.Starvation = 30 * time.Minute
		}
		snap.Queues[ids[i]] = q
	}
	snap.Queues[controllerQueue] = Queue{Name: controllerQueue, Limit: ptr(5_000), Allocated: 4_500, Backfill: true}
	snap.Queues[postControllerQueue] = Queue{Name: postControllerQueue, Limit: ptr(50), Allocated: 45, Backfill: true}

	reqs := make([]Request, pending)
	for i := range reqs {
		r := Request{
			ID:          fmt.Sprintf("job-%07d", i),
			Kind:        KindJob,
			Priority:    []int{0, 0, 0, 1, 1, 2}[rng.IntN(6)],
			SubmittedAt: now.Add(-time.Duration(rng.IntN(7200)) * time.Second),
		}
		q := ids[rng.IntN(len(ids))]
		switch p := rng.IntN(20); {
		case p < 17:
			r.Claims = []Claim{{q, 1 + rng.IntN(16)}, {controllerQueue, 1}}
		case p < 19:
			r.Kind, r.ID = KindReplica, fmt.Sprintf("dep-%07d/0", i)
			r.Claims = []Claim{{q, 1}}
		default:
			r.Kind, r.ID = KindPostController, r.ID+"/post-controller"
			r.Claims = []Claim{{postControllerQueue, 1}}
		}
		reqs[i] = r
	}
	return snap, reqs
}
