package events

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

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
	if _, err := p.js.PublishMsg(ctx, m, jetstream.WithExpectStream(StreamName)); err != nil {
		return fmt.Errorf("publish %s %s: %w", e.Type, e.ID, err)
	}
	return nil
}

// PublishBatch stores evs in the stream, publishing them all before waiting
// for the acknowledgements (one round trip's wait instead of one per event).
// An error means some may not be stored; publishing them again is harmless.
func (p *Publisher) PublishBatch(ctx context.Context, evs []Event) error {
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
			return ctx.Err()
		}
	}
	return nil
}
