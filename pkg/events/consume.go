package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// permanent marks a handler error that redelivery cannot cure.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent wraps err so the consumer loop terminates the message (and
// dead-letters it) instead of redelivering it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// IsPermanent reports whether err was wrapped by Permanent or is ErrMalformed.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p) || errors.Is(err, ErrMalformed)
}

// Handler processes one event. It must be idempotent: an event may arrive
// more than once, and late.
type Handler func(ctx context.Context, e Event) error

// ConsumerSpec describes a durable consumer on RM_EVENTS.
type ConsumerSpec struct {
	// Durable names the consumer; it keeps its position across restarts.
	Durable string
	// Filters are the subjects to receive (see FilterSubject); empty means all.
	Filters []string
	// MaxDeliver bounds deliveries of one message; the last failed one is
	// dead-lettered. If zero, 10.
	MaxDeliver int
	// Backoff gives the redelivery delay after the n-th failed delivery (n from 1).
	// If nil, 100ms doubled each time up to 30s.
	Backoff func(n int) time.Duration
	// AckWait is how long a delivery may take before the server redelivers it.
	// If zero, 30s.
	AckWait time.Duration
	// MaxAckPending bounds deliveries in flight. If zero, 1: the handler sees
	// one message at a time, in stream order (except redeliveries).
	MaxAckPending int
	// DeliverNew starts a new consumer at the end of the stream instead of the start.
	DeliverNew bool
}

func (s ConsumerSpec) withDefaults() ConsumerSpec {
	if s.MaxDeliver == 0 {
		s.MaxDeliver = 10
	}
	if s.Backoff == nil {
		s.Backoff = func(n int) time.Duration {
			d := 100 * time.Millisecond << min(n-1, 16)
			return min(d, 30*time.Second)
		}
	}
	if s.AckWait == 0 {
		s.AckWait = 30 * time.Second
	}
	if s.MaxAckPending == 0 {
		s.MaxAckPending = 1
	}
	return s
}

// Header names on dead-lettered messages.
const (
	HeaderDeadReason   = "Rm-Dead-Reason"
	HeaderDeadConsumer = "Rm-Dead-Consumer"
	HeaderDeadSubject  = "Rm-Dead-Subject"
)

// Consume runs h for every event matching spec until ctx ends.
//
// Ack policy: handler success: Ack. Malformed message (not a valid event) or a
// Permanent handler error: Term, and a copy goes to rm.deadletter.<durable>
// with the reason. Any other error: NakWithDelay(Backoff(n)), until the
// MaxDeliver-th delivery, which is dead-lettered and Termed. Consume returns
// nil when ctx ends, after the message in hand is finished.
func Consume(ctx context.Context, js jetstream.JetStream, spec ConsumerSpec, h Handler, log *slog.Logger) error {
	spec = spec.withDefaults()
	if log == nil {
		log = slog.Default()
	}
	cfg := jetstream.ConsumerConfig{
		Durable:        spec.Durable,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        spec.AckWait,
		MaxDeliver:     spec.MaxDeliver + 1, // we dead-letter on the MaxDeliver-th; +1 keeps the server from dropping it first
		MaxAckPending:  spec.MaxAckPending,
		FilterSubjects: spec.Filters,
	}
	if spec.DeliverNew {
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	if len(cfg.FilterSubjects) == 1 {
		cfg.FilterSubject, cfg.FilterSubjects = cfg.FilterSubjects[0], nil
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, StreamName, cfg)
	if err != nil {
		return fmt.Errorf("create consumer %s: %w", spec.Durable, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(max(spec.MaxAckPending, 1)))
	if err != nil {
		return fmt.Errorf("consume %s: %w", spec.Durable, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	c := consumer{js: js, spec: spec, h: h, log: log.With("consumer", spec.Durable)}
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			c.log.Warn("next message", "err", err)
			continue
		}
		c.handle(ctx, m)
	}
}

type consumer struct {
	js   jetstream.JetStream
	spec ConsumerSpec
	h    Handler
	log  *slog.Logger
}

// handle applies the ack policy to one message.
func (c consumer) handle(ctx context.Context, m jetstream.Msg) {
	delivered := 1
	if md, err := m.Metadata(); err == nil {
		delivered = int(md.NumDelivered)
	}
	e, err := Decode(m.Headers(), m.Data())
	if err == nil {
		err = c.h(context.WithoutCancel(ctx), e)
	}
	switch {
	case err == nil:
		if aerr := m.Ack(); aerr != nil {
			c.log.Warn("ack", "subject", m.Subject(), "err", aerr)
		}
	case IsPermanent(err) || delivered >= c.spec.MaxDeliver:
		c.log.Error("dead-lettering event", "subject", m.Subject(), "delivered", delivered, "err", err)
		if derr := c.deadLetter(ctx, m, err); derr != nil {
			// Leave it for redelivery rather than lose it.
			c.log.Error("dead letter", "err", derr)
			_ = m.NakWithDelay(c.spec.Backoff(delivered))
			return
		}
		_ = m.TermWithReason(err.Error())
	default:
		c.log.Warn("event handler failed; will redeliver", "subject", m.Subject(), "delivered", delivered, "err", err)
		_ = m.NakWithDelay(c.spec.Backoff(delivered))
	}
}

func (c consumer) deadLetter(ctx context.Context, m jetstream.Msg, reason error) error {
	dl := nats.NewMsg(DeadLetterRoot + "." + c.spec.Durable)
	for k, v := range m.Headers() {
		// JetStream's own headers (Nats-Msg-Id, Nats-Expected-Stream, …) belong
		// to the original publication and would misdirect this one.
		if !strings.HasPrefix(strings.ToLower(k), "nats-") {
			dl.Header[k] = v
		}
	}
	dl.Header.Set(HeaderDeadReason, reason.Error())
	dl.Header.Set(HeaderDeadConsumer, c.spec.Durable)
	dl.Header.Set(HeaderDeadSubject, m.Subject())
	dl.Data = m.Data()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, err := c.js.PublishMsg(ctx, dl)
	return err
}

// ConsumerAttached reports whether durable consumer durable exists on
// RM_EVENTS and a consumer loop is pulling from it (a pull request waiting, or
// deliveries in flight): what a service's readiness check means by "consumer
// attached".
func ConsumerAttached(ctx context.Context, js jetstream.JetStream, durable string) error {
	c, err := js.Consumer(ctx, StreamName, durable)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", durable, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", durable, err)
	}
	if info.NumWaiting == 0 && info.NumAckPending == 0 {
		return fmt.Errorf("consumer %s: no pull request attached (%d undelivered, %d redelivered)",
			durable, info.NumPending, info.NumRedelivered)
	}
	return nil
}
