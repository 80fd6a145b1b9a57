package ferretembed_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// groupRig is a collection of n documents {_id: gN, version: 1} whose
// version-conditioned replacements the proxy writes in SQL.
type groupRig struct {
	*replaceRig
	ids []string
}

func newGroupRig(t *testing.T, n int) *groupRig {
	t.Helper()
	r := &groupRig{replaceRig: newReplaceRig(t)}
	for i := range n {
		id := fmt.Sprintf("g%d", i)
		if _, err := r.direct.InsertOne(context.Background(), bson.D{{Key: "_id", Value: id}, {Key: "version", Value: 1}}); err != nil {
			t.Fatal(err)
		}
		r.ids = append(r.ids, id)
	}
	return r
}

// replace sets id's version from 1 to 2, as the services write a job.
func (r *groupRig) replace(ctx context.Context, id string) (*mongo.UpdateResult, error) {
	return r.direct.ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "version", Value: 1}},
		bson.D{{Key: "version", Value: 2}, {Key: "by", Value: "direct"}})
}

// storedVersion reads id's version from the SQLite file on a connection of
// the test's own: what is committed.
func (r *groupRig) storedVersion(t *testing.T, id string) int {
	t.Helper()
	var v int
	q := fmt.Sprintf(`SELECT _ferretdb_sjson->>'$.version' FROM %q WHERE _ferretdb_sjson->'$._id' = json_quote(?)`, r.tables["direct"])
	if err := r.sdb.QueryRow(q, id).Scan(&v); err != nil {
		t.Fatalf("version of %s: %v", id, err)
	}
	return v
}

// waitFor polls cond until it holds or the test's patience ends.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestGroupCommitBatchesAndAcknowledgesOnlyDurableWrites: replacements
// from eight clients made while commits are held all run inside one
// open transaction; none is acknowledged, and none is visible to another
// connection, until that transaction commits, which one commit then does
// for all of them.
func TestGroupCommitBatchesAndAcknowledgesOnlyDurableWrites(t *testing.T) {
	const n = 8
	r := newGroupRig(t, n)
	ctx := context.Background()
	s0 := r.srv.WriteStats()
	release := r.srv.HoldCommits()
	var returned sync.WaitGroup
	results := make([]*mongo.UpdateResult, n)
	errs := make([]error, n)
	acked := make(chan int, n)
	for i, id := range r.ids {
		returned.Add(1)
		go func() {
			defer returned.Done()
			results[i], errs[i] = r.replace(ctx, id)
			acked <- i
		}()
	}
	waitFor(t, "every replacement to run in SQL", func() bool {
		return r.srv.WriteStats().DirectWrites-s0.DirectWrites == n
	})
	select {
	case i := <-acked:
		t.Fatalf("replacement %d was answered (%v, %v) before its transaction committed", i, results[i], errs[i])
	case <-time.After(50 * time.Millisecond):
	}
	for _, id := range r.ids {
		if v := r.storedVersion(t, id); v != 1 {
			t.Fatalf("%s: another connection reads version %d before the commit; want 1", id, v)
		}
	}
	release()
	returned.Wait()
	for i, id := range r.ids {
		if errs[i] != nil || results[i].MatchedCount != 1 || results[i].ModifiedCount != 1 {
			t.Fatalf("replace %s: %+v, %v; want matched and modified", id, results[i], errs[i])
		}
		if v := r.storedVersion(t, id); v != 2 {
			t.Errorf("%s: version %d after the acknowledgement; want 2", id, v)
		}
	}
	s1 := r.srv.WriteStats()
	if commits := s1.DirectCommits - s0.DirectCommits; commits != 1 {
		t.Errorf("%d writes took %d commits; want 1", s1.DirectWrites-s0.DirectWrites, commits)
	}
}

// TestGroupCommitFailureIsNotAcknowledged: when the commit fails, the write
// is not acknowledged (the client sees its connection end) and not stored,
// and the next write goes through.
func TestGroupCommitFailureIsNotAcknowledged(t *testing.T) {
	r := newGroupRig(t, 2)
	ctx := context.Background()
	r.srv.FailCommits(errors.New("disk full (test)"))
	res, err := r.replace(ctx, r.ids[0])
	if err == nil {
		t.Fatalf("replace with a failing commit: %+v, no error; want an error", res)
	}
	t.Logf("the client saw: %v", err)
	r.srv.FailCommits(nil)
	if v := r.storedVersion(t, r.ids[0]); v != 1 {
		t.Fatalf("version %d after a failed commit; want 1 (nothing stored)", v)
	}
	var doc struct{ Version int }
	if err := r.direct.FindOne(ctx, bson.D{{Key: "_id", Value: r.ids[0]}}).Decode(&doc); err != nil || doc.Version != 1 {
		t.Fatalf("read through the store: %+v, %v; want version 1", doc, err)
	}
	for _, id := range r.ids {
		if res, err := r.replace(ctx, id); err != nil || res.ModifiedCount != 1 {
			t.Fatalf("replace %s after the failure: %+v, %v", id, res, err)
		}
		if v := r.storedVersion(t, id); v != 2 {
			t.Errorf("%s: version %d; want 2", id, v)
		}
	}
}

// TestWriteThroughFerretDBCommitsOpenTransaction: a write FerretDB makes
// (an update operator, outside the direct path) commits the direct writes'
// open transaction before it runs, so it neither waits behind SQLite's
// write lock nor overtakes them; the direct write it committed is then
// acknowledged although commits are held.
func TestWriteThroughFerretDBCommitsOpenTransaction(t *testing.T) {
	r := newGroupRig(t, 2)
	ctx := context.Background()
	release := r.srv.HoldCommits()
	defer release()
	writes0 := r.srv.WriteStats().DirectWrites
	done := make(chan error, 1)
	go func() {
		_, err := r.replace(ctx, r.ids[0])
		done <- err
	}()
	waitFor(t, "the replacement to run in SQL", func() bool {
		return r.srv.WriteStats().DirectWrites > writes0
	})
	uctx, cancel := context.WithTimeout(ctx, 5*time.Second) // well under SQLite's busy timeout
	defer cancel()
	res, err := r.direct.UpdateOne(uctx, bson.D{{Key: "_id", Value: r.ids[1]}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "version", Value: 1}}}})
	if err != nil || res.ModifiedCount != 1 {
		t.Fatalf("update through FerretDB with a transaction open: %+v, %v", res, err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the direct replacement: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the direct replacement was not acknowledged after FerretDB's write committed it")
	}
	if v := r.storedVersion(t, r.ids[0]); v != 2 {
		t.Errorf("%s: version %d; want 2", r.ids[0], v)
	}
	if v := r.storedVersion(t, r.ids[1]); v != 2 {
		t.Errorf("%s: version %d; want 2", r.ids[1], v)
	}
}
