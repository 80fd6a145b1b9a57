package elect

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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

// A NATS restart shorter than the TTL does not end a leadership: the renewals
// that fail meanwhile are tried again, and no standby wins.
func TestLeaderOutlivesShortNATSRestart(t *testing.T) {
	srv := eventstest.RunRestartable(t) // its restart listens where the clients reconnect
	connect := func(id string) *Elector {
		nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		e, err := New(context.Background(), js, Config{Bucket: "rm_test", TTL: 4 * time.Second, Renew: 200 * time.Millisecond, ID: id}, slog.Default())
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	a, b := connect("a"), connect("b")
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	rev, err := a.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan error, 1)
	go func() { held <- a.Hold(ctx, rev) }()
	won := make(chan uint64, 1)
	go func() {
		if r, err := b.Campaign(ctx); err == nil {
			won <- r
		}
	}()
	time.Sleep(500 * time.Millisecond)

	srv.Stop()
	time.Sleep(2500 * time.Millisecond) // longer than half the TTL, shorter than the TTL
	srv.Start()

	select {
	case err := <-held:
		t.Fatalf("the leader stepped down over a 2.5 s restart: %v", err)
	case r := <-won:
		t.Fatalf("the standby won at revision %d while the leader lived", r)
	case <-time.After(5 * time.Second): // past the TTL: renewals resumed
	}
	stop()
	if err := <-held; err != nil {
		t.Fatalf("resign: %v", err)
	}
}

// A renewal that finds another candidate's key ends the leadership at once,
// without waiting out the TTL.
func TestLeaderStepsDownAtOnceWhenKeyIsTaken(t *testing.T) {
	js := eventstest.Run(t)
	ctx := context.Background()
	cfg := Config{Bucket: "rm_test", TTL: 5 * time.Second, Renew: 100 * time.Millisecond, ID: "a"}
	a, err := New(ctx, js, cfg, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	rev, err := a.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, "rm_test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "leader", []byte("b")); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	if err := a.Hold(ctx, rev); !errors.Is(err, ErrLost) {
		t.Fatalf("Hold over a taken key: %v, want ErrLost", err)
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("stepped down after %v; the key was taken at the first renewal", d)
	}
}
