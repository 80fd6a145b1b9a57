package up_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/up"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
)

// startSystem runs the all-in-one on free ports with its data in a temp dir.
func startSystem(t *testing.T) *up.System { t.Helper(); return startSystemWith(t) }

// startSystemWith is startSystem with more flags.
func startSystemWith(t *testing.T, flags ...string) *up.System {
	t.Helper()
	cfg, err := up.Load(append([]string{"--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:0",
		"--mongo-addr", "127.0.0.1:0", "--outbox-interval", "200ms"}, flags...), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	sys, err := up.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sys.Stop()
		if err := sys.Wait(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return sys
}

func TestQueueCreatedEventEndToEnd(t *testing.T) {
	sys := startSystem(t)
	base := "http://" + sys.HTTPAddr

	// Readiness follows once the scheduler leads and every consumer is attached.
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %d %s", resp.StatusCode, raw)
		}
		time.Sleep(100 * time.Millisecond)
	}

	body := `{"name":"Default","description":"Test queue","maximum_allowed_worker_instances":10}`
	resp, err := http.Post(base+"/api/resources/v1/queues", "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /queues = %d %s", resp.StatusCode, raw)
	}
	var created events.Queue
	if err := json.Unmarshal(raw, &created); err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("Location") != "/api/resources/v1/queues/"+created.ID || resp.Header.Get("ETag") != `"1"` {
		t.Errorf("Location %q ETag %q", resp.Header.Get("Location"), resp.Header.Get("ETag"))
	}

	var got []events.Event
	deadline = time.Now().Add(10 * time.Second)
	for len(got) == 0 && time.Now().Before(deadline) {
		got = eventstest.ReadAll(t, sys.JS, events.Subject(events.KindQueue, created.ID, created.ID))
		time.Sleep(50 * time.Millisecond)
	}
	if len(got) != 1 {
		t.Fatalf("events for the queue: %d, want 1", len(got))
	}
	e := got[0]
	if e.Type != events.TypeQueueCreated || e.ResourceID != created.ID || e.QueueID != created.ID || e.Source != "/rm/api" {
		t.Errorf("event attributes: %+v", e)
	}
	var data events.Queue
	if err := e.DecodeData(&data); err != nil {
		t.Fatal(err)
	}
	if data.Name != "Default" || data.ID != created.ID || *data.MaximumAllowedWorkerInstances != 10 || data.Version != 1 {
		t.Errorf("event data %+v", data)
	}
	// The event carries the queue exactly as the API returned it.
	if !jsonEqual(t, e.Data, raw) {
		t.Errorf("event data %s\nAPI response %s", e.Data, raw)
	}

	// The built-in queues exist from the first start.
	for _, name := range []string{events.ControllerQueue, events.PostControllerQueue} {
		resp, err := http.Get(base + "/api/resources/v1/queues/" + name)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET built-in %s = %d", name, resp.StatusCode)
		}
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(x) == fmt.Sprint(y)
}
