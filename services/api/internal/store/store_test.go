package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/services/api/internal/store"
)

// indexNames lists the index names of coll.
func indexNames(ctx context.Context, t *testing.T, coll *mongo.Collection) []string {
	t.Helper()
	specs, err := coll.Indexes().ListSpecifications(ctx)
	if err != nil {
		t.Fatalf("list indexes of %s: %v", coll.Name(), err)
	}
	var names []string
	for _, s := range specs {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	return names
}

// TestEnsureIndexesUniqueOnly: on the embedded store the API makes only the
// indexes that enforce uniqueness, drops the read-only ones an earlier start
// made, and the unique ones still refuse a duplicate. A full start (MongoDB)
// makes the others and drops the stale ones.
func TestEnsureIndexesUniqueOnly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	uri, _ := mongotest.Start(t)
	st := &store.Store{DB: mongotest.Client(t, uri).Database("rm")}

	// An earlier start that made every index (or a MongoDB), after one
	// that made the jobs' index on status alone, which the one on status
	// and _id replaced.
	jobs, queues := st.DB.Collection(store.Jobs), st.DB.Collection(store.Queues)
	if _, err := jobs.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "status", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureIndexes(ctx, false); err != nil {
		t.Fatal(err)
	}
	if got := indexNames(ctx, t, jobs); !slices.Contains(got, "status_1__id_1") || !slices.Contains(got, "queue_id_1_status_1") || slices.Contains(got, "status_1") {
		t.Fatalf("jobs indexes after a full start: %v, want status_1__id_1 and queue_id_1_status_1 among them, and status_1 dropped", got)
	}

	// Twice: the second finds nothing left to drop.
	for range 2 {
		if err := st.EnsureIndexes(ctx, true); err != nil {
			t.Fatal(err)
		}
	}
	if got := indexNames(ctx, t, jobs); !slices.Equal(got, []string{"_id_"}) {
		t.Errorf("jobs indexes: %v, want only _id_", got)
	}
	if got := indexNames(ctx, t, queues); !slices.Equal(got, []string{"_id_", "name_1"}) {
		t.Errorf("queues indexes: %v, want _id_ and the unique name_1", got)
	}
	if got := indexNames(ctx, t, st.DB.Collection(store.IdempotencyKeys)); !slices.Equal(got, []string{"_id_"}) {
		t.Errorf("idempotency key indexes: %v, want only _id_", got)
	}

	if _, err := queues.InsertOne(ctx, bson.D{{Key: "_id", Value: "q-1"}, {Key: "name", Value: "sim"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := queues.InsertOne(ctx, bson.D{{Key: "_id", Value: "q-2"}, {Key: "name", Value: "sim"}}); !mongo.IsDuplicateKeyError(err) {
		t.Errorf("second queue named sim: %v, want a duplicate key error", err)
	}
}
