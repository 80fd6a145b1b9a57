package up_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// sseEvent is one message of the HTTP event stream.
type sseEvent struct {
	ID, Event string
	Data      map[string]any
	Size      int // bytes of the data line
}

// openEvents connects to GET /events and returns the messages as they come.
func openEvents(t testing.TB, ctx context.Context, url, lastID string) <-chan sseEvent {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("GET %s = %d %s", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := make(chan sseEvent, 16)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var cur sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if cur.Event != "" { // an id alone is the reader's position, no event
					out <- cur
				}
				cur = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				cur.ID = line[4:]
			case strings.HasPrefix(line, "event: "):
				cur.Event = line[7:]
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(line[6:]), &cur.Data)
				cur.Size = len(line) - 6
			}
		}
	}()
	return out
}

func next(t *testing.T, ch <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatal("event stream closed")
		}
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return sseEvent{}
}

func postQueue(t *testing.T, base, name string) {
	t.Helper()
	resp, err := http.Post(base+"/api/resources/v1/queues", "application/json", bytes.NewBufferString(`{"name":"`+name+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create %s = %d", name, resp.StatusCode)
	}
}

func TestEventStreamResumesWithoutLossOrRepeat(t *testing.T) {
	sys := startSystem(t)
	base := "http://" + sys.HTTPAddr
	url := base + "/api/resources/v1/events?type=rm.queue.created"

	ctx, cancel := context.WithCancel(context.Background())
	stream := openEvents(t, ctx, url, "")
	postQueue(t, base, "a")
	postQueue(t, base, "b")
	first, second := next(t, stream), next(t, stream)
	for i, e := range []sseEvent{first, second} {
		data, _ := e.Data["data"].(map[string]any)
		if e.Event != "rm.queue.created" || e.Data["specversion"] != "1.0" || data["name"] != []string{"a", "b"}[i] {
			t.Errorf("event %d = %+v", i, e)
		}
	}
	cancel() // the client goes away

	postQueue(t, base, "c") // created while disconnected
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	resumed := openEvents(t, ctx2, url, second.ID)
	e := next(t, resumed)
	if data, _ := e.Data["data"].(map[string]any); data["name"] != "c" {
		t.Fatalf("after resuming from %s got %+v, want queue c", second.ID, e)
	}
	postQueue(t, base, "d")
	if data, _ := next(t, resumed).Data["data"].(map[string]any); data["name"] != "d" {
		t.Errorf("live event after resume: %v", data)
	}

	// Replay from the start includes the built-in queues' events too.
	ctx3, cancel3 := context.WithCancel(context.Background())
	defer cancel3()
	all := openEvents(t, ctx3, url, "0")
	var names []string
	for range 6 {
		data, _ := next(t, all).Data["data"].(map[string]any)
		names = append(names, data["name"].(string))
	}
	if got := strings.Join(names, ","); got != "simulation-controller-queue,post-controller-queue,a,b,c,d" {
		t.Errorf("replay = %s", got)
	}
}

func TestEventStreamRejectsBadFilters(t *testing.T) {
	sys := startSystem(t)
	base := "http://" + sys.HTTPAddr + "/api/resources/v1/events"
	for q, field := range map[string]string{
		"?job_id=a.>":           "job_id",
		"?type=bogus":           "type",
		"?queue_id=nope":        "queue_id",
		"?type=rm.job.running,": "type",
	} {
		resp, err := http.Get(base + q)
		if err != nil {
			t.Fatal(err)
		}
		var p struct {
			Status int                      `json:"status"`
			Errors []struct{ Field string } `json:"errors"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnprocessableEntity || len(p.Errors) == 0 || p.Errors[0].Field != field {
			t.Errorf("GET events%s = %d %+v, want 422 naming %s", q, resp.StatusCode, p, field)
		}
	}
}
