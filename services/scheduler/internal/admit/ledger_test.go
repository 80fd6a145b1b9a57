package admit

import (
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// step is one call on a Ledger: a grant of claims to id, or a release of id.
type step struct {
	release      bool
	id           string
	claims       []Claim
	wantErr      error // of a grant
	wantReleased bool  // of a release
}

func grantStep(id string, wantErr error, claims ...Claim) step {
	return step{id: id, claims: claims, wantErr: wantErr}
}

func releaseStep(id string, want bool) step { return step{release: true, id: id, wantReleased: want} }

func TestLedger(t *testing.T) {
	type state struct {
		Allocated map[string]int // of the queues "A", "B", controllerQueue
		Leases    []string
	}
	cases := map[string]struct {
		steps []step
		want  state
	}{
		"empty": {
			want: state{Allocated: map[string]int{"A": 0, "B": 0, controllerQueue: 0}},
		},
		"grants add up per queue": {
			steps: []step{
				grantStep("j1", nil, on("A", 3), ctl),
				grantStep("j2", nil, on("A", 2), ctl),
				grantStep("j3", nil, on("B", 1), on("B", 4)),
			},
			want: state{
				Allocated: map[string]int{"A": 5, "B": 5, controllerQueue: 2},
				Leases:    []string{"j1", "j2", "j3"},
			},
		},
		"a second grant for the same id is refused and changes nothing": {
			steps: []step{
				grantStep("j1", nil, on("A", 3), ctl),
				grantStep("j1", ErrLeaseHeld, on("A", 3), ctl),
			},
			want: state{
				Allocated: map[string]int{"A": 3, "B": 0, controllerQueue: 1},
				Leases:    []string{"j1"},
			},
		},
		"a negative claim is refused and changes nothing": {
			steps: []step{
				grantStep("j1", ErrInvalidClaim, on("A", 3), on("B", -1)),
			},
			want: state{Allocated: map[string]int{"A": 0, "B": 0, controllerQueue: 0}},
		},
		"release gives back exactly the lease, once": {
			steps: []step{
				grantStep("j1", nil, on("A", 3), ctl),
				grantStep("j2", nil, on("A", 2), ctl),
				releaseStep("j1", true),
				releaseStep("j1", false),
				releaseStep("never-granted", false),
			},
			want: state{
				Allocated: map[string]int{"A": 2, "B": 0, controllerQueue: 1},
				Leases:    []string{"j2"},
			},
		},
		"an id may hold a lease again after its release": {
			steps: []step{
				grantStep("j1", nil, on("A", 3)),
				releaseStep("j1", true),
				grantStep("j1", nil, on("B", 1)),
			},
			want: state{
				Allocated: map[string]int{"A": 0, "B": 1, controllerQueue: 0},
				Leases:    []string{"j1"},
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var l Ledger
			for i, s := range tc.steps {
				if s.release {
					if got := l.Release(s.id); got != s.wantReleased {
						t.Errorf("step %d: Release(%q) = %t, want %t", i, s.id, got, s.wantReleased)
					}
					if l.Holds(s.id) {
						t.Errorf("step %d: Holds(%q) = true after Release", i, s.id)
					}
					continue
				}
				if err := l.Grant(s.id, s.claims); !errors.Is(err, s.wantErr) {
					t.Errorf("step %d: Grant(%q) error = %v, want %v", i, s.id, err, s.wantErr)
				}
				if want := s.wantErr == nil || errors.Is(s.wantErr, ErrLeaseHeld); l.Holds(s.id) != want {
					t.Errorf("step %d: Holds(%q) = %t after Grant, want %t", i, s.id, !want, want)
				}
			}
			got := state{Allocated: map[string]int{}, Leases: l.Leases()}
			for _, q := range []string{"A", "B", controllerQueue} {
				got.Allocated[q] = l.Allocated(q)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Ledger mismatch (-want +got):\n%s", diff)
			}
			for _, id := range []string{"j1", "j2", "j3"} {
				if got, want := l.Holds(id), slices.Contains(tc.want.Leases, id); got != want {
					t.Errorf("Holds(%q) = %t, want %t", id, got, want)
				}
			}
		})
	}
}

// TestLedgerKeepsItsOwnCopy checks that a caller reusing its claims slice cannot
// change what a later Release gives back.
func TestLedgerKeepsItsOwnCopy(t *testing.T) {
	var l Ledger
	claims := []Claim{on("A", 3)}
	if err := l.Grant("j1", claims); err != nil {
		t.Fatal(err)
	}
	claims[0].Count = 100
	l.Release("j1")
	if got := l.Allocated("A"); got != 0 {
		t.Errorf("Allocated(A) after release = %d, want 0", got)
	}
}
