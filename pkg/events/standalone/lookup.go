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
	for {
		l, err := wirelookup.Probe(ctx, db)
		if err == nil {
			log.Info("store reads by index", "over_the_wire", l != nil)
			return l, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		log.Warn("store not ready for the reads-by-index probe; retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
