package launch

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/avxrm/rm/services/launcher/internal/driver/registry"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestQueueReadAheadOfItsTTL: a queue read is used for queueRefresh without
// another read; past it, the cached queue is still returned at once and
// read again in the background; past queueTTL it is read before it is
// returned; a queue deleted meanwhile leaves the cache. Each read finds the
// queue by _id, then by name, not by one $or (which the embedded store
// answers by reading every queue).
func TestQueueReadAheadOfItsTTL(t *testing.T) {
	e := newEnv(t)
	db, reads := countingDB(t, e.uri, finds(QueuesCollection, ""))
	s, err := New(Config{DataDir: e.dataDir}, Deps{
		DB: db, JS: e.js, Outbox: e.ob, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Drivers: registry.Factories(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const id = "q-Default"
	setEnv := func(v string) {
		t.Helper()
		if _, err := e.db.Collection(QueuesCollection).UpdateOne(ctx, bson.D{{Key: "_id", Value: id}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "environment_variables.QUEUE", Value: v}}}}); err != nil {
			t.Fatal(err)
		}
	}
	age := func(ref string, d time.Duration) {
		s.mu.Lock()
		defer s.mu.Unlock()
		c := s.qcache[ref]
		c.at = time.Now().Add(-d)
		s.qcache[ref] = c
	}
	get := func(ref string) string {
		t.Helper()
		q, err := s.queue(ctx, ref)
		if err != nil {
			t.Fatalf("queue(%s): %v", ref, err)
		}
		return q.EnvironmentVariables["QUEUE"]
	}

	if got := get(id); got != "Default" || reads() != 1 {
		t.Fatalf("first read: QUEUE=%q after %d finds; want Default after 1 (by _id)", got, reads())
	}
	if got := get(id); got != "Default" || reads() != 1 {
		t.Fatalf("second use: QUEUE=%q after %d finds; want the cached one, no find", got, reads())
	}

	setEnv("v2")
	age(id, queueRefresh+10*time.Millisecond)
	if got := get(id); got != "Default" {
		t.Fatalf("past queueRefresh: QUEUE=%q; want the cached Default at once", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for get(id) != "v2" {
		if time.Now().After(deadline) {
			t.Fatal("the background read never brought QUEUE=v2 into the cache")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := reads(); n != 2 {
		t.Errorf("%d finds after the background read; want 2 (one each)", n)
	}

	setEnv("v3")
	age(id, queueTTL+time.Millisecond)
	if got := get(id); got != "v3" || reads() != 3 {
		t.Fatalf("past queueTTL: QUEUE=%q after %d finds; want v3, read before it is returned", got, reads())
	}

	if got := get("Default"); got != "v3" || reads() != 5 {
		t.Fatalf("by name: QUEUE=%q after %d finds; want v3 after 2 more (by _id, then by name)", got, reads())
	}

	if _, err := e.db.Collection(QueuesCollection).UpdateOne(ctx, bson.D{{Key: "_id", Value: id}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "_deleted", Value: true}}}}); err != nil {
		t.Fatal(err)
	}
	age(id, queueRefresh+10*time.Millisecond)
	get(id) // the cached queue, and a background read that finds it gone
	deadline = time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		_, cached := s.qcache[id]
		s.mu.Unlock()
		if !cached {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a queue deleted meanwhile stayed in the cache after its background read")
		}
		time.Sleep(5 * time.Millisecond)
	}
	var perm errPermanent
	if _, err := s.queue(ctx, id); !errors.As(err, &perm) {
		t.Fatalf("queue(%s) deleted: %v; want a permanent error", id, err)
	}
	age("Default", queueTTL+time.Millisecond)
	if _, err := s.queue(ctx, "Default"); !errors.As(err, &perm) {
		t.Fatalf("queue(Default) deleted, past queueTTL: %v; want a permanent error", err)
	}
}
