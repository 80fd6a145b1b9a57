package standalone

import (
	"context"
	"log/slog"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/indexed/wirelookup"
)

// probeLookup asks the store once whether it answers the reads by index
// (the embedded store's proxy does; MongoDB does not and needs none),
// retrying while it cannot be reached, until ctx ends.
func probeLookup(ctx context.Context, db *mongo.Database, log *slog.Logger) (indexed.Lookup, error) {
	var l indexed.Lookup
	err := untilReady(ctx, log, "store not ready for the reads-by-index probe; retrying", func() (err error) {
		l, err = wirelookup.Probe(ctx, db)
		return err
	})
	if err != nil {
		return nil, err
	}
	log.Info("store reads by index", "over_the_wire", l != nil)
	return l, nil
}

// permanent is a failure of untilReady's try that no retry can cure.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// untilReady calls try until it succeeds or ctx ends, a second apart,
// logging warn with each failure: for a part that may still be starting.
// A permanent failure ends it at once, with the failure's own error.
func untilReady(ctx context.Context, log *slog.Logger, warn string, try func() error) error {
	for {
		err := try()
		if p, ok := err.(permanent); ok {
			return p.error
		}
		if err == nil || ctx.Err() != nil {
			return err
		}
		log.Warn(warn, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
