// Package mongotest owns the test helpers that give a test package a real
// MongoDB-wire server: an embedded FerretDB on a free port with its data in
// the test's temporary directory. Tests start it; they never skip for want
// of a database.
package mongotest

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
)

// Start starts FerretDB on 127.0.0.1 with a free port and tb.TempDir() as its
// data directory, and stops it when the test ends. It returns the server's
// mongodb:// URI and the server (for EnsureIDIndex or Dir).
func Start(tb testing.TB) (uri string, srv *ferretembed.Server) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := ferretembed.Start(ctx, ferretembed.Config{Addr: "127.0.0.1:0", Dir: tb.TempDir()})
	if err != nil {
		tb.Fatalf("mongotest: %v", err)
	}
	tb.Cleanup(srv.Close)
	return srv.URI(), srv
}

// Client returns a client connected to uri, disconnected when the test ends.
// Cleanups run last-in first-out, so a client made after Start disconnects
// before the server stops.
func Client(tb testing.TB, uri string) *mongo.Client {
	tb.Helper()
	return SeenClient(tb, uri, nil)
}

// SeenClient is Client whose commands mon sees (nil: none), for a test
// that checks what a component asks the store.
func SeenClient(tb testing.TB, uri string, mon *event.CommandMonitor) *mongo.Client {
	tb.Helper()
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetMonitor(mon))
	if err != nil {
		tb.Fatalf("mongotest: connect %s: %v", uri, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// A test may have disconnected the client itself.
		if err := client.Disconnect(ctx); err != nil && !errors.Is(err, mongo.ErrClientDisconnected) {
			tb.Errorf("mongotest: disconnect: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.Ping(ctx, readpref.Primary()); err != nil {
		tb.Fatalf("mongotest: ping %s: %v", uri, err)
	}
	return client
}
