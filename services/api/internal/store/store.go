// Package store is the MongoDB adapter of the API: resources stored with their
// events through the outbox, looked up by id or name, listed with cursors. It
// maps driver errors to the sentinels of package problem.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/exportdoc"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/jobdoc"
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
	Exports           = exportdoc.Collection
	// Artifacts holds the records of the files uploaded for jobs; their
	// bytes are in the GridFS bucket of the same name.
	Artifacts = "artifacts"
	// IdempotencyKeys remembers the responses of creating POSTs sent with an
	// Idempotency-Key. It carries no events, so the outbox relay skips it.
	IdempotencyKeys = "idempotency_keys"
)

// AllCollections are created at start so indexes and the relay cover them.
var AllCollections = []string{Queues, Plugins, Applications, AppRuntimeConfigs, Deployments, Jobs, Exports}

// Store gives typed access to the resource collections.
type Store struct {
	DB     *mongo.Database
	Outbox *outbox.Outbox
	// Lookup, on the embedded store, gives the _ids of a collection in
	// order, from its _id index: an unfiltered list reads a page of
	// documents by them (Kind.List). nil: the find goes to the store.
	Lookup indexed.Lookup
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

// Get finds a live resource by id, then by name (API.md: a name that looks
// like an id, such as q-lookalike, still finds its resource).
func (k Kind[T]) Get(ctx context.Context, ref string) (Loaded[T], error) {
	if strings.HasPrefix(ref, k.IDPrefix+"-") {
		l, err := k.FindOne(ctx, bson.D{{Key: "_id", Value: ref}}, ref)
		if !errors.Is(err, problem.ErrNotFound) {
			return l, err
		}
	}
	return k.FindOne(ctx, bson.D{{Key: "name", Value: ref}}, ref)
}

// FindOne returns the live resource matching filter.
func (k Kind[T]) FindOne(ctx context.Context, filter bson.D, ref string) (Loaded[T], error) {
	var out Loaded[T]
	notFound := fmt.Errorf("%s %q: %w", k.Name, ref, problem.ErrNotFound)
	// A lookup by _id alone is the one filter FerretDB (SQLite) answers from
	// an index instead of scanning the collection, so tombstones are skipped
	// here rather than in the filter.
	byID := len(filter) == 1 && filter[0].Key == "_id"
	if !byID {
		filter = append(filter, outbox.NotDeleted())
	}
	raw, err := k.coll().FindOne(ctx, filter).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return out, notFound
	}
	if err != nil {
		return out, fmt.Errorf("get %s %q: %w", k.Name, ref, err)
	}
	var env outbox.Envelope
	if err := bson.Unmarshal(raw, &env); err != nil {
		return out, fmt.Errorf("decode %s %q: %w", k.Name, ref, err)
	}
	if env.Deleted {
		return out, notFound
	}
	if err := bson.Unmarshal(raw, &out.Res); err != nil {
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
		return fmt.Errorf("%s %s with that name exists already: %w", article(k.Name), k.Name, problem.ErrConflict)
	}
	return err
}

// Replace stores r over the version it was read at (prev), with its events.
// A concurrent change is a failed precondition.
func (k Kind[T]) Replace(ctx context.Context, prev Loaded[T], r T, evs ...events.Event) error {
	pm, m := prev.Res.GetMeta(), r.GetMeta()
	err := k.S.Outbox.Replace(ctx, k.coll(), m.ID, pm.Version, m.Version, prev.Pending, r, evs...)
	switch {
	case errors.Is(err, outbox.ErrDuplicate), isSQLiteUniqueViolation(err):
		return fmt.Errorf("%s %s with that name exists already: %w", article(k.Name), k.Name, problem.ErrConflict)
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
	if len(filter) == 0 && k.S.Lookup != nil {
		// Any failure of the index's read (its order, no _id index yet on
		// a collection made moments ago) leaves the page to the find.
		if out, more, err := k.listByID(ctx, cursor, limit); err == nil {
			return out, more, nil
		}
	}
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

// listByID is an unfiltered List on the embedded store: the page's _ids
// from the Lookup's _id index, then its documents by _id, which the store
// answers from SQLite; the find with a sort by _id has FerretDB decode
// every document of the collection (the job arrays' list, as a campaign's
// arrays pile up).
func (k Kind[T]) listByID(ctx context.Context, cursor string, limit int) ([]T, bool, error) {
	r := &indexed.Reader{Coll: k.coll(), Lookup: k.S.Lookup}
	var out []T
	err := r.Scan(ctx, cursor, limit+1, []indexed.Cond{outbox.NotDeletedCond()}, func(raw bson.Raw) (bool, error) {
		var v T
		if err := bson.Unmarshal(raw, &v); err != nil {
			return false, fmt.Errorf("decode %s: %w", k.Name, err)
		}
		out = append(out, v)
		return true, nil
	})
	if err != nil {
		return nil, false, err
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

// FirstRef returns the id of one live document of collection coll matching
// filter and how many there are (counting stops at limit), so a refused
// delete can say what still uses the resource.
func (s *Store) FirstRef(ctx context.Context, coll string, filter bson.D, limit int64) (string, int64, error) {
	f := append(filter, outbox.NotDeleted())
	n, err := s.DB.Collection(coll).CountDocuments(ctx, f, options.Count().SetLimit(limit))
	if err != nil || n == 0 {
		if err != nil {
			err = fmt.Errorf("count %s: %w", coll, err)
		}
		return "", 0, err
	}
	var doc struct {
		ID string `bson:"_id"`
	}
	if err := s.DB.Collection(coll).FindOne(ctx, f, options.FindOne().SetProjection(bson.D{{Key: "_id", Value: 1}})).Decode(&doc); err != nil {
		return "", 0, fmt.Errorf("find in %s: %w", coll, err)
	}
	return doc.ID, n, nil
}

// EnsureIndexes creates the collections and the indexes the API relies on.
//
// With uniqueOnly it makes only the indexes that enforce a rule (unique),
// and drops the others if an earlier start made them: the embedded store
// (FerretDB on SQLite) filters by _id only, so an index that only serves
// reads is never read there, yet every write of its collection updates it
// (four on the jobs, which every job's writes pay). Its hot reads go
// through its own partial indexes instead (indexed.Lookup).
func (s *Store) EnsureIndexes(ctx context.Context, uniqueOnly bool) error {
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
	// Collections without events, which the relay need not sweep: the
	// idempotency keys, the job arrays, and the jobs' instance records (package jobdoc),
	// created now so that FerretDB indexes their _id at start.
	for _, c := range []string{IdempotencyKeys, jobdoc.InstancesCollection, events.JobArraysCollection} {
		if !have[c] {
			if err := s.DB.CreateCollection(ctx, c); err != nil && !isNamespaceExists(err) {
				return fmt.Errorf("create collection %s: %w", c, err)
			}
		}
	}
	for _, ix := range indexes {
		if ix.stale || uniqueOnly && !ix.unique {
			if err := dropIndex(ctx, s.DB.Collection(ix.coll), ix.keys); err != nil {
				return err
			}
			continue
		}
		opts := options.Index()
		if ix.unique {
			opts.SetUnique(true)
		}
		if ix.ttl {
			// Documents expire at the time in the field; readers also check
			// the time, as TTL monitors delete late (or, on FerretDB, never).
			opts.SetExpireAfterSeconds(0)
		}
		_, err := s.DB.Collection(ix.coll).Indexes().CreateOne(ctx, mongo.IndexModel{Keys: ix.keys, Options: opts})
		if ix.ttl && isNotImplemented(err) {
			// FerretDB has no TTL indexes; SweepExpired does their work.
			_, err = s.DB.Collection(ix.coll).Indexes().CreateOne(ctx, mongo.IndexModel{Keys: ix.keys})
		}
		if err != nil {
			return fmt.Errorf("create index %v on %s: %w", ix.keys, ix.coll, err)
		}
	}
	return nil
}

// indexes serve every uniqueness rule of the API and every lookup the API
// makes besides by _id: names, references checked before a delete, list
// filters. A stale one was made by earlier starts and is dropped: another
// serves its reads.
var indexes = []struct {
	coll   string
	keys   bson.D
	unique bool
	ttl    bool
	stale  bool
}{
	{coll: Queues, keys: bson.D{{Key: "name", Value: 1}}, unique: true},
	{coll: Queues, keys: bson.D{{Key: "plugin_id", Value: 1}}},
	{coll: Plugins, keys: bson.D{{Key: "name", Value: 1}}, unique: true},
	{coll: Plugins, keys: bson.D{{Key: "is_default", Value: 1}}},
	// Applications are unique by name and version; their version string is
	// stored as app_version because "version" is the outbox's revision.
	{coll: Applications, keys: bson.D{{Key: "name", Value: 1}, {Key: "app_version", Value: 1}}, unique: true},
	{coll: AppRuntimeConfigs, keys: bson.D{{Key: "queue_id", Value: 1}, {Key: "application_id", Value: 1}}, unique: true},
	{coll: AppRuntimeConfigs, keys: bson.D{{Key: "application_id", Value: 1}}},
	{coll: Deployments, keys: bson.D{{Key: "name", Value: 1}}, unique: true},
	{coll: Deployments, keys: bson.D{{Key: "queue_id", Value: 1}}},
	{coll: Deployments, keys: bson.D{{Key: "application_id", Value: 1}}},
	{coll: Jobs, keys: bson.D{{Key: "queue_id", Value: 1}, {Key: "status", Value: 1}}},
	// The status filter of the lists and the scheduler's query for active
	// jobs. With _id, a page of one status ({status, _id: {$gt: cursor}},
	// sorted by _id: "show me the failed jobs") reads the index in its
	// order from the cursor and stops when the page is full, rather than
	// read and sort every job of the status after the cursor.
	{coll: Jobs, keys: bson.D{{Key: "status", Value: 1}, {Key: "_id", Value: 1}}},
	{coll: Jobs, keys: bson.D{{Key: "status", Value: 1}}, stale: true}, // until 2026-12-08: the one above serves its reads
	{coll: Jobs, keys: bson.D{{Key: "application.id", Value: 1}}},
	// The jobs of an array: GET /jobs?array_id=, an array's counts.
	{coll: Jobs, keys: bson.D{{Key: "array_id", Value: 1}, {Key: "status", Value: 1}}},
	{coll: IdempotencyKeys, keys: bson.D{{Key: "expires_at", Value: 1}}, ttl: true},
	// A job's artifacts (a page of them in _id order) and exports: listed,
	// checked before an export, removed with the job.
	{coll: Artifacts, keys: bson.D{{Key: "job_id", Value: 1}, {Key: "_id", Value: 1}}},
	{coll: Exports, keys: bson.D{{Key: "job_id", Value: 1}, {Key: "_id", Value: 1}}},
}

// dropIndex drops the index of coll on keys; no such index is no error.
// It names the index as EnsureIndexes made it (the server's default name,
// keys_directions joined by "_"), rather than give its keys: FerretDB
// v1.24 matches given keys against each index's only as far as the
// index's go, so {status: 1} matched (and panicked on) the index
// {status: 1, _id: 1}, and {status: 1, _id: 1} would drop {status: 1}.
func dropIndex(ctx context.Context, coll *mongo.Collection, keys bson.D) error {
	err := coll.Indexes().DropOne(ctx, defaultIndexName(keys))
	var ce mongo.CommandError
	if err != nil && !(errors.As(err, &ce) && (ce.Code == codeIndexNotFound || ce.Code == codeNamespaceNotFound)) {
		return fmt.Errorf("drop index %v on %s: %w", keys, coll.Name(), err)
	}
	return nil
}

// defaultIndexName is the name MongoDB (and FerretDB) give an index on
// keys made without one: {status: 1, _id: 1} is status_1__id_1.
func defaultIndexName(keys bson.D) string {
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s_%v", k.Key, k.Value)
	}
	return strings.Join(parts, "_")
}

// MongoDB's codes for dropIndexes of an index or a collection that does not exist.
const (
	codeIndexNotFound     = 27
	codeNamespaceNotFound = 26
)

// SweepExpired deletes the documents of coll whose expires_at has passed:
// what a TTL index does, for servers without one.
func (s *Store) SweepExpired(ctx context.Context, coll string, now time.Time) error {
	_, err := s.DB.Collection(coll).DeleteMany(ctx, bson.D{{Key: "expires_at", Value: bson.D{{Key: "$lt", Value: now}}}})
	if err != nil {
		return fmt.Errorf("sweep expired %s: %w", coll, err)
	}
	return nil
}

// isSQLiteUniqueViolation recognises a unique index refusing an update on
// FerretDB v1 (SQLite backend), which reports it as an InternalError with
// SQLite's message instead of MongoDB's duplicate key error 11000.
func isSQLiteUniqueViolation(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

func isNotImplemented(err error) bool {
	var ce mongo.CommandError
	return errors.As(err, &ce) && (ce.Code == 238 || ce.Name == "NotImplemented")
}

func isNamespaceExists(err error) bool {
	var ce mongo.CommandError
	return errors.As(err, &ce) && ce.Code == 48
}

// article is "a" or "an" before word.
func article(word string) string {
	if word != "" && strings.ContainsRune("aeiou", rune(word[0])) {
		return "an"
	}
	return "a"
}
