package ferretembed_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
)

// TestWireLookupCommands: the proxy answers its own commands (the wire
// form of MatchingIDs); bad input is a BadValue naming the problem, a
// database or collection that does not exist matches nothing, and FerretDB
// itself does not know the commands (CommandNotFound).
func TestWireLookupCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	uri, srv := mongotest.Start(t)
	db := mongotest.Client(t, uri).Database("app")
	if _, err := db.Collection("jobs").InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "status", Value: "pending"}}); err != nil {
		t.Fatal(err)
	}
	where := bson.A{bson.D{{Key: "path", Value: "status"}, {Key: "in", Value: bson.A{"pending"}}}}
	var reply struct {
		IDs []string `bson:"ids"`
	}
	cmd := bson.D{{Key: "avxrmMatchingIDs", Value: "jobs"}, {Key: "where", Value: where}}
	if err := db.RunCommand(ctx, cmd).Decode(&reply); err != nil || len(reply.IDs) != 1 || reply.IDs[0] != "a" {
		t.Errorf("matching ids = %v, %v; want [a]", reply.IDs, err)
	}
	reply.IDs = nil
	if err := db.Client().Database("none").RunCommand(ctx, cmd).Decode(&reply); err != nil || len(reply.IDs) != 0 {
		t.Errorf("in a database that does not exist: %v, %v; want none", reply.IDs, err)
	}
	// In _id order, from the _id index.
	if _, err := db.Collection("jobs").InsertOne(ctx, bson.D{{Key: "_id", Value: "b"}, {Key: "status", Value: "failed"}}); err != nil {
		t.Fatal(err)
	}
	if err := srv.EnsureIDIndex(ctx, "app", "jobs"); err != nil {
		t.Fatal(err)
	}
	for after, want := range map[string][]string{"": {"a", "b"}, "a": {"b"}, "b": {}} {
		reply.IDs = nil
		cmd := bson.D{{Key: "avxrmIDsAfter", Value: "jobs"}, {Key: "after", Value: after}, {Key: "limit", Value: 5}}
		if err := db.RunCommand(ctx, cmd).Decode(&reply); err != nil || !slices.Equal(reply.IDs, want) {
			t.Errorf("ids after %q = %v, %v; want %v", after, reply.IDs, err, want)
		}
	}
	for before, want := range map[string][]string{"": {"b", "a"}, "b": {"a"}, "a": {}} {
		reply.IDs = nil
		cmd := bson.D{{Key: "avxrmIDsBefore", Value: "jobs"}, {Key: "before", Value: before}, {Key: "limit", Value: 5}}
		if err := db.RunCommand(ctx, cmd).Decode(&reply); err != nil || !slices.Equal(reply.IDs, want) {
			t.Errorf("ids before %q = %v, %v; want %v", before, reply.IDs, err, want)
		}
	}
	// In _id order among those of a status, from the index of the
	// status and _id.
	failed := bson.A{bson.D{{Key: "path", Value: "status"}, {Key: "in", Value: bson.A{"failed"}},
		{Key: "partial", Value: bson.A{"succeeded", "failed", "cancelled"}}}}
	for after, want := range map[string][]string{"": {"b"}, "a": {"b"}, "b": {}} {
		reply.IDs = nil
		cmd := bson.D{{Key: "avxrmMatchingIDsAfter", Value: "jobs"}, {Key: "where", Value: failed}, {Key: "after", Value: after}, {Key: "limit", Value: 5}}
		if err := db.RunCommand(ctx, cmd).Decode(&reply); err != nil || !slices.Equal(reply.IDs, want) {
			t.Errorf("failed ids after %q = %v, %v; want %v", after, reply.IDs, err, want)
		}
	}
	for name, bad := range map[string]bson.D{
		"ids after, limit 0":           {{Key: "avxrmIDsAfter", Value: "jobs"}, {Key: "after", Value: "a"}},
		"matching ids after, limit 0":  {{Key: "avxrmMatchingIDsAfter", Value: "jobs"}, {Key: "where", Value: failed}},
		"matching ids after, no where": {{Key: "avxrmMatchingIDsAfter", Value: "jobs"}, {Key: "limit", Value: 5}},
		"matching ids after, a value the partial index leaves out": {{Key: "avxrmMatchingIDsAfter", Value: "jobs"}, {Key: "limit", Value: 5},
			{Key: "where", Value: bson.A{bson.D{{Key: "path", Value: "status"}, {Key: "in", Value: bson.A{"pending"}}, {Key: "partial", Value: bson.A{"failed"}}}}}},
		"ids before, limit 0": {{Key: "avxrmIDsBefore", Value: "jobs"}, {Key: "before", Value: "a"}},
		"no where":            {{Key: "avxrmMatchingIDs", Value: "jobs"}},
		"bad path":            {{Key: "avxrmMatchingIDs", Value: "jobs"}, {Key: "where", Value: bson.A{bson.D{{Key: "path", Value: "a'b"}, {Key: "in", Value: bson.A{"x"}}}}}},
		"no coll name":        {{Key: "avxrmMatchingIDs", Value: 1}, {Key: "where", Value: where}},
		"limit 0":             {{Key: "avxrmLatestIDs", Value: "jobs"}, {Key: "where", Value: where}, {Key: "orderBy", Value: "t"}},
	} {
		var ce mongo.CommandError
		if err := db.RunCommand(ctx, bad).Err(); !errors.As(err, &ce) || ce.Code != 2 {
			t.Errorf("%s: %v, want BadValue (2)", name, err)
		}
	}
	direct := mongotest.Client(t, srv.InternalURI()).Database("app")
	var ce mongo.CommandError
	if err := direct.RunCommand(ctx, cmd).Err(); !errors.As(err, &ce) || ce.Code != 59 {
		t.Errorf("FerretDB itself: %v, want CommandNotFound (59)", err)
	}
}
