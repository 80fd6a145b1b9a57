package launch

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/avxrm/rm/services/launcher/internal/driver/registry"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestPluginResolutionIsReusedBriefly: resolving a queue's plugin and the
// default one for every job reconciled read the store twice per reconcile;
// within queueTTL a resolution is reused, and after it a change is seen.
func TestPluginResolutionIsReusedBriefly(t *testing.T) {
	e := newEnv(t)
	var reads atomic.Int64
	mon := &event.CommandMonitor{Started: func(_ context.Context, ev *event.CommandStartedEvent) {
		if ev.CommandName == "find" && ev.Command.Lookup("find").StringValue() == PluginsCollection {
			reads.Add(1)
		}
	}}
	cl, err := mongo.Connect(options.Client().ApplyURI(e.uri).SetMonitor(mon))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Disconnect(context.Background()) })
	db := cl.Database("rm")
	s, err := New(Config{DataDir: e.dataDir}, Deps{DB: db, JS: e.js, Outbox: e.ob, Drivers: registry.Factories()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := db.Collection(PluginsCollection).InsertOne(ctx, bson.D{{Key: "_id", Value: "plg-a"}, {Key: "name", Value: "a"},
		{Key: "type", Value: "simulated"}, {Key: "version", Value: int64(1)}}); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if p, err := s.resolvePlugin(ctx, "a"); err != nil || p.ID != "plg-a" {
			t.Fatalf("resolvePlugin(a) = %+v, %v", p, err)
		}
		if p, err := s.resolvePlugin(ctx, ""); err != nil || p.ID != defaultPluginID {
			t.Fatalf("resolvePlugin(default) = %+v, %v; want the launcher's own default driver", p, err)
		}
	}
	if n := reads.Load(); n != 2 {
		t.Errorf("100 resolutions of 2 plugins read the store %d times; want 2", n)
	}
	if _, err := s.resolvePlugin(ctx, "missing"); err == nil {
		t.Error("a plugin that does not exist resolved")
	}

	// Made the default: seen once the earlier resolution is older than queueTTL.
	if _, err := db.Collection(PluginsCollection).UpdateOne(ctx, bson.D{{Key: "_id", Value: "plg-a"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "is_default", Value: true}}}}); err != nil {
		t.Fatal(err)
	}
	s.pcache.mu.Lock()
	for k, r := range s.pcache.m {
		r.at = r.at.Add(-queueTTL - time.Millisecond)
		s.pcache.m[k] = r
	}
	s.pcache.mu.Unlock()
	if p, err := s.resolvePlugin(ctx, ""); err != nil || p.ID != "plg-a" {
		t.Errorf("default after the change and queueTTL = %+v, %v; want plg-a", p, err)
	}
}
