package ui_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
)

// The view's job index costs an API nothing until a page needs it: jobs
// submitted to an API nobody browses start no consumer of the event
// stream; the first jobs page starts one.
func TestJobIndexStartsOnlyWithAPage(t *testing.T) {
	e := startEnv(t)
	q := e.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "lazy", "maximum_allowed_worker_instances": 10}, http.StatusCreated)
	for range 5 {
		e.submit("quiet", q["id"].(string), 1, nil)
	}
	consumers := func() int {
		t.Helper()
		s, err := e.js.Stream(context.Background(), events.StreamName)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Consumers
	}
	if n := consumers(); n != 0 {
		t.Fatalf("%d consumers of %s after submissions alone, want 0", n, events.StreamName)
	}
	e.page("/ui/jobs")
	for deadline := time.Now().Add(30 * time.Second); consumers() == 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the jobs page started no index")
		}
	}
}
