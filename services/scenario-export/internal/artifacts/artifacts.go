// Package artifacts is the export service's MongoDB adapter: the artifact
// records the API writes when workers upload (collection artifacts, bytes in
// the GridFS bucket artifacts), the export documents (collection
// scenario_exports, written through the outbox) and the zips (GridFS bucket
// export_zips). The document shapes are the contract with services/api,
// described in docs/scenario-export.md.
package artifacts

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/avxrm/rm/pkg/blob"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/exportdoc"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/scenario-export/internal/zipper"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Collection and bucket names.
const (
	ArtifactsColl  = "artifacts"
	ExportsColl    = exportdoc.Collection
	ArtifactBucket = "artifacts"   // artifacts.files, artifacts.chunks
	ZipBucket      = "export_zips" // export_zips.files, export_zips.chunks
)

// Collections lists every collection the service reads or writes, for
// FerretDB's _id index.
var Collections = []string{ArtifactsColl, ExportsColl,
	ArtifactBucket + ".files", ArtifactBucket + ".chunks", ZipBucket + ".files", ZipBucket + ".chunks"}

// ErrNotFound: no such export (or it was deleted).
var ErrNotFound = errors.New("not found")

// Artifact is a document of collection artifacts. Its _id is
// "<job id>/s/<sample id>/<path>" or "<job id>/a/<declaration>/<path>" (an
// empty declaration for common asset data), so a re-upload finds its
// predecessor by _id and a job's artifacts sort by kind, group and path.
type Artifact struct {
	ID          string    `bson:"_id"`
	JobID       string    `bson:"job_id"`
	Kind        string    `bson:"kind"`
	SampleID    string    `bson:"sample_id,omitempty"`
	Declaration string    `bson:"declaration,omitempty"`
	Path        string    `bson:"path"`
	Size        int64     `bson:"size"`
	SHA256      string    `bson:"sha256"`
	FileID      string    `bson:"file_id"`
	CreatedAt   time.Time `bson:"created_at"`
}

// Entry is the artifact as the zipper sees it; Ref is the blob id.
func (a Artifact) Entry() zipper.Entry {
	return zipper.Entry{Kind: a.Kind, SampleID: a.SampleID, Declaration: a.Declaration, Path: a.Path,
		Size: a.Size, SHA256: a.SHA256, Ref: a.FileID}
}

// Export statuses.
const (
	StatusPending  = exportdoc.StatusPending
	StatusBuilding = exportdoc.StatusBuilding
	StatusReady    = exportdoc.StatusReady
	StatusFailed   = exportdoc.StatusFailed
)

// Export is a document of collection scenario_exports: the record the API
// and this service share (package exportdoc).
type Export = exportdoc.ScenarioExport

// Claim says which builder works on an export, until when.
type Claim = exportdoc.Claim

// Loaded is an export with the unsent events stored beside it.
type Loaded struct {
	Export  Export
	Pending []outbox.Entry
}

// Store reads and writes the service's documents.
type Store struct {
	DB        *mongo.Database
	Outbox    *outbox.Outbox
	Artifacts *blob.Bucket
	Zips      *blob.Bucket
	// Lookup, if set, finds a job's artifacts by its index (the embedded
	// store's); nil: by the store's (MongoDB's, Ensure).
	Lookup indexed.Lookup
}

// NewStore returns the store of db; lookup may be nil.
func NewStore(db *mongo.Database, ob *outbox.Outbox, lookup indexed.Lookup) *Store {
	return &Store{DB: db, Outbox: ob, Artifacts: blob.NewBucket(db, ArtifactBucket, 0), Zips: blob.NewBucket(db, ZipBucket, 0), Lookup: lookup}
}

func (s *Store) exports() *mongo.Collection { return s.DB.Collection(ExportsColl) }

// Ensure creates the collections (so FerretDB can index their _id) and,
// without a Lookup, the indexes of job_id and _id that reading a job's
// artifacts and exports uses on MongoDB (the API makes the same), and those
// of the exports' status and expiry that the sweep reads by. With one (the
// embedded store) they would only cost writes: FerretDB reads no index
// but _id's, and the Lookup makes its own.
func (s *Store) Ensure(ctx context.Context) error {
	have, err := s.DB.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return fmt.Errorf("list collections: %w", err)
	}
	exists := map[string]bool{}
	for _, c := range have {
		exists[c] = true
	}
	for _, c := range Collections {
		if exists[c] {
			continue
		}
		var ce mongo.CommandError
		if err := s.DB.CreateCollection(ctx, c); err != nil && !(errors.As(err, &ce) && ce.Code == 48) {
			return fmt.Errorf("create collection %s: %w", c, err)
		}
	}
	if s.Lookup != nil {
		return nil
	}
	byJob := bson.D{{Key: "job_id", Value: 1}, {Key: "_id", Value: 1}}
	for _, c := range []string{ArtifactsColl, ExportsColl} {
		if _, err := s.DB.Collection(c).Indexes().CreateOne(ctx, mongo.IndexModel{Keys: byJob}); err != nil {
			return fmt.Errorf("create index on %s: %w", c, err)
		}
	}
	// The sweep's reads (UnfinishedExports, ExpiredExports).
	for _, keys := range []bson.D{{{Key: "status", Value: 1}}, {{Key: "expires_at", Value: 1}}} {
		if _, err := s.exports().Indexes().CreateOne(ctx, mongo.IndexModel{Keys: keys}); err != nil {
			return fmt.Errorf("create index on %s: %w", ExportsColl, err)
		}
	}
	return nil
}

// Load returns export id. Only {_id} is in the filter: FerretDB pushes that
// down to SQLite and nothing else, so tombstones are skipped here in Go.
func (s *Store) Load(ctx context.Context, id string) (Loaded, error) {
	var out Loaded
	raw, err := s.exports().FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return out, fmt.Errorf("export %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return out, fmt.Errorf("load export %s: %w", id, err)
	}
	var env outbox.Envelope
	if err := bson.Unmarshal(raw, &env); err != nil {
		return out, fmt.Errorf("decode export %s: %w", id, err)
	}
	if env.Deleted {
		return out, fmt.Errorf("export %s: %w", id, ErrNotFound)
	}
	if err := bson.Unmarshal(raw, &out.Export); err != nil {
		return out, fmt.Errorf("decode export %s: %w", id, err)
	}
	out.Pending = env.Outbox
	return out, nil
}

// Replace stores e over the version prev was read at, with evs.
// outbox.ErrVersionConflict when it changed meanwhile.
func (s *Store) Replace(ctx context.Context, prev Loaded, e Export, evs ...events.Event) error {
	return s.Outbox.Replace(ctx, s.exports(), e.ID, prev.Export.Version, e.Version, prev.Pending, e, evs...)
}

// Delete removes the export read as prev with evs, then its zip.
func (s *Store) Delete(ctx context.Context, prev Loaded, evs ...events.Event) error {
	if err := s.Outbox.Delete(ctx, s.exports(), prev.Export.ID, prev.Export.Version, prev.Pending, evs...); err != nil {
		return fmt.Errorf("delete export %s: %w", prev.Export.ID, err)
	}
	if prev.Export.ZipFileID != "" {
		return s.Zips.Delete(ctx, prev.Export.ZipFileID)
	}
	return nil
}

// RenewClaim extends owner's claim on export id at version to until; false
// when the claim is no longer owner's (the export changed or was taken).
func (s *Store) RenewClaim(ctx context.Context, id string, version int64, owner string, until time.Time) (bool, error) {
	res, err := s.exports().UpdateOne(ctx,
		bson.D{{Key: "_id", Value: id}, {Key: "version", Value: version}, {Key: "claim.owner", Value: owner}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "claim.until", Value: until}}}})
	if err != nil {
		return false, fmt.Errorf("renew claim on export %s: %w", id, err)
	}
	return res.MatchedCount == 1, nil
}

// The sweep's reads of the exports (Service.Sweep, every 30 s). On the
// embedded store a find by status or by expires_at has FerretDB decode
// every export the store holds; there they come from indexes (the
// Lookup's): the exports waiting for a builder or being built from a
// partial index of those alone, the expiries from the rows of an index of
// every export, no export read. Both may give more than match (the caller
// loads each export and checks it).
var (
	// unfinishedExports leads the partial index of the exports pending
	// or building.
	unfinishedExports = indexed.Clause{{Path: "status", In: []any{StatusPending, StatusBuilding},
		Partial: []any{StatusPending, StatusBuilding}}}
	// exportsAll leads the index of every export, whose rows give their
	// expiries.
	exportsAll = []indexed.Cond{{Path: "status", In: []any{StatusPending, StatusBuilding, StatusReady, StatusFailed}}}
)

// UnfinishedExports returns the _ids of the live exports pending or
// building.
func (s *Store) UnfinishedExports(ctx context.Context) ([]string, error) {
	if s.Lookup == nil {
		return s.find(ctx, bson.D{{Key: "status", Value: bson.D{{Key: "$in", Value: bson.A{StatusPending, StatusBuilding}}}}})
	}
	r := &indexed.Reader{Coll: s.exports(), Lookup: s.Lookup}
	ids, err := r.IDs(ctx, indexed.Filter{All: []indexed.Cond{outbox.NotDeletedCond()}, Any: []indexed.Clause{unfinishedExports}})
	if err != nil {
		return nil, fmt.Errorf("find unfinished exports: %w", err)
	}
	return ids, nil
}

// ExpiredExports returns the _ids of the live exports whose expires_at
// is before now.
func (s *Store) ExpiredExports(ctx context.Context, now time.Time) ([]string, error) {
	byStore := bson.D{{Key: "expires_at", Value: bson.D{{Key: "$lt", Value: now}}}}
	if s.Lookup == nil {
		return s.find(ctx, byStore)
	}
	expiries, err := s.Lookup.MatchingVersions(ctx, ExportsColl, exportsAll, []indexed.Cond{outbox.NotDeletedCond()}, "expires_at")
	if errors.Is(err, errors.ErrUnsupported) { // an older store over the wire
		return s.find(ctx, byStore)
	}
	if err != nil {
		return nil, fmt.Errorf("read the exports' expiries: %w", err)
	}
	var ids []string
	for id, ms := range expiries {
		if ms == indexed.NoValue || ms < now.UnixMilli() { // NoValue: not in the row; the caller reads the export
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// find returns the live exports matching filter, ids only, from a find
// sent to the store.
func (s *Store) find(ctx context.Context, filter bson.D) ([]string, error) {
	ids, err := indexed.FindIDs(ctx, s.exports(), append(filter, outbox.NotDeleted()), nil)
	if err != nil {
		return nil, fmt.Errorf("find exports: %w", err)
	}
	return ids, nil
}

// JobArtifacts returns every artifact record of job.
func (s *Store) JobArtifacts(ctx context.Context, jobID string) ([]Artifact, error) {
	// The index of job_id and _id, which the API's pages of a job's
	// artifacts read too: one index on the embedded store.
	r := &indexed.Reader{Coll: s.DB.Collection(ArtifactsColl), Lookup: s.Lookup}
	out, err := indexed.AllWhereOf[Artifact](ctx, r, indexed.Clause{{Path: "job_id", In: []any{jobID}}}, nil)
	if err != nil {
		return nil, fmt.Errorf("list artifacts of %s: %w", jobID, err)
	}
	return out, nil
}

// EachFile calls fn with every files document of b, one of the store's
// buckets, as b.Each does. With a Lookup they are read as a page of a list
// is: their _ids from the embedded store's _id index, then the documents
// 100 at a time by _id, which the store answers from SQLite; b.Each's find
// of the whole collection had FerretDB decode every document, the most of
// what the orphan sweep costs per blob stored. Should the index not serve
// (its _ids out of Go's order, errors.ErrUnsupported; no _id index yet on a
// collection the store made moments ago), the rest come from b.Each,
// without the documents already passed. An error of fn ends it.
func (s *Store) EachFile(ctx context.Context, b *blob.Bucket, fn func(blob.File) error) error {
	if s.Lookup == nil {
		return b.Each(ctx, fn)
	}
	passed := map[string]bool{}
	var fnErr error
	r := &indexed.Reader{Coll: b.Files, Lookup: s.Lookup}
	err := r.Scan(ctx, "", math.MaxInt, nil, func(d bson.Raw) (bool, error) {
		var f blob.File
		if err := bson.Unmarshal(d, &f); err != nil {
			return false, fmt.Errorf("decode blob: %w", err)
		}
		passed[f.ID] = true
		if fnErr = fn(f); fnErr != nil {
			return false, fnErr
		}
		return true, nil
	})
	switch {
	case fnErr != nil:
		return fnErr
	case err != nil:
		return b.Each(ctx, func(f blob.File) error {
			if passed[f.ID] {
				return nil
			}
			return fn(f)
		})
	}
	return nil
}

// ArtifactFileIDs returns the blob each artifact record of ids points to,
// by record _id; a record that does not exist is left out. One read by
// _id, which the embedded store answers from its index.
func (s *Store) ArtifactFileIDs(ctx context.Context, ids []string) (map[string]string, error) {
	cur, err := s.DB.Collection(ArtifactsColl).Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}},
		options.Find().SetProjection(bson.D{{Key: "file_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("load artifacts: %w", err)
	}
	var docs []Artifact
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("load artifacts: %w", err)
	}
	out := make(map[string]string, len(docs))
	for _, a := range docs {
		out[a.ID] = a.FileID
	}
	return out, nil
}
