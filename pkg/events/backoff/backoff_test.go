package backoff

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/x/mongo/driver"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"
)

func TestDoubling(t *testing.T) {
	b := Doubling{Min: time.Second, Max: 5 * time.Second}
	now := time.Unix(1000, 0)
	if !b.May(now) {
		t.Fatal("a first try is held back")
	}
	var got []time.Duration
	for range 5 {
		got = append(got, b.Failed(now))
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("waits after failures: %v, want %v", got, want)
		}
	}
	if b.May(now.Add(4 * time.Second)) {
		t.Error("a try allowed before the back-off ended")
	}
	if !b.May(now.Add(5 * time.Second)) {
		t.Error("a try held back after the back-off ended")
	}
	b.Succeeded()
	if !b.May(now) || b.Failed(now) != time.Second {
		t.Error("a success did not end the back-off")
	}
}

// TestFailedWith: a failure that reached no store (no server selected, a
// refused connection) waits only Min and starts the back-off over; a
// timeout doubles it as any other failure.
func TestFailedWith(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	unreachable := map[string]error{
		"no server selected": fmt.Errorf("raise epoch: %w", topology.ServerSelectionError{Wrapped: refused}),
		"network error":      fmt.Errorf("read: %w", driver.Error{Labels: []string{driver.NetworkError}, Wrapped: refused}),
	}
	for name, err := range unreachable {
		b := Doubling{Min: time.Second, Max: time.Minute}
		now := time.Unix(1000, 0)
		b.Failed(now)
		b.Failed(now) // 2 s
		if got := b.FailedWith(now, err); got != time.Second || !Unreachable(err) {
			t.Errorf("%s: waits %v (unreachable %v), want 1s", name, got, Unreachable(err))
		}
		if got := b.Failed(now); got != time.Second {
			t.Errorf("%s: the back-off did not start over: the next failure waits %v, want 1s", name, got)
		}
	}
	for name, err := range map[string]error{
		"timeout":       fmt.Errorf("find: %w", context.DeadlineExceeded),
		"store refused": errors.New("(MaxTimeMSExpired) operation exceeded time limit"),
	} {
		b := Doubling{Min: time.Second, Max: time.Minute}
		now := time.Unix(1000, 0)
		b.Failed(now)
		if got := b.FailedWith(now, err); got != 2*time.Second || Unreachable(err) {
			t.Errorf("%s: waits %v (unreachable %v), want 2s", name, got, Unreachable(err))
		}
	}
}
