package ferretembed_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
)

// A client that dials the server in memory goes through the proxy like one
// on its socket: its conditional writes are the proxy's direct writes, its
// finds by _id the proxy's, and it sees what a client on the socket wrote.
// Once the server closes, its operations fail instead of hanging.
func TestDialInMemory(t *testing.T) {
	ctx := testContext(t)
	uri, srv := mongotest.Start(t) // its cleanup closes srv again, which does nothing
	if err := srv.EnsureIDIndex(ctx, "app", "jobs"); err != nil {
		t.Fatalf("EnsureIDIndex: %v", err)
	}
	overSocket := mongotest.Client(t, uri).Database("app").Collection("jobs")

	mem, err := mongo.Connect(options.Client().ApplyURI(uri).SetDialer(srv).
		SetServerSelectionTimeout(2 * time.Second).SetTimeout(5 * time.Second))
	if err != nil {
		t.Fatalf("connect in memory: %v", err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = mem.Disconnect(c)
	})
	inMemory := mem.Database("app").Collection("jobs")

	if _, err := overSocket.InsertOne(ctx, bson.D{{Key: "_id", Value: "j1"}, {Key: "status", Value: "pending"}, {Key: "v", Value: int32(1)}}); err != nil {
		t.Fatalf("insert over the socket: %v", err)
	}
	before := srv.WriteStats()
	res, err := inMemory.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "j1"}, {Key: "v", Value: int32(1)}},
		bson.D{{Key: "_id", Value: "j1"}, {Key: "status", Value: "admitted"}, {Key: "v", Value: int32(2)}})
	if err != nil || res.MatchedCount != 1 || res.ModifiedCount != 1 {
		t.Fatalf("conditional replace in memory = %+v, %v; want 1 matched and modified", res, err)
	}
	res, err = inMemory.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "j1"}, {Key: "v", Value: int32(1)}},
		bson.D{{Key: "_id", Value: "j1"}, {Key: "status", Value: "lost"}, {Key: "v", Value: int32(2)}})
	if err != nil || res.MatchedCount != 0 {
		t.Fatalf("stale conditional replace in memory = %+v, %v; want none matched", res, err)
	}
	var got struct {
		Status string `bson:"status"`
		V      int32  `bson:"v"`
	}
	if err := inMemory.FindOne(ctx, bson.D{{Key: "_id", Value: "j1"}}).Decode(&got); err != nil || got.Status != "admitted" || got.V != 2 {
		t.Fatalf("find in memory = %+v, %v; want admitted, v 2", got, err)
	}
	after := srv.WriteStats()
	if after.Commands-before.Commands != 2 || after.DirectWrites-before.DirectWrites != 1 || after.FastReplied-before.FastReplied != 2 ||
		after.DirectFinds-before.DirectFinds < 1 {
		t.Errorf("proxy counters over the in-memory writes and find: %+v then %+v; want 2 commands answered by the proxy, 1 of them a direct write, and a direct find", before, after)
	}
	if err := overSocket.FindOne(ctx, bson.D{{Key: "_id", Value: "j1"}}).Decode(&got); err != nil || got.Status != "admitted" {
		t.Fatalf("find over the socket after the in-memory write = %+v, %v; want admitted", got, err)
	}

	srv.Close()
	done := make(chan error, 1)
	go func() {
		_, err := inMemory.InsertOne(context.Background(), bson.D{{Key: "_id", Value: "j2"}})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("insert in memory after Close succeeded")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("insert in memory after Close still running after 15 s")
	}
	if _, err := srv.DialContext(ctx, "tcp", "ignored:1"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("DialContext after Close: %v, want net.ErrClosed", err)
	}
}
