package indexed

import (
	"context"
	"fmt"
)

// Count is how many documents match f. With a Lookup it is the number of
// _ids the Lookup finds, read from its index: no document is read (DocsRead
// does not move). Without, the store counts (CountDocuments, which
// MongoDB's indexes serve).
func (r *Reader) Count(ctx context.Context, f Filter) (int, error) {
	if r.Lookup == nil {
		n, err := r.Coll.CountDocuments(ctx, f.BSON())
		if err != nil {
			return 0, fmt.Errorf("count in %s: %w", r.Coll.Name(), err)
		}
		return int(n), nil
	}
	ids, err := r.lookup(ctx, f)
	return len(ids), err
}
