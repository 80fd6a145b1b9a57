package httpapi

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// PrepareIndexes makes, before the API serves, every index its reads by
// index use on the embedded store but a label's: the lists of an ended
// status, an owner, a queue, a job's artifacts and exports, the cancelled
// arrays, the idempotency keys. Those reads then make none; made by the
// first of them on a big store, a build stops every write for seconds.
func TestPrepareIndexesMakesWhatTheReadsUse(t *testing.T) {
	e := newIndexedEnv(t, artifactOptions)
	ctx := context.Background()
	indexes := func() []string {
		t.Helper()
		names, err := e.ferret.FieldIndexes(ctx, e.db.Name())
		if err != nil {
			t.Fatal(err)
		}
		return names
	}
	e.json(http.StatusCreated, http.MethodPost, "/queues", map[string]any{"name": "Q"}, nil)
	job := e.job()
	if a := e.put("/jobs/"+job+"/artifacts/scenarios/s-1/a.xosc", []byte("x")); a.status != http.StatusCreated {
		t.Fatalf("upload = %s", a)
	}
	before := indexes()
	if err := e.srv.PrepareIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	prepared := indexes()
	for _, coll := range []string{"jobs", "artifacts", "scenario_exports", "job_arrays", "idempotency_keys"} {
		if !slices.ContainsFunc(prepared, func(n string) bool { return strings.Contains(n, "_"+coll+"_") && !slices.Contains(before, n) }) {
			t.Errorf("PrepareIndexes made no index of %s (%v)", coll, prepared)
		}
	}
	for _, q := range []string{"status=succeeded", "status=failed&owner=alice", "owner=bob", "queue_id=Q", "queue_id=Q&status=cancelled"} {
		e.json(http.StatusOK, http.MethodGet, "/jobs?"+q, nil, nil)
	}
	e.json(http.StatusOK, http.MethodGet, "/jobs/"+job+"/artifacts?limit=1", nil, nil)
	if a := e.do(http.MethodPost, "/jobs/"+job+"/scenario-exports", strings.NewReader(`{"samples": ["s-9"]}`), "Content-Type", "application/json"); a.status != http.StatusUnprocessableEntity {
		t.Errorf("export of an unknown sample = %s, want 422", a)
	}
	if _, err := e.srv.sweepExpiredKeys(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.sweepArrayCancels(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.removeJobArtifacts(ctx, job); err != nil {
		t.Fatal(err)
	}
	if after := indexes(); !slices.Equal(after, prepared) {
		t.Errorf("the reads made indexes PrepareIndexes had not:\n prepared %v\n after    %v", prepared, after)
	}
}
