package indexed

import (
	"context"
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
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

// Values is the value of the numeric or date (Unix milliseconds) field
// path of each document matching f (0 where it has none). With a Lookup
// the values come from the index read that finds the _ids
// (MatchingVersions), so no document is read but those whose value it
// could not give (a store over the wire that predates it gives none);
// without one (MongoDB) the matches are read, path alone.
func (r *Reader) Values(ctx context.Context, f Filter, path string) (map[string]int64, error) {
	values := map[string]int64{}
	unknown := map[string]bool{}
	if r.Lookup != nil {
		found, err := r.versions(ctx, f, path)
		if err != nil {
			return nil, err
		}
		for id, v := range found {
			if v != NoValue {
				values[id] = v
			} else {
				unknown[id] = true
			}
		}
		if len(unknown) == 0 {
			return values, nil
		}
	}
	var docs []bson.Raw
	var err error
	if r.Lookup == nil {
		docs, err = r.find(ctx, f.BSON(), options.Find().SetProjection(bson.D{{Key: path, Value: 1}}))
	} else {
		docs, err = r.fetch(ctx, unknown, f)
	}
	if err != nil {
		return nil, err
	}
	keys := strings.Split(path, ".")
	for _, d := range docs {
		if id, ok := d.Lookup("_id").StringValueOK(); ok {
			raw := d.Lookup(keys...)
			v, ok := raw.AsInt64OK()
			if t, isTime := raw.DateTimeOK(); !ok && isTime {
				v = t // Unix milliseconds, as the index gives a date
			}
			values[id] = v
		}
	}
	return values, nil
}

// FindIDs returns the _ids of the documents of coll that filter matches,
// read with a projection of _id alone (opts may add a sort and a limit;
// nil: none): for a caller that needs only which documents match.
func FindIDs(ctx context.Context, coll *mongo.Collection, filter bson.D, opts *options.FindOptionsBuilder) ([]string, error) {
	if opts == nil {
		opts = options.Find()
	}
	cur, err := coll.Find(ctx, filter, opts.SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, err
	}
	var docs []struct {
		ID string `bson:"_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, err
	}
	ids := make([]string, len(docs))
	for i, d := range docs {
		ids[i] = d.ID
	}
	return ids, nil
}
