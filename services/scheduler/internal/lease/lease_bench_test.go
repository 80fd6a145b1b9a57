package lease_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/services/scheduler/internal/lease"
)

// BenchmarkApply measures one admission pass's ledger write (one grant and
// one release) with holders leases live: the cost of a pass must not grow
// with the number of jobs running.
//
//	go test -run '^$' -bench BenchmarkApply -benchtime 100x ./internal/lease/
func BenchmarkApply(b *testing.B) {
	for _, holders := range []int{10, 100, 600, 3000} {
		b.Run(fmt.Sprintf("holders=%d", holders), func(b *testing.B) {
			ctx := context.Background()
			uri, _ := mongotest.Start(b)
			s := lease.New(mongotest.Client(b, uri).Database("bench"))
			if err := s.Ensure(ctx); err != nil {
				b.Fatal(err)
			}
			l, err := s.Load(ctx)
			if err != nil {
				b.Fatal(err)
			}
			claims := []lease.Claim{{Queue: "q-01M8QX9X44NPB916TBJ091EGP0", Count: 1}, {Queue: "q-controllers0000000000000000", Count: 1}}
			grants := map[string][]lease.Claim{}
			for i := range holders {
				grants[holderID(i)] = claims
			}
			if err := s.Apply(ctx, &l, lease.Change{Grants: grants}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := range b.N {
				c := lease.Change{
					Grants:   map[string][]lease.Claim{holderID(holders + i): claims},
					Releases: []string{holderID(i)},
				}
				if err := s.Apply(ctx, &l, c); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if len(l.Leases) != holders {
				b.Fatalf("%d leases, want %d", len(l.Leases), holders)
			}
			got, err := s.Load(ctx)
			if err != nil || len(got.Leases) != holders {
				b.Fatalf("stored: %d leases, %v; want %d", len(got.Leases), err, holders)
			}
		})
	}
}

func holderID(i int) string { return fmt.Sprintf("job-01M8QX%020d", i) }
