// Package wirelookup is the embedded store's reads by index (MatchingIDs,
// MatchingVersions, LatestIDs, IDsAfter, IDsBefore, MatchingIDsAfter) for a
// service that reaches the store over the wire, as in the
// compose stack: the store's proxy answers them as commands of its own
// (pkg/embedded/ferretembed, wirelookup.go). Probe tells whether the store
// does; a real MongoDB does not, and needs no Lookup (its indexes serve the
// filters).
package wirelookup

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/avxrm/rm/pkg/events/indexed"
)

// Probe asks db's store once whether it answers the reads by index: a
// Lookup if it does, nil (and no error) if the store answers with an error
// (CommandNotFound from MongoDB, or any other refusal: its own indexes
// serve the filters). An error that is no answer (the store unreachable,
// a timeout) is returned, for the caller to try again.
func Probe(ctx context.Context, db *mongo.Database) (indexed.Lookup, error) {
	var reply struct {
		Version int `bson:"version"`
	}
	err := db.RunCommand(ctx, bson.D{{Key: "avxrmLookup", Value: 1}}).Decode(&reply)
	var ce mongo.CommandError
	if errors.As(err, &ce) && ce.Code != 0 && !mongo.IsTimeout(err) && !mongo.IsNetworkError(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("probe reads by index: %w", err)
	}
	return lookup{db: db, noVersions: reply.Version < 2, noIDOrder: reply.Version < 3, noIDsBefore: reply.Version < 4,
		noMatchingAfter: reply.Version < 5, noOnDemand: reply.Version < 6}, nil
}

// New is the Lookup of db's store, without asking whether it answers.
func New(db *mongo.Database) indexed.Lookup { return lookup{db: db} }

type lookup struct {
	db *mongo.Database
	// noVersions: the store predates avxrmMatchingVersions (its
	// avxrmLookup answered version 1); MatchingVersions then reports every
	// version unknown, and the caller reads every match.
	noVersions bool
	// noIDOrder: the store predates avxrmIDsAfter (version 1 or 2);
	// IDsAfter then fails with errors.ErrUnsupported, and the caller sends
	// its list to the store as it is.
	noIDOrder bool
	// noIDsBefore: the store predates avxrmIDsBefore (version 3 or
	// older); IDsBefore fails as IDsAfter does without noIDOrder.
	noIDsBefore bool
	// noMatchingAfter: the store predates avxrmMatchingIDsAfter (version
	// 4 or older); MatchingIDsAfter fails likewise, and the caller scans
	// by IDsAfter instead.
	noMatchingAfter bool
	// noOnDemand: the store predates conditions OnDemand (version 5 or
	// older), whose paths it may refuse and whose indexes it would not
	// limit; a read with one fails with errors.ErrUnsupported.
	noOnDemand bool
}

// onDemand fails with errors.ErrUnsupported when cs has a condition
// OnDemand (whose path, a label's, the store may refuse) and the store
// predates them.
func (l lookup) onDemand(cmd, coll string, cs []indexed.Cond) error {
	if l.noOnDemand && slices.ContainsFunc(cs, func(c indexed.Cond) bool { return c.OnDemand }) {
		return fmt.Errorf("%s %v: the store predates indexes on demand: %w", cmd, coll, errors.ErrUnsupported)
	}
	return nil
}

func (l lookup) MatchingIDs(ctx context.Context, coll string, where, residual []indexed.Cond) ([]string, error) {
	if err := l.onDemand("avxrmMatchingIDs", coll, append(slices.Clone(where), residual...)); err != nil {
		return nil, err
	}
	return l.run(ctx, bson.D{
		{Key: "avxrmMatchingIDs", Value: coll},
		{Key: "where", Value: conds(where)}, {Key: "residual", Value: conds(residual)},
	})
}

func (l lookup) MatchingVersions(ctx context.Context, coll string, where, residual []indexed.Cond, versionPath string) (map[string]int64, error) {
	if err := l.onDemand("avxrmMatchingVersions", coll, append(slices.Clone(where), residual...)); err != nil {
		return nil, err
	}
	cmd := bson.D{
		{Key: "avxrmMatchingVersions", Value: coll},
		{Key: "where", Value: conds(where)}, {Key: "residual", Value: conds(residual)},
		{Key: "versionPath", Value: versionPath},
	}
	if l.noVersions {
		cmd[0].Key = "avxrmMatchingIDs"
	}
	var reply struct {
		IDs      []string `bson:"ids"`
		Versions []int64  `bson:"versions"`
	}
	if err := l.db.RunCommand(ctx, cmd).Decode(&reply); err != nil {
		return nil, fmt.Errorf("%s %v: %w", cmd[0].Key, coll, err)
	}
	out := make(map[string]int64, len(reply.IDs))
	for i, id := range reply.IDs {
		out[id] = indexed.NoValue
		if i < len(reply.Versions) && !(l.noOnDemand && reply.Versions[i] == -1) { // before version 6: -1 for none
			out[id] = reply.Versions[i]
		}
	}
	return out, nil
}

func (l lookup) LatestIDs(ctx context.Context, coll string, where []indexed.Cond, orderPath string, limit int) ([]string, error) {
	if err := l.onDemand("avxrmLatestIDs", coll, where); err != nil {
		return nil, err
	}
	return l.run(ctx, bson.D{
		{Key: "avxrmLatestIDs", Value: coll},
		{Key: "where", Value: conds(where)}, {Key: "orderBy", Value: orderPath}, {Key: "limit", Value: limit},
	})
}

func (l lookup) IDsAfter(ctx context.Context, coll, after string, limit int) ([]string, error) {
	return l.idsInOrder(ctx, "avxrmIDsAfter", "after", coll, after, limit, l.noIDOrder)
}

func (l lookup) IDsBefore(ctx context.Context, coll, before string, limit int) ([]string, error) {
	return l.idsInOrder(ctx, "avxrmIDsBefore", "before", coll, before, limit, l.noIDsBefore)
}

func (l lookup) MatchingIDsAfter(ctx context.Context, coll string, where []indexed.Cond, after string, limit int) ([]string, error) {
	if l.noMatchingAfter {
		return nil, fmt.Errorf("avxrmMatchingIDsAfter %v: the store predates it: %w", coll, errors.ErrUnsupported)
	}
	if err := l.onDemand("avxrmMatchingIDsAfter", coll, where); err != nil {
		return nil, err
	}
	return l.run(ctx, bson.D{
		{Key: "avxrmMatchingIDsAfter", Value: coll},
		{Key: "where", Value: conds(where)}, {Key: "after", Value: after}, {Key: "limit", Value: limit},
	})
}

// idsInOrder sends cmd (avxrmIDsAfter or avxrmIDsBefore) with its cursor
// from as key; older: the store predates cmd.
func (l lookup) idsInOrder(ctx context.Context, cmd, key, coll, from string, limit int, older bool) ([]string, error) {
	if older {
		return nil, fmt.Errorf("%s %v: the store predates it: %w", cmd, coll, errors.ErrUnsupported)
	}
	return l.run(ctx, bson.D{{Key: cmd, Value: coll}, {Key: key, Value: from}, {Key: "limit", Value: limit}})
}

func (l lookup) run(ctx context.Context, cmd bson.D) ([]string, error) {
	var reply struct {
		IDs []string `bson:"ids"`
	}
	if err := l.db.RunCommand(ctx, cmd).Decode(&reply); err != nil {
		if ce := (mongo.CommandError{}); errors.As(err, &ce) && ce.Code == codeNotImplemented {
			err = fmt.Errorf("%w: %w", err, errors.ErrUnsupported)
		}
		return nil, fmt.Errorf("%s %v: %w", cmd[0].Key, cmd[0].Value, err)
	}
	return reply.IDs, nil
}

// codeNotImplemented is the store's answer to a read it does not serve by
// index (an index on demand past its limit): the caller reads another way.
const codeNotImplemented = 238

// conds is cs as the commands carry them.
func conds(cs []indexed.Cond) bson.A {
	out := bson.A{}
	for _, c := range cs {
		d := bson.D{{Key: "path", Value: c.Path}}
		if len(c.In) > 0 {
			d = append(d, bson.E{Key: "in", Value: bson.A(c.In)})
		} else {
			d = append(d, bson.E{Key: "missing", Value: true})
		}
		if len(c.Partial) > 0 {
			d = append(d, bson.E{Key: "partial", Value: bson.A(c.Partial)})
		}
		if c.Sparse {
			d = append(d, bson.E{Key: "sparse", Value: true})
		}
		if c.OnDemand {
			d = append(d, bson.E{Key: "onDemand", Value: true})
		}
		out = append(out, d)
	}
	return out
}
