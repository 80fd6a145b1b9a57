package events

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DisconnectedWait bounds the wait for the stream's acknowledgement of a
// publication made while the connection to NATS is lost. nats.go keeps the
// message and sends it once NATS is back, but a writer that publishes
// after its store write (the outbox) would otherwise hold its caller for
// the 5 s of a JetStream request, an API request among them; the outbox's
// relay publishes what was not acknowledged again (the stream drops the
// duplicate).
const DisconnectedWait = time.Second

// bound is ctx, shortened to DisconnectedWait while the connection is lost.
func (p *Publisher) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if nc := p.js.Conn(); nc != nil && !nc.IsConnected() {
		return context.WithTimeoutCause(ctx, DisconnectedWait, errDisconnected)
	}
	return ctx, func() {}
}

// errDisconnected is the cause of a publication's end while NATS is lost.
var errDisconnected = fmt.Errorf("NATS is not connected: no acknowledgement within %s (the message is sent once it is back)", DisconnectedWait)

// Publisher publishes events to RM_EVENTS and waits for the stream's
// acknowledgement, so a nil error means the event is stored.
type Publisher struct {
	js jetstream.JetStream
}

// NewPublisher returns a publisher on js.
func NewPublisher(js jetstream.JetStream) *Publisher { return &Publisher{js: js} }

// Publish stores e in the stream. Publishing the same event twice within
// DuplicateWindow stores it once (Nats-Msg-Id is the event id).
func (p *Publisher) Publish(ctx context.Context, e Event) error {
	m, err := Encode(e)
	if err != nil {
		return err
	}
	ctx, cancel := p.bound(ctx)
	defer cancel()
	if _, err := p.js.PublishMsg(ctx, m, jetstream.WithExpectStream(StreamName)); err != nil {
		return fmt.Errorf("publish %s %s: %w", e.Type, e.ID, causeOf(ctx, err))
	}
	return nil
}

// causeOf is err, or the cause of ctx's end when it ended it.
func causeOf(ctx context.Context, err error) error {
	if ctx.Err() != nil && context.Cause(ctx) != ctx.Err() {
		return fmt.Errorf("%w: %w", context.Cause(ctx), err)
	}
	return err
}

// PublishBatch stores evs in the stream, publishing them all before waiting
// for the acknowledgements (one round trip's wait instead of one per event).
// An error means some may not be stored; publishing them again is harmless.
func (p *Publisher) PublishBatch(ctx context.Context, evs []Event) error {
	ctx, cancel := p.bound(ctx)
	defer cancel()
	futures := make([]jetstream.PubAckFuture, 0, len(evs))
	for _, e := range evs {
		m, err := Encode(e)
		if err != nil {
			return err
		}
		f, err := p.js.PublishMsgAsync(m, jetstream.WithExpectStream(StreamName))
		if err != nil {
			return fmt.Errorf("publish %s %s: %w", e.Type, e.ID, err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish %s %s: %w", evs[i].Type, evs[i].ID, err)
		case <-ctx.Done():
			return causeOf(ctx, ctx.Err())
		}
	}
	return nil
}
