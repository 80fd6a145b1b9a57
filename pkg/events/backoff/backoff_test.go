package backoff

import (
	"testing"
	"time"
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
