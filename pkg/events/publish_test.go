package events_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
)

// While the connection to NATS is lost, a publication waits at most
// events.DisconnectedWait for its acknowledgement (not a JetStream
// request's 5 s, which an API request's answer waited for) and says why it
// failed; nats.go sends the messages once NATS is back, and the stream
// stores them, so the outbox's relay only publishes them again.
func TestPublishWhileNATSIsLost(t *testing.T) {
	s := eventstest.RunRestartable(t)
	nc, js := eventstest.Connect(t, s.Server) // it reconnects, every 2 s
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s.Stop()
	for nc.IsConnected() {
		time.Sleep(10 * time.Millisecond)
	}

	p := events.NewPublisher(js)
	// A caller's deadline far beyond the wait (the outbox gives 30 s).
	pctx, pcancel := context.WithTimeout(ctx, 20*time.Second)
	defer pcancel()
	one := mustEvent(t, events.TypeQueueCreated, "q-1", "q-1", map[string]any{"id": "q-1"})
	two := mustEvent(t, events.TypeQueueUpdated, "q-1", "q-1", map[string]any{"id": "q-1"})
	if err := p.Publish(pctx, one); err == nil || !strings.Contains(err.Error(), "NATS is not connected") {
		t.Errorf("Publish while NATS is lost: %v, want an error saying so", err)
	}
	if err := p.PublishBatch(pctx, []events.Event{two}); err == nil || !strings.Contains(err.Error(), "NATS is not connected") {
		t.Errorf("PublishBatch while NATS is lost: %v, want an error saying so", err)
	}

	s.Start()
	for !nc.IsConnected() {
		if ctx.Err() != nil {
			t.Fatal("not connected again within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		var got []string
		for _, e := range eventstest.ReadAll(t, js, "") {
			got = append(got, e.ID)
		}
		if strings.Contains(strings.Join(got, " "), one.ID) && strings.Contains(strings.Join(got, " "), two.ID) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the stream holds %v, want the events published while NATS was lost (%s, %s)", got, one.ID, two.ID)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
