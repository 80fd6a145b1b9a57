// Package elect chooses one active replica of a service (the scheduler, the
// launcher) through a NATS KV bucket whose
// entries expire (TTL): the leader holds a key it renews with
// revision-conditioned updates; standbys try to create the key, which succeeds
// only once it has expired or been deleted. The KV revision of the winning
// create is the leader's epoch: it grows with every write to the bucket, so a
// later leader always has a larger one.
//
// It imports NATS and nothing of MongoDB.
package elect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Config of an election. Zero values take the defaults.
type Config struct {
	Bucket string        // required: one per service, e.g. "rm_scheduler"
	Key    string        // if empty, "leader"
	TTL    time.Duration // a leader that does not renew for this long is replaced; if zero, 5s
	Renew  time.Duration // renewal period; if zero, 1s
	// Poll is how often a standby tries to take the key: how late, at
	// most, it takes over once the key has expired. If zero, the lesser of
	// Renew and 200ms; a try that fails costs the server a refused write
	// and a read of the key (jetstream.KeyValue.Create).
	Poll time.Duration
	ID   string // this candidate, stored as the key's value
}

// Periods returns c's TTL and renewal period, the defaults put in for
// zeros, and an error unless the renewal comes before the lease ends.
func (c Config) Periods() (ttl, renew time.Duration, err error) {
	ttl, renew = c.TTL, c.Renew
	if ttl == 0 {
		ttl = 5 * time.Second
	}
	if renew == 0 {
		renew = time.Second
	}
	if renew >= ttl {
		return ttl, renew, fmt.Errorf("elect: renew period %v must be shorter than the TTL %v", renew, ttl)
	}
	return ttl, renew, nil
}

// Elector runs for leadership.
type Elector struct {
	cfg Config
	kv  jetstream.KeyValue
	log *slog.Logger
}

// New creates (or reuses) the bucket.
func New(ctx context.Context, js jetstream.JetStream, cfg Config, log *slog.Logger) (*Elector, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("elect: the bucket is required")
	}
	if cfg.Key == "" {
		cfg.Key = "leader"
	}
	var err error
	if cfg.TTL, cfg.Renew, err = cfg.Periods(); err != nil {
		return nil, err
	}
	if cfg.Poll == 0 {
		cfg.Poll = min(cfg.Renew, 200*time.Millisecond)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: cfg.Bucket, Description: "leader election", TTL: cfg.TTL, History: 1,
		Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("elect: bucket %s: %w", cfg.Bucket, err)
	}
	return &Elector{cfg: cfg, kv: kv, log: log}, nil
}

// Campaign blocks until this candidate holds the key, and returns the
// revision of its create: the epoch. It returns ctx's error when ctx ends.
func (e *Elector) Campaign(ctx context.Context) (uint64, error) {
	t := time.NewTicker(e.cfg.Poll)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, e.cfg.TTL/2)
		rev, err := e.kv.Create(cctx, e.cfg.Key, []byte(e.cfg.ID))
		cancel()
		if err == nil {
			return rev, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && ctx.Err() == nil {
			e.log.Warn("leader election: create failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-t.C:
		}
	}
}

// ErrLost means the key could not be renewed: another candidate may hold it.
var ErrLost = errors.New("elect: leadership lost")

// Hold renews the key created at rev every Renew period until ctx ends, then
// deletes it so that a standby takes over at once, and returns nil.
//
// A renewal that fails for want of an answer (NATS restarting, a slow
// server) is tried again at the next period: a blip shorter than the TTL
// does not end a leadership. Hold returns ErrLost, and the caller must stop
// acting as leader at once, when the key is no longer this candidate's, or
// when no renewal has succeeded for TTL−Renew since the last successful one
// was sent. The key expires TTL after the server stored that renewal, so
// another candidate cannot win before Hold has given up; the Renew period
// left is the margin for the answer's trip.
func (e *Elector) Hold(ctx context.Context, rev uint64) error {
	t := time.NewTicker(e.cfg.Renew)
	defer t.Stop()
	// The first lease began before Campaign returned; the margin covers it.
	sent := time.Now()
	for {
		select {
		case <-ctx.Done():
			e.resign(ctx, rev)
			return nil
		case <-t.C:
		}
		// The deadline keeps a hung renewal from outliving the lease.
		giveUp := sent.Add(e.cfg.TTL - e.cfg.Renew)
		try := time.Now()
		uctx, cancel := context.WithDeadline(ctx, giveUp)
		next, err := e.kv.Update(uctx, e.cfg.Key, []byte(e.cfg.ID), rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			// A renewal whose answer was lost may have landed: the key is
			// still ours, at a later revision.
			next, err = e.stillOurs(uctx, err)
		}
		cancel()
		switch {
		case err == nil:
			rev, sent = next, try
		case ctx.Err() != nil:
			// stopping: resign above
		case errors.Is(err, ErrLost) || !time.Now().Before(giveUp):
			return fmt.Errorf("%w: renew at revision %d: %v", ErrLost, rev, err)
		default:
			e.log.Warn("leader election: renewal failed, trying again", "revision", rev, "err", err,
				"gives_up_in", time.Until(giveUp).Round(time.Millisecond))
		}
	}
}

// stillOurs returns the key's revision if it still holds this candidate's
// ID, else an error wrapping ErrLost.
func (e *Elector) stillOurs(ctx context.Context, mismatch error) (uint64, error) {
	cur, err := e.kv.Get(ctx, e.cfg.Key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return 0, fmt.Errorf("%w: the key expired or was deleted (%v)", ErrLost, mismatch)
	case err != nil:
		return 0, err // no answer: try again
	case string(cur.Value()) != e.cfg.ID:
		return 0, fmt.Errorf("%w: %q holds the key", ErrLost, cur.Value())
	}
	return cur.Revision(), nil
}

// resign deletes the key if it is still this candidate's.
func (e *Elector) resign(ctx context.Context, rev uint64) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.TTL/2)
	defer cancel()
	err := e.kv.Delete(dctx, e.cfg.Key, jetstream.LastRevision(rev))
	if err != nil {
		// A renewal cut short by the stop may have landed all the
		// same: the key is still ours at a later revision.
		if cur, gerr := e.stillOurs(dctx, err); gerr == nil {
			err = e.kv.Delete(dctx, e.cfg.Key, jetstream.LastRevision(cur))
		}
	}
	if err != nil {
		e.log.Warn("leader election: resign", "err", err)
	}
}

// Lead campaigns until this candidate leads, then runs body with a context
// that ends as soon as leadership is lost (or ctx ends), and returns once body
// has returned: nil when ctx ended, an error wrapping ErrLost when leadership
// was lost, else body's error (the key is resigned). A replica whose Lead
// returned ErrLost should exit and start afresh, as a restart policy does.
func (e *Elector) Lead(ctx context.Context, body func(ctx context.Context, epoch uint64) error) error {
	rev, err := e.Campaign(ctx)
	if err != nil {
		return nil // ctx ended before winning
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	held, led := make(chan error, 1), make(chan error, 1)
	go func() { held <- e.Hold(lctx, rev) }()
	go func() { led <- body(lctx, rev) }()
	select {
	case err = <-held:
		cancel() // lost: stop acting at once
		<-led
		if ctx.Err() != nil {
			return nil
		}
		return err
	case err = <-led:
		cancel()
		<-held // resigns the key, so that a standby takes over at once
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
}
