// Package ferretlookup gives an indexed.Reader the embedded store's reads
// by index (ferretembed's MatchingIDs, MatchingVersions, LatestIDs,
// IDsAfter, IDsBefore and MatchingIDsAfter): the all-in-one's Lookup (cmd/avxrm/internal/up) and the
// tests'.
package ferretlookup

import (
	"context"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
	"github.com/avxrm/rm/pkg/events/indexed"
)

// New is the embedded store's reads by index on database db,
// as the all-in-one gives them to the services (indexed.Lookup).
func New(srv *ferretembed.Server, db string) indexed.Lookup { return lookup{srv, db} }

type lookup struct {
	srv *ferretembed.Server
	db  string
}

func (l lookup) MatchingIDs(ctx context.Context, coll string, where, residual []indexed.Cond) ([]string, error) {
	return l.srv.MatchingIDs(ctx, l.db, coll, fieldConds(where), fieldConds(residual))
}

func (l lookup) MatchingVersions(ctx context.Context, coll string, where, residual []indexed.Cond, versionPath string) (map[string]int64, error) {
	ids, versions, err := l.srv.MatchingVersions(ctx, l.db, coll, fieldConds(where), fieldConds(residual), versionPath)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(ids))
	for i, id := range ids {
		out[id] = versions[i]
	}
	return out, nil
}

func (l lookup) LatestIDs(ctx context.Context, coll string, where []indexed.Cond, orderPath string, limit int) ([]string, error) {
	return l.srv.LatestIDs(ctx, l.db, coll, fieldConds(where), orderPath, limit)
}

func fieldConds(cs []indexed.Cond) []ferretembed.FieldCond {
	out := make([]ferretembed.FieldCond, len(cs))
	for i, c := range cs {
		out[i] = ferretembed.FieldCond(c)
	}
	return out
}

func (l lookup) IDsAfter(ctx context.Context, coll, after string, limit int) ([]string, error) {
	return l.srv.IDsAfter(ctx, l.db, coll, after, limit)
}

func (l lookup) IDsBefore(ctx context.Context, coll, before string, limit int) ([]string, error) {
	return l.srv.IDsBefore(ctx, l.db, coll, before, limit)
}

func (l lookup) MatchingIDsAfter(ctx context.Context, coll string, where []indexed.Cond, after string, limit int) ([]string, error) {
	return l.srv.MatchingIDsAfter(ctx, l.db, coll, fieldConds(where), after, limit)
}
