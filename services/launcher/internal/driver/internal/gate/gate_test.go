package gate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// queue makes each of launches wait on g, one after the other (each waiting
// before the next comes), and returns the order in which they got a slot
// once release lets the first in. Each gives its slot back at once.
func queue(t *testing.T, g *Gate, launches []string, release func()) []string {
	t.Helper()
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	for i, l := range launches {
		job := l[:1] // "A1" is a launch of job "A"; "-" stands for no job
		if job == "-" {
			job = ""
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.Acquire(context.Background(), job); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, l)
			mu.Unlock()
			g.Release(job)
		}()
		waitFor(t, func() bool { return g.Waiters() == i+1 })
	}
	release()
	wg.Wait()
	return order
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10 s")
		}
	}
}

func TestGateAdmitsJobByJob(t *testing.T) {
	for _, tc := range []struct {
		name           string
		launches, want []string
	}{
		{"the job that asked first goes first",
			[]string{"A1", "B1", "A2", "B2", "A3", "C1", "B3"},
			[]string{"A1", "A2", "A3", "B1", "B2", "B3", "C1"}},
		// The 17th instance of a job of 21, started when one of its first
		// 16 is done, still goes before the job admitted after it.
		{"a job's later launch overtakes a later job",
			[]string{"A1", "B1", "B2", "A2"},
			[]string{"A1", "A2", "B1", "B2"}},
		{"work of no job goes after every job's",
			[]string{"-1", "A1", "-2", "B1"},
			[]string{"A1", "B1", "-1", "-2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := New(1)
			if err := g.Acquire(context.Background(), "H"); err != nil {
				t.Fatal(err)
			}
			got := queue(t, g, tc.launches, func() { g.Release("H") })
			if !slices.Equal(got, tc.want) {
				t.Errorf("order %v, want %v", got, tc.want)
			}
			if len(g.tickets) != 0 || g.free != 1 {
				t.Errorf("after all: tickets %v, free %d; want none and 1", g.tickets, g.free)
			}
		})
	}
}

// A job whose launches are all done loses its place: its next launch goes
// after the jobs that asked meanwhile.
func TestGateForgetsAJobWithNothingLeft(t *testing.T) {
	g := New(1)
	ctx := context.Background()
	if err := g.Acquire(ctx, "A"); err != nil {
		t.Fatal(err)
	}
	g.Release("A")
	if err := g.Acquire(ctx, "H"); err != nil {
		t.Fatal(err)
	}
	got := queue(t, g, []string{"B1", "A1"}, func() { g.Release("H") })
	if want := []string{"B1", "A1"}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
}

func TestGateCancelledWaiterHoldsNothing(t *testing.T) {
	g := New(1)
	if err := g.Acquire(context.Background(), "H"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- g.Acquire(ctx, "A") }()
	waitFor(t, func() bool { return g.Waiters() == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("acquire: %v, want context.Canceled", err)
	}
	if g.Waiters() != 0 || g.tickets["A"] != nil {
		t.Fatalf("the cancelled launch stayed: %d waiting, tickets %v", g.Waiters(), g.tickets)
	}
	g.Release("H")
	done := make(chan error, 1)
	go func() { done <- g.Acquire(context.Background(), "B") }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the slot the cancelled launch waited for was lost")
	}
}

// Never more holders than slots, whatever the jobs and cancellations.
func TestGateNeverAdmitsMoreThanItsSlots(t *testing.T) {
	const slots = 3
	g := New(slots)
	var holding, most atomic.Int32
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				job := fmt.Sprintf("job-%d", (w+i)%5)
				ctx, cancel := context.WithCancel(context.Background())
				if i%7 == 0 {
					cancel() // some give up while they wait, or before
				}
				if g.Acquire(ctx, job) == nil {
					n := holding.Add(1)
					for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
					}
					holding.Add(-1)
					g.Release(job)
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	if most.Load() > slots {
		t.Errorf("%d holders at once, the gate has %d slots", most.Load(), slots)
	}
	if g.free != slots || len(g.tickets) != 0 || len(g.waiting) != 0 {
		t.Errorf("after all: free %d, tickets %v, %d waiting; want %d, none, 0", g.free, g.tickets, len(g.waiting), slots)
	}
}
