package elect

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events/eventstest"
)

// A leader that dies without resigning (it stops renewing) is replaced once
// its key expires, with a larger epoch; the dead one's renewal then fails.
func TestTakeoverAfterLeaderDies(t *testing.T) {
	js := eventstest.Run(t)
	ctx := context.Background()
	cfg := Config{Bucket: "rm_test", TTL: time.Second, Renew: 100 * time.Millisecond}
	cfg.ID = "a"
	a, err := New(ctx, js, cfg, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	cfg.ID = "b"
	b, err := New(ctx, js, cfg, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	revA, err := a.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// a leads and renews for a while: b cannot win meanwhile.
	holdCtx, stopHolding := context.WithCancel(ctx)
	held := make(chan error, 1)
	go func() { held <- a.Hold(holdCtx, revA) }()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if _, err := b.Campaign(cctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("b won while a renewed: %v", err)
	}
	cancel()
	stopHolding() // a resigns cleanly here; b wins at its next attempt
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	revB, err := b.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > time.Second || revB <= revA {
		t.Errorf("after resignation: won in %v with epoch %d (a had %d)", time.Since(start), revB, revA)
	}

	// Now b dies: it never renews. a wins after the TTL, not before.
	start = time.Now()
	revA2, err := a.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 500*time.Millisecond || d > 3*time.Second || revA2 <= revB {
		t.Errorf("takeover after b died: %v, epoch %d (b had %d)", d, revA2, revB)
	}
	// b wakes up: its first renewal fails.
	if err := b.Hold(ctx, revB); !errors.Is(err, ErrLost) {
		t.Errorf("dead leader's renewal: %v, want ErrLost", err)
	}
}
