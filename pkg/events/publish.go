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
