package up

import (
	"context"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
	"github.com/avxrm/rm/pkg/events/indexed"
)

// storeLookup finds documents of the services' database by index on the
// embedded store (ferretembed.MatchingIDs), for the services' hot reads of
// active jobs: FerretDB itself would decode every job ever stored.
type storeLookup struct {
	srv *ferretembed.Server
	db  string
}

var _ indexed.Lookup = storeLookup{}

func (l storeLookup) MatchingIDs(ctx context.Context, coll string, where, residual []indexed.Cond) ([]string, error) {
	return l.srv.MatchingIDs(ctx, l.db, coll, fieldConds(where), fieldConds(residual))
}

func (l storeLookup) LatestIDs(ctx context.Context, coll string, where []indexed.Cond, orderPath string, limit int) ([]string, error) {
	return l.srv.LatestIDs(ctx, l.db, coll, fieldConds(where), orderPath, limit)
}

func fieldConds(cs []indexed.Cond) []ferretembed.FieldCond {
	out := make([]ferretembed.FieldCond, len(cs))
	for i, c := range cs {
		out[i] = ferretembed.FieldCond(c)
	}
	return out
}

// Lookup is what the services read active jobs of database db through:
// nil on an external MongoDB (for benchmarks that compare the reads).
func (s *System) Lookup(db string) indexed.Lookup { return s.lookup(db) }

// lookup is the services' Lookup: nil on an external MongoDB, whose own
// indexes serve the filters.
func (s *System) lookup(db string) indexed.Lookup {
	if s.store == nil {
		return nil
	}
	return storeLookup{srv: s.store, db: db}
}
