package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// The readers of GET /events share one consumer of the event stream per API
// process (eventHub): it decodes each event once and hands it to every
// reader whose filter it matches, and keeps the last hubRing events so that
// a reader resuming after one of them needs no consumer of its own. Only a
// reader resuming from before those (a job's events from the start, as
// `GET /events?job_id=` with Last-Event-ID 0 asks) replays the stream with a consumer of its own, and
// only until it reaches what the hub holds; catchUpMax of them at once. A
// consumer per reader hit NATS's limit of 1,000 consumers a stream at about
// 995 open streams (the services hold the rest): every further GET /events
// was a 500.
const (
	hubRing      = 4096        // events kept for readers that resume
	hubSubBuffer = 1024        // events a reader may fall behind before it is cut off (8 KiB a reader)
	hubIdle      = time.Minute // the hub stops this long after its last reader left
	catchUpMax   = 256         // readers replaying with a consumer of their own at once
)

// hubEvent is one event of the stream, decoded once for every reader.
type hubEvent struct {
	seq     uint64
	subject string
	ev      events.Event
	job     string // the job it is about (jobOf)
	data    []byte // the CloudEvent in structured-mode JSON
}

// jobOf is the job an event is about: a job event's own, an export's
// (its data.job_id); "" for the other kinds.
func jobOf(e events.Event) string {
	switch e.Kind() {
	case events.KindJob:
		return e.ResourceID
	case events.KindExport:
		var x struct {
			JobID string `json:"job_id"`
		}
		_ = json.Unmarshal(e.Data, &x)
		return x.JobID
	}
	return ""
}

// hubSub is one reader: the events matching its subject filters, in stream
// order. The hub closes ch when the reader falls hubSubBuffer events behind
// (it reconnects with Last-Event-ID and resumes) or when the hub stops.
type hubSub struct {
	filters []string
	ch      chan *hubEvent
}

type eventHub struct {
	js  jetstream.JetStream
	log *slog.Logger
	// catchUp bounds the readers replaying with a consumer of their own.
	catchUp chan struct{}

	mu      sync.Mutex
	running bool
	gen     int         // counts the starts: a stopped hub's consumer is ignored
	stop    func()      // stops the running hub's consumer
	from    uint64      // every event from this sequence on is in ring or still to come
	last    uint64      // the last sequence the hub took (from-1 before any)
	ring    []*hubEvent // the last events, oldest first
	subs    map[*hubSub]struct{}
	idle    *time.Timer
}

func newEventHub(js jetstream.JetStream, log *slog.Logger) *eventHub {
	return &eventHub{js: js, log: log, catchUp: make(chan struct{}, catchUpMax), subs: map[*hubSub]struct{}{}}
}

// subscribe registers a reader of the events matching filters after
// sequence after (nil: only the events from now on). It returns the reader,
// the ring's events after after up to where the reader's channel starts
// (sent first), and upTo, the last sequence the channel will not carry: the
// events from after+1 to upTo are backlog when covered, else the caller
// must replay them from the stream.
func (h *eventHub) subscribe(ctx context.Context, filters []string, after *uint64) (sub *hubSub, backlog []*hubEvent, upTo uint64, covered bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.running {
		if err := h.start(ctx); err != nil {
			return nil, nil, 0, false, err
		}
	}
	if h.idle != nil {
		h.idle.Stop()
		h.idle = nil
	}
	sub = &hubSub{filters: filters, ch: make(chan *hubEvent, hubSubBuffer)}
	h.subs[sub] = struct{}{}
	upTo = h.last
	if after == nil {
		return sub, nil, upTo, true, nil
	}
	if *after+1 < h.from {
		return sub, nil, upTo, false, nil
	}
	for _, e := range h.ring {
		if e.seq > *after && matchesAny(filters, e.subject) {
			backlog = append(backlog, e)
		}
	}
	return sub, backlog, upTo, true, nil
}

// unsubscribe removes the reader; the hub stops hubIdle after the last one.
func (h *eventHub) unsubscribe(sub *hubSub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, sub)
	if len(h.subs) > 0 || !h.running || h.idle != nil {
		return
	}
	h.idle = time.AfterFunc(hubIdle, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.subs) == 0 && h.running {
			h.halt()
		}
	})
}

// start opens the hub's consumer at the stream's end. h.mu is held.
func (h *eventHub) start(ctx context.Context) error {
	st, err := h.js.Stream(ctx, events.StreamName)
	if err != nil {
		return fmt.Errorf("look up the event stream: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("look up the event stream: %w", err)
	}
	last := info.State.LastSeq
	cons, err := h.js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: last + 1})
	if err != nil {
		return fmt.Errorf("open the event stream: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("open the event stream: %w", err)
	}
	h.gen++
	h.running, h.from, h.last, h.ring = true, last+1, last, nil
	h.stop = it.Stop
	go h.run(it, h.gen)
	return nil
}

// halt stops the hub and cuts every reader off. h.mu is held.
func (h *eventHub) halt() {
	h.stop()
	h.running, h.ring = false, nil
	for sub := range h.subs {
		close(sub.ch)
		delete(h.subs, sub)
	}
	if h.idle != nil {
		h.idle.Stop()
		h.idle = nil
	}
}

// run hands the consumer's events to the readers until it ends.
func (h *eventHub) run(it jetstream.MessagesContext, gen int) {
	for {
		m, err := it.Next()
		if err != nil {
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.running && h.gen == gen {
				// Not stopped by halt: its readers reconnect, and the next
				// one starts the hub again.
				h.log.Warn("event stream: the readers' consumer ended; they reconnect", "err", err)
				h.halt()
			}
			return
		}
		md, err := m.Metadata()
		if err != nil {
			continue
		}
		e := &hubEvent{seq: md.Sequence.Stream, subject: m.Subject()}
		decoded, derr := events.Decode(m.Headers(), m.Data())
		if derr == nil {
			e.ev, e.job = decoded, jobOf(decoded)
			e.data, derr = decoded.StructuredJSON()
		}
		h.take(gen, e, derr == nil)
	}
}

// take records e (ok: decoded; else only its sequence counts) and hands it
// to the readers it matches.
func (h *eventHub) take(gen int, e *hubEvent, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.running || h.gen != gen || e.seq <= h.last {
		return
	}
	h.last = e.seq
	if !ok {
		return
	}
	h.ring = append(h.ring, e)
	if len(h.ring) >= 2*hubRing {
		h.ring = append([]*hubEvent(nil), h.ring[len(h.ring)-hubRing:]...)
		h.from = h.ring[0].seq
	}
	for sub := range h.subs {
		if !matchesAny(sub.filters, e.subject) {
			continue
		}
		select {
		case sub.ch <- e:
		default: // too far behind: cut off; it resumes after what it was sent
			close(sub.ch)
			delete(h.subs, sub)
		}
	}
}

// matchesAny says whether subject matches one of the NATS subject filters
// (tokens separated by '.', '*' one token, '>' the rest).
func matchesAny(filters []string, subject string) bool {
	for _, f := range filters {
		if subjectMatches(f, subject) {
			return true
		}
	}
	return false
}

func subjectMatches(filter, subject string) bool {
	for {
		ft, frest, fmore := strings.Cut(filter, ".")
		st, srest, smore := strings.Cut(subject, ".")
		switch {
		case ft == ">":
			return true
		case ft != "*" && ft != st:
			return false
		case !fmore || !smore:
			return fmore == smore
		}
		filter, subject = frest, srest
	}
}
