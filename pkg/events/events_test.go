package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func mustEvent(t *testing.T, typ, queue, id string, data any) events.Event {
	t.Helper()
	e, err := events.New(typ, "/rm/test", queue, id, data)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	e := mustEvent(t, events.TypeJobAdmitted, "q-1", "job-1", map[string]any{"id": "job-1", "worker_instances": 8})
	m, err := events.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.Subject, "rm.events.job.q-1.job-1"; got != want {
		t.Errorf("subject = %q, want %q", got, want)
	}
	for k, want := range map[string]string{"ce-specversion": "1.0", "ce-id": e.ID, "ce-type": "rm.job.admitted",
		"ce-source": "/rm/test", "ce-subject": "job-1", "content-type": "application/json", "Nats-Msg-Id": e.ID} {
		if got := m.Header[k]; len(got) != 1 || got[0] != want {
			t.Errorf("header %s = %v, want %q", k, got, want)
		}
	}
	got, err := events.Decode(m.Header, m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(e, got); diff != "" {
		t.Errorf("Decode(Encode()) mismatch (-want +got):\n%s", diff)
	}
	sj, err := got.StructuredJSON()
	if err != nil {
		t.Fatal(err)
	}
	var structured map[string]any
	if err := json.Unmarshal(sj, &structured); err != nil {
		t.Fatal(err)
	}
	if structured["specversion"] != "1.0" || structured["id"] != e.ID || structured["subject"] != "job-1" || structured["queueid"] != "q-1" {
		t.Errorf("structured JSON = %s", sj)
	}
	if data, _ := structured["data"].(map[string]any); data["id"] != "job-1" {
		t.Errorf("structured data = %v", structured["data"])
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	good, err := events.Encode(mustEvent(t, events.TypeQueueCreated, "q-1", "q-1", map[string]string{"id": "q-1"}))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(h nats.Header) ([]byte, nats.Header){
		"no spec version": func(h nats.Header) ([]byte, nats.Header) { delete(h, "ce-specversion"); return good.Data, h },
		"old spec":        func(h nats.Header) ([]byte, nats.Header) { h["ce-specversion"] = []string{"0.3"}; return good.Data, h },
		"bad time":        func(h nats.Header) ([]byte, nats.Header) { h["ce-time"] = []string{"yesterday"}; return good.Data, h },
		"no id":           func(h nats.Header) ([]byte, nats.Header) { delete(h, "ce-id"); return good.Data, h },
		"foreign type":    func(h nats.Header) ([]byte, nats.Header) { h["ce-type"] = []string{"com.example"}; return good.Data, h },
		"not json":        func(h nats.Header) ([]byte, nats.Header) { return []byte("{nope"), h },
		"xml": func(h nats.Header) ([]byte, nats.Header) {
			h["content-type"] = []string{"text/xml"}
			return good.Data, h
		},
		"subject wildcard": func(h nats.Header) ([]byte, nats.Header) {
			h["ce-subject"] = []string{"a.>"}
			return good.Data, h
		},
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			h := nats.Header{}
			for k, v := range good.Header {
				h[k] = append([]string(nil), v...)
			}
			data, h := mutate(h)
			if _, err := events.Decode(h, data); !errors.Is(err, events.ErrMalformed) {
				t.Errorf("Decode() error = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestNewIDSortsByTime(t *testing.T) {
	var ids []string
	seen := map[string]bool{}
	for i := range 5000 {
		id := events.NewID("q")
		if seen[id] {
			t.Fatalf("duplicate id %s at %d", id, i)
		}
		seen[id] = true
		if !strings.HasPrefix(id, "q-") || len(id) != 28 {
			t.Fatalf("id %q has the wrong shape", id)
		}
		ids = append(ids, id)
	}
	if !sort.StringsAreSorted(ids) {
		t.Error("ids generated in sequence do not sort in sequence")
	}
}

// IDAt(t) parts the ids made before t from those made at or after it, as
// the API's job retention stops its pass over ended jobs there.
func TestIDAtPartsIDsByTime(t *testing.T) {
	before := events.NewID("job")
	time.Sleep(2 * time.Millisecond)
	at := time.Now()
	time.Sleep(2 * time.Millisecond)
	after := events.NewID("job")
	bound := events.IDAt("job", at)
	if !(before < bound && bound < after) {
		t.Errorf("IDAt = %s, want it between %s (made before) and %s (made after)", bound, before, after)
	}
	if got := events.IDAt("job", time.UnixMilli(0)); got != "job-00000000000000000000000000" {
		t.Errorf("IDAt(epoch) = %s", got)
	}
}

func TestPublishDedupesByEventID(t *testing.T) {
	js := eventstest.Run(t)
	pub := events.NewPublisher(js)
	ctx := context.Background()
	e := mustEvent(t, events.TypeQueueCreated, "q-1", "q-1", map[string]string{"id": "q-1"})
	for range 3 {
		if err := pub.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	other := mustEvent(t, events.TypeQueueUpdated, "q-1", "q-1", map[string]string{"id": "q-1"})
	if err := pub.Publish(ctx, other); err != nil {
		t.Fatal(err)
	}
	got := eventstest.ReadAll(t, js, "")
	if len(got) != 2 || got[0].ID != e.ID || got[1].ID != other.ID {
		t.Fatalf("stream holds %d events %v, want the two distinct ones once each", len(got), got)
	}
	info, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if d := info.CachedInfo().Config.Duplicates; d < 2*time.Minute {
		t.Errorf("duplicate window %v, want at least 2m", d)
	}
	if s := info.CachedInfo().Config.Storage; s != jetstream.FileStorage {
		t.Errorf("storage %v, want file", s)
	}
}

// outcome records what a handler saw, per event id.
type outcome struct {
	mu    sync.Mutex
	calls map[string]int
}

func (o *outcome) inc(id string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls[id]++
	return o.calls[id]
}

func (o *outcome) get(id string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.calls[id]
}

func TestConsumeAckPolicy(t *testing.T) {
	srv := eventstest.RunServer(t)
	nc, js := eventstest.Connect(t, srv)
	pub := events.NewPublisher(js)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	ok := mustEvent(t, events.TypeJobSubmitted, "q", "job-ok", map[string]string{"kind": "ok"})
	transient := mustEvent(t, events.TypeJobSubmitted, "q", "job-transient", map[string]string{"kind": "transient"})
	permanent := mustEvent(t, events.TypeJobSubmitted, "q", "job-permanent", map[string]string{"kind": "permanent"})
	forever := mustEvent(t, events.TypeJobSubmitted, "q", "job-forever", map[string]string{"kind": "forever"})
	for _, e := range []events.Event{ok, transient, permanent, forever} {
		if err := pub.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	// A message that is not a CloudEvent at all, on an event subject.
	if _, err := js.Publish(ctx, "rm.events.job.q.job-garbage", []byte("garbage")); err != nil {
		t.Fatal(err)
	}

	calls := &outcome{calls: map[string]int{}}
	h := func(_ context.Context, e events.Event) error {
		n := calls.inc(e.ResourceID)
		switch e.ResourceID {
		case "job-transient":
			if n < 3 {
				return errors.New("store unavailable")
			}
		case "job-permanent":
			return events.Permanent(fmt.Errorf("job references unknown queue"))
		case "job-forever":
			return errors.New("always failing")
		}
		return nil
	}
	spec := events.ConsumerSpec{
		Durable: "test", Filters: []string{events.FilterSubject(events.KindJob, "", "")},
		MaxDeliver: 4, Backoff: func(int) time.Duration { return 10 * time.Millisecond },
		MaxAckPending: 8,
	}
	done := make(chan error, 1)
	go func() { done <- events.Consume(ctx, js, spec, h, nil) }()

	dl := deadLetters(t, nc, 3)
	want := map[string]int{"job-ok": 1, "job-transient": 3, "job-permanent": 1, "job-forever": 4}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := map[string]int{}
		for id := range want {
			got[id] = calls.get(id)
		}
		if cmp.Equal(want, got) && consumerSettled(t, js) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("handler calls mismatch (-want +got):\n%s", cmp.Diff(want, got))
		}
		time.Sleep(20 * time.Millisecond)
	}
	reasons := map[string]string{}
	for _, m := range dl() {
		reasons[m.Header.Get(events.HeaderDeadSubject)] = m.Header.Get(events.HeaderDeadReason)
	}
	for subj, frag := range map[string]string{
		"rm.events.job.q.job-permanent": "unknown queue",
		"rm.events.job.q.job-forever":   "always failing",
		"rm.events.job.q.job-garbage":   "malformed",
	} {
		if !strings.Contains(reasons[subj], frag) {
			t.Errorf("dead letter for %s: reason %q, want it to mention %q (all: %v)", subj, reasons[subj], frag, reasons)
		}
	}
	if len(reasons) != 3 {
		t.Errorf("dead letters %v, want exactly 3", reasons)
	}
	// Give a wrong redelivery a chance to show, then check nothing more arrived.
	time.Sleep(200 * time.Millisecond)
	if n := calls.get("job-ok"); n != 1 {
		t.Errorf("acknowledged event handled %d times", n)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Consume returned %v after cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Consume did not return after cancel")
	}
}

// consumerSettled reports whether the test consumer has nothing in flight or pending.
func consumerSettled(t *testing.T, js jetstream.JetStream) bool {
	t.Helper()
	c, err := js.Consumer(context.Background(), events.StreamName, "test")
	if err != nil {
		return false
	}
	info, err := c.Info(context.Background())
	return err == nil && info.NumAckPending == 0 && info.NumPending == 0
}

// deadLetters collects dead-lettered messages; the returned func waits for n.
func deadLetters(t *testing.T, nc *nats.Conn, n int) func() []*nats.Msg {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return func() []*nats.Msg {
		var out []*nats.Msg
		deadline := time.Now().Add(10 * time.Second)
		for len(out) < n && time.Now().Before(deadline) {
			out = out[:0]
			s, err := js.Stream(context.Background(), events.DeadLetterStream)
			if err != nil {
				t.Fatal(err)
			}
			info, _ := s.Info(context.Background())
			for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
				raw, err := s.GetMsg(context.Background(), seq)
				if err != nil {
					continue
				}
				out = append(out, &nats.Msg{Subject: raw.Subject, Header: raw.Header, Data: raw.Data})
			}
			time.Sleep(20 * time.Millisecond)
		}
		return out
	}
}
