// Package store is the MongoDB adapter of the API: resources stored with their
// events through the outbox, looked up by id or name, listed with cursors. It
// maps driver errors to the sentinels of package problem.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/api/internal/problem"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Collection names.
const (
	Queues            = "queues"
	Plugins           = "plugins"
	Applications      = "applications"
	AppRuntimeConfigs = "app_runtime_configs"
	Deployments       = "deployments"
	Jobs              = "jobs"
	Exports           = "scenario_exports"
)

// AllCollections are created at start so indexes and the relay cover them.
var AllCollections = []string{Queues, Plugins, Applications, AppRuntimeConfigs, Deployments, Jobs, Exports}

// Store gives typed access to the resource collections.
type Store struct {
	DB     *mongo.Database
	Outbox *outbox.Outbox
}

// Resource is what every stored resource is: it carries events.Meta.
type Resource interface{ GetMeta() *events.Meta }

// Loaded is a resource read with what the outbox keeps beside it.
type Loaded[T any] struct {
	Res     T
	Pending []outbox.Entry
}

// Kind describes one collection of resources of type T.
type Kind[T Resource] struct {
	S        *Store
	Coll     string
	Name     string // human name of the kind, for messages: "queue"
	IDPrefix string // "q": ids look like q-…; anything else is looked up by name
}

func (k Kind[T]) coll() *mongo.Collection { return k.S.DB.Collection(k.Coll) }

// Get finds a live resource by id, or by name when ref does not look like an id.
func (k Kind[T]) Get(ctx context.Context, ref string) (Loaded[T], error) {
	key := "_id"
	if !strings.HasPrefix(ref, k.IDPrefix+"-") {
		key = "name"
	}
	return k.FindOne(ctx, bson.D{{Key: key, Value: ref}}, ref)
}

// FindOne returns the live resource matching filter.
func (k Kind[T]) FindOne(ctx context.Context, filter bson.D, ref string) (Loaded[T], error) {
	var out Loaded[T]
	raw, err := k.coll().FindOne(ctx, append(filter, outbox.NotDeleted())).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return out, fmt.Errorf("%s %q: %w", k.Name, ref, problem.ErrNotFound)
	}
	if err != nil {
		return out, fmt.Errorf("get %s %q: %w", k.Name, ref, err)
	}
	if err := bson.Unmarshal(raw, &out.Res); err != nil {
		return out, fmt.Errorf("decode %s %q: %w", k.Name, ref, err)
	}
	var env outbox.Envelope
	if err := bson.Unmarshal(raw, &env); err != nil {
		return out, fmt.Errorf("decode %s %q: %w", k.Name, ref, err)
	}
	out.Pending = env.Outbox
	return out, nil
}

// Insert stores a new resource with its events. A duplicate key is a conflict.
func (k Kind[T]) Insert(ctx context.Context, r T, evs ...events.Event) error {
	m := r.GetMeta()
	err := k.S.Outbox.Insert(ctx, k.coll(), m.ID, m.Version, r, evs...)
	if errors.Is(err, outbox.ErrDuplicate) {
		return fmt.Errorf("a %s with that name exists already: %w", k.Name, problem.ErrConflict)
	}
	return err
}

// Replace stores r over the version it was read at (prev), with its events.
// A concurrent change is a failed precondition.
func (k Kind[T]) Replace(ctx context.Context, prev Loaded[T], r T, evs ...events.Event) error {
	pm, m := prev.Res.GetMeta(), r.GetMeta()
	err := k.S.Outbox.Replace(ctx, k.coll(), m.ID, pm.Version, m.Version, prev.Pending, r, evs...)
	switch {
	case errors.Is(err, outbox.ErrDuplicate):
		return fmt.Errorf("a %s with that name exists already: %w", k.Name, problem.ErrConflict)
	case errors.Is(err, outbox.ErrVersionConflict):
		return fmt.Errorf("%s %s changed concurrently; read it again: %w", k.Name, m.ID, problem.ErrPreconditionFailed)
	}
	return err
}

// Delete removes the resource read as prev, with its events.
func (k Kind[T]) Delete(ctx context.Context, prev Loaded[T], evs ...events.Event) error {
	pm := prev.Res.GetMeta()
	err := k.S.Outbox.Delete(ctx, k.coll(), pm.ID, pm.Version, prev.Pending, evs...)
	if errors.Is(err, outbox.ErrVersionConflict) {
		return fmt.Errorf("%s %s changed concurrently; read it again: %w", k.Name, pm.ID, problem.ErrPreconditionFailed)
	}
	return err
}

// List returns up to limit live resources matching filter with ids after
// cursor, in id (= creation) order, and whether more follow.
func (k Kind[T]) List(ctx context.Context, filter bson.D, cursor string, limit int) ([]T, bool, error) {
	f := append(filter, outbox.NotDeleted())
	if cursor != "" {
		f = append(f, bson.E{Key: "_id", Value: bson.D{{Key: "$gt", Value: cursor}}})
	}
	cur, err := k.coll().Find(ctx, f, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(int64(limit)+1))
	if err != nil {
		return nil, false, fmt.Errorf("list %s: %w", k.Name, err)
	}
	var out []T
	if err := cur.All(ctx, &out); err != nil {
		return nil, false, fmt.Errorf("list %s: %w", k.Name, err)
	}
	more := len(out) > limit
	if more {
		out = out[:limit]
	}
	return out, more, nil
}

// EnsureIndexes creates the collections and the unique indexes the API relies on.
func (s *Store) EnsureIndexes(ctx context.Context) error {
	existing, err := s.DB.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return fmt.Errorf("list collections: %w", err)
	}
	have := map[string]bool{}
	for _, n := range existing {
		have[n] = true
	}
	for _, c := range AllCollections {
		if !have[c] {
			if err := s.DB.CreateCollection(ctx, c); err != nil && !isNamespaceExists(err) {
				return fmt.Errorf("create collection %s: %w", c, err)
			}
		}
	}
	unique := map[string]bson.D{
		Queues:      {{Key: "name", Value: 1}},
		Plugins:     {{Key: "name", Value: 1}},
		Deployments: {{Key: "name", Value: 1}},
	}
	for c, keys := range unique {
		_, err := s.DB.Collection(c).Indexes().CreateOne(ctx, mongo.IndexModel{Keys: keys, Options: options.Index().SetUnique(true)})
		if err != nil {
			return fmt.Errorf("create unique index on %s: %w", c, err)
		}
	}
	return nil
}

func isNamespaceExists(err error) bool {
	var ce mongo.CommandError
	return errors.As(err, &ce) && ce.Code == 48
}
