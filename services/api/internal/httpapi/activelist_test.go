package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// A page of the jobs of a status that has not ended reads the jobs the page
// takes, not every job of that status: each page read all of them, so
// paging through 20,000 pending jobs cost seconds a page and `avxrm jobs
// ls` gave up. The pages still hold every job once, in _id order.
func TestActiveJobsPageReadsOnlyItsJobs(t *testing.T) {
	e := newIndexedEnv(t)
	e.json(http.StatusCreated, http.MethodPost, "/queues", map[string]any{"name": "Q"}, nil)
	e.json(http.StatusCreated, http.MethodPost, "/applications", map[string]any{"name": "sim", "version": "1", "image": "registry.example/sim:1"}, nil)
	const n, limit = 120, 10
	for range n {
		e.json(http.StatusCreated, http.MethodPost, "/jobs", map[string]any{"queue_id": "Q", "application": map[string]any{"id": "sim:1"}, "worker_instances": 1}, nil)
	}
	// Running, as the launcher writes it: no start estimates are read for them.
	if _, err := e.db.Collection("jobs").UpdateMany(context.Background(), bson.D{{Key: "queue_name", Value: "Q"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: "running"}}}}); err != nil {
		t.Fatal(err)
	}
	seen, cursor := map[string]bool{}, ""
	last := ""
	for page := 0; ; page++ {
		var out struct {
			Items      []struct{ ID string }
			NextCursor string `json:"next_cursor"`
		}
		before := e.srv.active.DocsRead()
		e.json(http.StatusOK, http.MethodGet, fmt.Sprintf("/jobs?status=running&limit=%d&cursor=%s", limit, cursor), nil, &out)
		if read := e.srv.active.DocsRead() - before; read > 2*(limit+1) {
			t.Fatalf("page %d of %d running jobs read %d jobs, want at most %d", page, n, read, 2*(limit+1))
		}
		for _, it := range out.Items {
			if seen[it.ID] || it.ID <= last {
				t.Fatalf("page %d: %s again or out of order", page, it.ID)
			}
			seen[it.ID], last = true, it.ID
		}
		if cursor = out.NextCursor; cursor == "" {
			break
		}
	}
	if len(seen) != n {
		t.Errorf("the pages held %d jobs, want %d", len(seen), n)
	}
}
