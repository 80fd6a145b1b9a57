package ferretembed_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
)

// TestBusyStoreRefusesReadsItCannotStart: with every read slot taken (as by
// reads still running for clients that left), a find is not queued past
// its client's deadline: it is answered MaxTimeMSExpired after half its
// time limit and never reaches FerretDB; a find that waits while a slot
// frees runs; light commands and writes are not held back.
func TestBusyStoreRefusesReadsItCannotStart(t *testing.T) {
	ctx := testContext(t)
	srv, err := ferretembed.Start(ctx, ferretembed.Config{Addr: "127.0.0.1:0", Dir: filepath.Join(t.TempDir(), "data")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	client, err := mongo.Connect(options.Client().ApplyURI(srv.URI()).SetRetryReads(false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	coll := client.Database("busy").Collection("c")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}

	release := srv.HoldReadSlots(ferretembed.ReadSlots)
	before := srv.ReadStats()
	fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	start := time.Now()
	err = coll.FindOne(fctx, bson.D{}).Err()
	took := time.Since(start)
	cancel()
	var se mongo.ServerError
	if !errors.As(err, &se) || !se.HasErrorCode(50) {
		t.Fatalf("find with every slot taken: %v, want the store's MaxTimeMSExpired", err)
	}
	if took > 1900*time.Millisecond {
		t.Errorf("the refusal came after %v, want about half the 2 s limit", took)
	}
	after := srv.ReadStats()
	if after.Refused != before.Refused+1 || after.Started != before.Started {
		t.Errorf("read stats %+v then %+v: want one refused, none started", before, after)
	}

	// Writes and light commands pass while every slot is taken.
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}}); err != nil {
		t.Fatalf("insert with every read slot taken: %v", err)
	}
	if err := client.Ping(ctx, nil); err != nil {
		t.Fatalf("ping with every read slot taken: %v", err)
	}
	// So does a read of one document by a string _id (FerretDB looks it
	// up by index), also with conditions the proxy evaluates beside it
	// (it reads the row by index itself, finddirect.go); a filter
	// FerretDB evaluates still waits for a slot.
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "s"}, {Key: "n", Value: 3}}); err != nil {
		t.Fatal(err)
	}
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "s"}}).Err(); err != nil {
		t.Fatalf("find by _id with every read slot taken: %v", err)
	}
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "s"}, {Key: "n", Value: 3}}).Err(); err != nil {
		t.Fatalf("find by _id and another field with every read slot taken: %v", err)
	}
	pctx, pcancel := context.WithTimeout(ctx, time.Second)
	err = coll.FindOne(pctx, bson.D{{Key: "_id", Value: "s"}, {Key: "n", Value: bson.D{{Key: "$gt", Value: 2}}}}).Err()
	pcancel()
	if !errors.As(err, &se) || !se.HasErrorCode(50) {
		t.Fatalf("find by _id and a range with every slot taken: %v, want MaxTimeMSExpired", err)
	}

	// A read that can wait runs once a slot frees.
	go func() { time.Sleep(300 * time.Millisecond); release() }()
	fctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, err := coll.CountDocuments(fctx, bson.D{})
	if err != nil || n != 3 {
		t.Fatalf("count once a slot freed: %d, %v", n, err)
	}
}
