// Package indexed reads the documents a hot path needs (the active jobs, a
// queue's waiting jobs) by filters a store can answer from an index, so a
// read costs what the matching documents cost and not what the collection
// has ever held.
//
// On MongoDB the filter goes to the server as it is; its indexes serve it.
// The embedded FerretDB/SQLite store pushes down to SQLite only a filter
// that is exactly {_id: X} and decodes every document for any other, so
// there a Lookup (the store's MatchingIDs) finds the matching _ids from
// SQLite expression indexes, each document is then read by _id (indexed),
// and checked against the filter again, since it may have changed between
// the two reads. Finished jobs are never read either way.
//
// It imports no service; the services and the all-in-one use it.
package indexed

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Cond is one condition on a top-level or dotted field holding a scalar.
type Cond struct {
	Path string
	// In lists the values (strings or bools) the field may have; empty:
	// the condition is Missing.
	In      []any
	Missing bool // the field is absent

	// Partial and Sparse, on a condition of a Clause, make the index that
	// serves the clause on the embedded store partial: it holds only the
	// documents whose field has one of the Partial values, or (Sparse) any
	// value, so writes to the other documents (finished jobs, jobs of no
	// array) do not update it. In must be among the Partial values. They
	// do not change what the filter matches; MongoDB ignores them.
	Partial []any
	Sparse  bool

	// OnDemand, on a condition of a Clause, says that a user's query chose
	// its path (a label's key), so that the embedded store may have many
	// such indexes: it makes a limited number of them, and past that the
	// read fails with an error wrapping errors.ErrUnsupported.
	OnDemand bool
}

// NoValue is a Lookup's MatchingVersions value of a match whose value it
// cannot give (the embedded store's ferretembed.NoValue): any value a
// field may hold, a negative one included, is given as it is.
const NoValue = math.MinInt64

// Clause holds when all of its conditions hold. Its first condition must
// have In values: it leads the index that serves the clause.
type Clause []Cond

// Filter matches a document that meets every condition of All and one
// clause of Any, or whose _id is one of IDs (and meets All).
type Filter struct {
	All []Cond
	Any []Clause
	IDs []string
}

// Lookup returns the _ids of the documents of coll that meet where and
// residual (a superset is fine), reading an index led by where's
// conditions. The embedded store's MatchingIDs.
type Lookup interface {
	MatchingIDs(ctx context.Context, coll string, where, residual []Cond) ([]string, error)
	// MatchingVersions is MatchingIDs with each match's value of the
	// numeric or date (Unix milliseconds) field versionPath, read from the
	// index's rows without reading the documents (NoValue: unknown, read
	// the document).
	MatchingVersions(ctx context.Context, coll string, where, residual []Cond, versionPath string) (map[string]int64, error)
	// LatestIDs returns the _ids of at most limit documents meeting where,
	// those with the greatest values of orderPath.
	LatestIDs(ctx context.Context, coll string, where []Cond, orderPath string, limit int) ([]string, error)
	// IDsAfter returns the _ids of at most limit documents, those whose
	// _id comes after after ("": from the first), in _id order, from the
	// _id index. An error wrapping errors.ErrUnsupported: the store does
	// not read them (an older one over the wire).
	IDsAfter(ctx context.Context, coll, after string, limit int) ([]string, error)
	// IDsBefore is IDsAfter the other way: _ids before before ("": from
	// the last), in descending _id order.
	IDsBefore(ctx context.Context, coll, before string, limit int) ([]string, error)
	// MatchingIDsAfter is IDsAfter over the documents that meet where (a
	// Clause: its first condition has In values), from an index of
	// where's fields then _id, partial as where says. An error wrapping
	// errors.ErrUnsupported: the store does not read them (an older one
	// over the wire).
	MatchingIDsAfter(ctx context.Context, coll string, where []Cond, after string, limit int) ([]string, error)
}

// Reader reads one collection by Filters.
type Reader struct {
	Coll *mongo.Collection
	// Lookup, if set, finds the matching _ids; nil: the filter is sent to
	// the store as it is (MongoDB, whose indexes serve it).
	Lookup Lookup
	// Exclude names fields not to read (big ones the caller does not use);
	// never a field of a Filter.
	Exclude []string

	read atomic.Int64 // documents read from the store, matching or not
}

// DocsRead is how many documents Find has read from the store, matched or
// not: the count a test compares with the matches, whatever the store holds.
func (r *Reader) DocsRead() int64 { return r.read.Load() }

// Find returns the documents matching f, in no particular order.
func (r *Reader) Find(ctx context.Context, f Filter) ([]bson.Raw, error) {
	if r.Lookup == nil {
		return r.storeFind(ctx, f.BSON(), options.Find())
	}
	ids, err := r.lookup(ctx, f)
	if err != nil {
		return nil, err
	}
	return r.fetch(ctx, ids, f)
}

// FindChanged is Find for a caller that holds some of the matches already:
// known gives the version (the numeric field versionPath) it holds of each.
// It returns the matches it read, and the _ids of the matches whose stored
// version equals the one known, which it did not read: a document at a
// version it has had before is that document. With a Lookup the versions
// come from the index read that finds the _ids, so a resync of thousands of
// unchanged documents reads none of them; without one (MongoDB) it reads
// every match, and unchanged is empty.
func (r *Reader) FindChanged(ctx context.Context, f Filter, versionPath string, known map[string]int64) (docs []bson.Raw, unchanged []string, err error) {
	if r.Lookup == nil {
		docs, err := r.Find(ctx, f)
		return docs, nil, err
	}
	versions, err := r.versions(ctx, f, versionPath)
	if err != nil {
		return nil, nil, err
	}
	read := map[string]bool{}
	for id, v := range versions {
		if k, ok := known[id]; ok && v != NoValue && k == v {
			unchanged = append(unchanged, id)
		} else {
			read[id] = true
		}
	}
	docs, err = r.fetch(ctx, read, f)
	if err != nil {
		return nil, nil, err
	}
	return docs, unchanged, nil
}

// versions is the value of the numeric field path of each match of f as
// the Lookup's index read gives it: NoValue where it gives none, and for f.IDs,
// which come from no index (the caller reads those documents).
func (r *Reader) versions(ctx context.Context, f Filter, path string) (map[string]int64, error) {
	versions := map[string]int64{}
	for _, id := range f.IDs {
		versions[id] = NoValue
	}
	for _, c := range f.Any {
		found, err := r.Lookup.MatchingVersions(ctx, r.Coll.Name(), c, f.All, path)
		if err != nil {
			return nil, fmt.Errorf("find in %s: %w", r.Coll.Name(), err)
		}
		for id, v := range found {
			if _, seen := versions[id]; !seen || v != NoValue {
				versions[id] = v
			}
		}
	}
	return versions, nil
}

// IDs returns the _ids of the documents matching f, and with a Lookup
// perhaps of some that no longer do (for a caller that reads each document
// afresh anyway); it reads no document then.
func (r *Reader) IDs(ctx context.Context, f Filter) ([]string, error) {
	if r.Lookup == nil { // the documents' _ids alone
		ids, err := FindIDs(ctx, r.Coll, f.BSON(), nil)
		if err != nil {
			return nil, fmt.Errorf("find in %s: %w", r.Coll.Name(), err)
		}
		r.read.Add(int64(len(ids)))
		return ids, nil
	}
	set, err := r.lookup(ctx, f)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(set))
	for id := range set {
		ids = append(ids, id)
	}
	return ids, nil
}

// lookup is the set of _ids the Lookup finds for f, with f.IDs.
func (r *Reader) lookup(ctx context.Context, f Filter) (map[string]bool, error) {
	ids := map[string]bool{}
	for _, id := range f.IDs {
		ids[id] = true
	}
	for _, c := range f.Any {
		found, err := r.Lookup.MatchingIDs(ctx, r.Coll.Name(), c, f.All)
		if err != nil {
			return nil, fmt.Errorf("find in %s: %w", r.Coll.Name(), err)
		}
		for _, id := range found {
			ids[id] = true
		}
	}
	return ids, nil
}

// storeFind sends filter to the store as it is.
func (r *Reader) storeFind(ctx context.Context, filter bson.D, opts *options.FindOptionsBuilder) ([]bson.Raw, error) {
	return r.find(ctx, filter, opts.SetProjection(r.projection()))
}

// find is storeFind with the projection opts give.
func (r *Reader) find(ctx context.Context, filter bson.D, opts *options.FindOptionsBuilder) ([]bson.Raw, error) {
	cur, err := r.Coll.Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("find in %s: %w", r.Coll.Name(), err)
	}
	var docs []bson.Raw
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("find in %s: %w", r.Coll.Name(), err)
	}
	r.read.Add(int64(len(docs)))
	return docs, nil
}

func (r *Reader) projection() bson.D {
	p := bson.D{}
	for _, f := range r.Exclude {
		p = append(p, bson.E{Key: f, Value: 0})
	}
	return p
}

// Latest returns at most limit documents meeting where (an index-led
// Clause), those with the greatest values of orderPath (a date or a
// number), greatest first.
func (r *Reader) Latest(ctx context.Context, where Clause, orderPath string, limit int) ([]bson.Raw, error) {
	if r.Lookup == nil {
		return r.storeFind(ctx, conds(where), options.Find().SetSort(bson.D{{Key: orderPath, Value: -1}}).SetLimit(int64(limit)))
	}
	found, err := r.Lookup.LatestIDs(ctx, r.Coll.Name(), where, orderPath, limit)
	if err != nil {
		return nil, fmt.Errorf("find in %s: %w", r.Coll.Name(), err)
	}
	ids := make(map[string]bool, len(found))
	for _, id := range found {
		ids[id] = true
	}
	docs, err := r.fetch(ctx, ids, Filter{Any: []Clause{where}})
	if err != nil {
		return nil, err
	}
	path := strings.Split(orderPath, ".")
	slices.SortFunc(docs, func(a, b bson.Raw) int { // greatest first
		return compareValues(b.Lookup(path...), a.Lookup(path...))
	})
	return docs, nil
}

// Scan passes the documents whose _id comes after after ("": from the
// first) and that meet every condition of all to keep, in _id order (the
// order of a sort by _id, as a list's pages have it), until keep has
// returned true want times, or an error (which Scan returns), or none is
// left. It reads their _ids by the Lookup's IDsAfter a batch at a time,
// then each batch's documents by _id (see scan). So a page of a list in
// _id order costs about the documents it passes over, not every document
// the store holds, as a find with {_id: {$gt: after}} and a sort by _id
// does on the embedded store.
//
// An error wrapping errors.ErrUnsupported: there is no Lookup, it reads no
// _id order, or the _ids it gave were not in the strings' order (an _id
// with a character before '#'); the caller drops what keep was given and
// sends its filter to the store.
func (r *Reader) Scan(ctx context.Context, after string, want int, all []Cond, keep func(bson.Raw) (bool, error)) error {
	if r.Lookup == nil {
		return fmt.Errorf("scan %s: no lookup: %w", r.Coll.Name(), errors.ErrUnsupported)
	}
	return r.scan(ctx, want, all, keep, func(n int) ([]string, error) {
		ids, err := r.Lookup.IDsAfter(ctx, r.Coll.Name(), after, n)
		if err != nil {
			return nil, fmt.Errorf("scan %s: %w", r.Coll.Name(), err)
		}
		for _, id := range ids {
			if after != "" && id <= after {
				return nil, fmt.Errorf("scan %s: _id %q after %q: %w", r.Coll.Name(), id, after, errors.ErrUnsupported)
			}
			after = id
		}
		return ids, nil
	})
}

// ScanWhere is Scan over the documents that also meet where, a Clause
// (the API's lists of an ended status: the status, from the index of the
// ended jobs): it reads their _ids by the Lookup's MatchingIDsAfter, so a
// page of a status few documents have reads those documents, not every
// document after its cursor. Errors as Scan's (errors.ErrUnsupported: the
// store reads no such _ids; the caller scans with Scan, or sends its
// filter to the store).
func (r *Reader) ScanWhere(ctx context.Context, where Clause, after string, want int, all []Cond, keep func(bson.Raw) (bool, error)) error {
	if r.Lookup == nil {
		return fmt.Errorf("scan %s where %v: no lookup: %w", r.Coll.Name(), where, errors.ErrUnsupported)
	}
	return r.scan(ctx, want, append(slices.Clone(all), where...), keep, func(n int) ([]string, error) {
		ids, err := r.Lookup.MatchingIDsAfter(ctx, r.Coll.Name(), where, after, n)
		if err != nil {
			return nil, fmt.Errorf("scan %s where %v: %w", r.Coll.Name(), where, err)
		}
		for _, id := range ids {
			if after != "" && id <= after {
				return nil, fmt.Errorf("scan %s where %v: _id %q after %q: %w", r.Coll.Name(), where, id, after, errors.ErrUnsupported)
			}
			after = id
		}
		return ids, nil
	})
}

// AllWhere returns every document that meets where and all, in _id
// order: with a Lookup as ScanWhere reads them (the _ids from its index of
// where's fields then _id, the index a page of them reads too, so that one
// index serves both), else, or when ScanWhere cannot (errors.ErrUnsupported),
// by a find sent to the store.
func (r *Reader) AllWhere(ctx context.Context, where Clause, all []Cond) ([]bson.Raw, error) {
	var docs []bson.Raw
	err := r.ScanWhere(ctx, where, "", math.MaxInt, all, func(d bson.Raw) (bool, error) {
		docs = append(docs, d)
		return true, nil
	})
	if !errors.Is(err, errors.ErrUnsupported) {
		return docs, err
	}
	return r.storeFind(ctx, Filter{All: all, Any: []Clause{where}}.BSON(), options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
}

// ScanWhereOr is ScanWhere over the documents that meet one of wheres or
// whose _id is one of ids (in any order; those up to after are left out),
// merged in _id order: for a list whose matches indexes hold but for a
// few they leave out, which the caller found otherwise (the API's lists
// by label: the ended jobs from an index of the label, the active ones by
// theirs). wheres are not added to all: a document of ids need not meet
// them. Errors as ScanWhere's.
func (r *Reader) ScanWhereOr(ctx context.Context, wheres []Clause, ids []string, after string, want int, all []Cond, keep func(bson.Raw) (bool, error)) error {
	if r.Lookup == nil {
		return fmt.Errorf("scan %s where %v: no lookup: %w", r.Coll.Name(), wheres, errors.ErrUnsupported)
	}
	extra := slices.Sorted(slices.Values(ids))
	return r.scan(ctx, want, all, keep, func(n int) ([]string, error) {
		// The first n of the union are among each one's first n.
		extra = slices.DeleteFunc(extra, func(id string) bool { return id <= after })
		merged := slices.Clone(extra[:min(n, len(extra))])
		for _, where := range wheres {
			got, err := r.Lookup.MatchingIDsAfter(ctx, r.Coll.Name(), where, after, n)
			if err != nil {
				return nil, fmt.Errorf("scan %s where %v: %w", r.Coll.Name(), where, err)
			}
			for i, id := range got {
				if after != "" && id <= after || i > 0 && id <= got[i-1] {
					return nil, fmt.Errorf("scan %s where %v: _id %q out of order: %w", r.Coll.Name(), where, id, errors.ErrUnsupported)
				}
			}
			merged = append(merged, got...)
		}
		merged = slices.Compact(slices.Sorted(slices.Values(merged)))
		merged = merged[:min(n, len(merged))]
		if len(merged) > 0 {
			after = merged[len(merged)-1]
		}
		return merged, nil
	})
}

// ScanBack is Scan the other way: the documents whose _id comes before
// before ("": from the last), in descending _id order (newest first, as
// the web view's job pages show them), read by the Lookup's IDsBefore.
func (r *Reader) ScanBack(ctx context.Context, before string, want int, all []Cond, keep func(bson.Raw) (bool, error)) error {
	if r.Lookup == nil {
		return fmt.Errorf("scan %s back: no lookup: %w", r.Coll.Name(), errors.ErrUnsupported)
	}
	return r.scanInOrder(ctx, want, all, keep, descending, func(n int) ([]string, error) {
		ids, err := r.Lookup.IDsBefore(ctx, r.Coll.Name(), before, n)
		if err != nil {
			return nil, fmt.Errorf("scan %s back: %w", r.Coll.Name(), err)
		}
		for _, id := range ids {
			if before != "" && id >= before {
				return nil, fmt.Errorf("scan %s back: _id %q before %q: %w", r.Coll.Name(), id, before, errors.ErrUnsupported)
			}
			before = id
		}
		return ids, nil
	})
}

// ScanIDs is Scan over the documents ids, in their order (ascending, as
// a list's pages have them): for a list whose candidates an index gives
// (IDs), of which a page reads only as many as it takes.
func (r *Reader) ScanIDs(ctx context.Context, ids []string, want int, all []Cond, keep func(bson.Raw) (bool, error)) error {
	return r.scan(ctx, want, all, keep, func(n int) ([]string, error) {
		batch := ids[:min(n, len(ids))]
		ids = ids[len(batch):]
		return batch, nil
	})
}

// scan is Scan's and ScanIDs' loop: next gives the next n _ids (fewer at
// the end). It reads want _ids to begin with, then as many as the
// documents kept so far say the rest will take (twice as many as the last
// while none was kept), each batch at most maxScanBatch, and each batch's
// documents by _id. want may be math.MaxInt: every document.
func (r *Reader) scan(ctx context.Context, want int, all []Cond, keep func(bson.Raw) (bool, error), next func(n int) ([]string, error)) error {
	return r.scanInOrder(ctx, want, all, keep, strings.Compare, next)
}

// descending orders _ids newest first.
func descending(a, b string) int { return strings.Compare(b, a) }

// scanInOrder is scan, each batch's documents passed to keep in order (of
// their _ids), which is the order next gives them in.
func (r *Reader) scanInOrder(ctx context.Context, want int, all []Cond, keep func(bson.Raw) (bool, error), order func(a, b string) int, next func(n int) ([]string, error)) error {
	batch, kept, seen := min(max(want, 1), maxScanBatch), 0, 0
	for {
		ids, err := next(batch)
		if err != nil {
			return err
		}
		set := make(map[string]bool, len(ids))
		for _, id := range ids {
			set[id] = true
		}
		docs, err := r.fetch(ctx, set, Filter{All: all, IDs: ids})
		if err != nil {
			return err
		}
		slices.SortFunc(docs, func(a, b bson.Raw) int { return order(idOf(a), idOf(b)) })
		for _, d := range docs {
			ok, err := keep(d)
			if err != nil {
				return err
			}
			if ok {
				if kept++; kept >= want {
					return nil
				}
			}
		}
		if len(ids) < batch {
			return nil
		}
		seen += len(ids)
		if kept == 0 {
			batch = min(2*batch, maxScanBatch)
		} else { // in floats: want may be math.MaxInt (every document)
			batch = int(max(min(float64(want-kept)*float64(seen)/float64(kept), maxScanBatch), 1))
		}
	}
}

// idOf is doc's _id if it is a string.
func idOf(doc bson.Raw) string {
	id, _ := doc.Lookup("_id").StringValueOK()
	return id
}

// maxScanBatch bounds the _ids one of Scan's batches asks for: the
// documents of one batch are held at once.
const maxScanBatch = 1000

// compareValues orders dates and numbers; anything else sorts first.
func compareValues(a, b bson.RawValue) int {
	num := func(v bson.RawValue) float64 {
		if t, ok := v.DateTimeOK(); ok {
			return float64(t)
		}
		if f, ok := v.AsFloat64OK(); ok {
			return f
		}
		return math.Inf(-1)
	}
	return cmp.Compare(num(a), num(b))
}

// fetchers is how many reads by _id Find has in flight, and fetchBatch
// how many documents each asks for ({_id: {$in: [...]}}): the embedded
// store's proxy answers those from SQLite by the _id index (package
// ferretembed, finddirect.go). Under the fault suite's load a new
// scheduler leader's resync took 0.7–2.4 s for 236–275 active jobs read
// one by one, and 0.3–0.37 s for 287–394 read this way (docs/faults.md).
// Less than FerretDB's first batch (101), so that each is answered in one
// reply.
const (
	fetchers   = 4
	fetchBatch = 100
)

// fetch reads the documents ids and keeps those that still match f.
func (r *Reader) fetch(ctx context.Context, ids map[string]bool, f Filter) ([]bson.Raw, error) {
	work := make(chan bson.A)
	var (
		mu   sync.Mutex
		docs []bson.Raw
		errs []error
		wg   sync.WaitGroup
	)
	for range fetchers {
		wg.Go(func() {
			for batch := range work {
				var got []bson.Raw
				cur, err := r.Coll.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: batch}}}}, options.Find().SetProjection(r.projection()))
				if err == nil {
					err = cur.All(ctx, &got)
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				r.read.Add(int64(len(got)))
				for _, raw := range got {
					if f.Matches(raw) {
						docs = append(docs, raw)
					}
				}
				mu.Unlock()
			}
		})
	}
	batch := bson.A{}
	for id := range ids {
		if ctx.Err() != nil {
			break
		}
		if batch = append(batch, id); len(batch) == fetchBatch {
			work <- batch
			batch = bson.A{}
		}
	}
	if len(batch) > 0 && ctx.Err() == nil {
		work <- batch
	}
	close(work)
	wg.Wait()
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		return nil, fmt.Errorf("find in %s: %w", r.Coll.Name(), err)
	}
	return docs, nil
}

// FindAll is Find decoding each document into a T.
func FindAll[T any](ctx context.Context, r *Reader, f Filter) ([]T, error) {
	docs, err := r.Find(ctx, f)
	if err != nil {
		return nil, err
	}
	return Decode[T](r, docs)
}

// AllWhereOf is AllWhere decoding each document into a T.
func AllWhereOf[T any](ctx context.Context, r *Reader, where Clause, all []Cond) ([]T, error) {
	docs, err := r.AllWhere(ctx, where, all)
	if err != nil {
		return nil, err
	}
	return Decode[T](r, docs)
}

// Decode decodes docs, read by r, each into a T.
func Decode[T any](r *Reader, docs []bson.Raw) ([]T, error) {
	out := make([]T, len(docs))
	for i, d := range docs {
		if err := bson.Unmarshal(d, &out[i]); err != nil {
			return nil, fmt.Errorf("decode from %s: %w", r.Coll.Name(), err)
		}
	}
	return out, nil
}

// BSON is f as a MongoDB filter.
func (f Filter) BSON() bson.D {
	var or bson.A
	for _, c := range f.Any {
		or = append(or, conds(c))
	}
	if len(f.IDs) > 0 {
		ids := make(bson.A, len(f.IDs))
		for i, id := range f.IDs {
			ids[i] = id
		}
		or = append(or, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
	}
	d := conds(f.All)
	if len(or) == 0 { // matches nothing, as Find with a Lookup
		return append(d, bson.E{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{}}}})
	}
	return append(d, bson.E{Key: "$or", Value: or})
}

func conds(cs []Cond) bson.D {
	d := bson.D{}
	for _, c := range cs {
		if len(c.In) == 0 {
			d = append(d, bson.E{Key: c.Path, Value: bson.D{{Key: "$exists", Value: false}}})
			continue
		}
		d = append(d, bson.E{Key: c.Path, Value: bson.D{{Key: "$in", Value: bson.A(c.In)}}})
	}
	return d
}

// Matches reports whether doc meets f.
func (f Filter) Matches(doc bson.Raw) bool {
	if !all(doc, f.All) {
		return false
	}
	for _, c := range f.Any {
		if all(doc, c) {
			return true
		}
	}
	id, ok := doc.Lookup("_id").StringValueOK()
	for _, want := range f.IDs {
		if ok && id == want {
			return true
		}
	}
	return false
}

func all(doc bson.Raw, cs []Cond) bool {
	for _, c := range cs {
		v, err := doc.LookupErr(strings.Split(c.Path, ".")...)
		if len(c.In) == 0 {
			if err == nil {
				return false
			}
			continue
		}
		if err != nil || !in(v, c.In) {
			return false
		}
	}
	return true
}

func in(v bson.RawValue, vals []any) bool {
	for _, want := range vals {
		switch w := want.(type) {
		case string:
			if s, ok := v.StringValueOK(); ok && s == w {
				return true
			}
		case bool:
			if b, ok := v.BooleanOK(); ok && b == w {
				return true
			}
		}
	}
	return false
}
