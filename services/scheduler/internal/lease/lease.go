// Package lease owns the durable capacity ledger of the scheduler: one MongoDB
// document holding every live lease, so that an admission pass grants and
// releases across several queues in one conditional single-document write (no
// transactions), and a fencing epoch so that a deposed scheduler's late writes
// fail.
//
// The document is {_id: "ledger", epoch, version, held}, held the leases
// {<holder>: [{queue, count}]} in the stored form of package
// pkg/events/ledger (one string). Every write is filtered on the version it
// read and the writer's epoch and increments the version, so the ledger is a
// compare-and-swap register: the in-memory copy of the one writer is always
// the document. A release is the removal of a key, which can happen once.
//
// It imports the MongoDB driver and nothing of NATS.
package lease

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/avxrm/rm/pkg/events/ledger"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Collection and document names; the API reads the same document for queue usage.
const (
	Collection = ledger.Collection
	LedgerID   = ledger.ID
)

var (
	// ErrFenced: the ledger carries a newer epoch than the writer's; another
	// scheduler is the leader and this one must stop writing.
	ErrFenced = errors.New("lease: fenced by a newer scheduler epoch")
	// ErrConflict: the ledger changed since it was read (at the same epoch).
	ErrConflict = errors.New("lease: ledger changed since it was read")
)

// Claim is a number of instances held on a queue (by id).
type Claim = ledger.Claim

// Ledger is the document, its leases decoded.
type Ledger struct {
	ID      string
	Epoch   int64
	Version int64
	Leases  map[string][]Claim
}

// Allocated returns the instances held on each queue.
func (l Ledger) Allocated() map[string]int { return ledger.Allocated(l.Leases) }

// Holders returns the lease holders, sorted.
func (l Ledger) Holders() []string { return slices.Sorted(maps.Keys(l.Leases)) }

// Store reads and writes the ledger.
type Store struct {
	coll *mongo.Collection
}

// New returns the store of db's ledger.
func New(db *mongo.Database) *Store { return &Store{coll: db.Collection(Collection)} }

// Ensure creates the collection and an empty ledger (epoch 0) unless they exist.
func (s *Store) Ensure(ctx context.Context) error {
	err := s.coll.Database().CreateCollection(ctx, Collection)
	var ce mongo.CommandError
	if err != nil && !(errors.As(err, &ce) && ce.Code == 48) {
		return fmt.Errorf("create collection %s: %w", Collection, err)
	}
	_, err = s.coll.InsertOne(ctx, ledger.Doc{ID: LedgerID, Held: ledger.Encode(nil)})
	if err != nil && !mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("create ledger: %w", err)
	}
	return nil
}

// Load reads the ledger.
func (s *Store) Load(ctx context.Context) (Ledger, error) {
	var d ledger.Doc
	if err := s.coll.FindOne(ctx, bson.D{{Key: "_id", Value: LedgerID}}).Decode(&d); err != nil {
		return Ledger{}, fmt.Errorf("load ledger: %w", err)
	}
	leases, err := d.Leases()
	if err != nil {
		return Ledger{}, fmt.Errorf("load ledger: %w", err)
	}
	return Ledger{ID: d.ID, Epoch: d.Epoch, Version: d.Version, Leases: leases}, nil
}

// RaiseEpoch makes epoch the ledger's epoch if it is newer than the current
// one, and returns the ledger as it then is. A scheduler that was leader with
// an older epoch can write nothing after this. ErrFenced if the ledger already
// carries a newer epoch than this one.
func (s *Store) RaiseEpoch(ctx context.Context, epoch int64) (Ledger, error) {
	_, err := s.coll.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: LedgerID}, {Key: "epoch", Value: bson.D{{Key: "$lt", Value: epoch}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "epoch", Value: epoch}}}, {Key: "$inc", Value: bson.D{{Key: "version", Value: int64(1)}}}})
	if err != nil {
		return Ledger{}, fmt.Errorf("raise ledger epoch to %d: %w", epoch, err)
	}
	l, err := s.Load(ctx)
	if err != nil {
		return l, err
	}
	if l.Epoch != epoch {
		return l, fmt.Errorf("raise ledger epoch to %d: ledger is at %d: %w", epoch, l.Epoch, ErrFenced)
	}
	return l, nil
}

// Change is what one admission pass does to the ledger.
type Change struct {
	Grants   map[string][]Claim // new leases, by holder
	Releases []string           // holders whose lease ends
}

// Empty reports whether c changes nothing.
func (c Change) Empty() bool { return len(c.Grants) == 0 && len(c.Releases) == 0 }

// Apply writes c in one conditional update of the ledger l (read at l.Version
// with epoch l.Epoch) and, on success, applies it to l as well, so that l stays
// the document. ErrFenced if a newer epoch has taken the ledger; ErrConflict if
// it changed otherwise (l is then stale: Load again).
func (s *Store) Apply(ctx context.Context, l *Ledger, c Change) error {
	if c.Empty() {
		return nil
	}
	// The whole ledger is written (the leases in one string: see package
	// ledger), so the write's cost is the bytes of the ledger, not a decode
	// of every lease by the store. It is a replacement, not a $set: on the
	// embedded store the proxy writes a conditional replacement by _id in
	// SQL itself (pkg/embedded/ferretembed, fastpath_direct.go): for a
	// job's document 0.56 ms of the write lock against FerretDB's 1.58
	// (BenchmarkDirect). The replacement has no "leases", the form before
	// 2026-12-01, as the $unset of the $set had.
	next := Ledger{Leases: maps.Clone(l.Leases)}
	next.Commit(c)
	res, err := s.coll.ReplaceOne(ctx,
		bson.D{{Key: "_id", Value: LedgerID}, {Key: "epoch", Value: l.Epoch}, {Key: "version", Value: l.Version}},
		ledger.Doc{ID: LedgerID, Epoch: l.Epoch, Version: l.Version + 1, Held: ledger.Encode(next.Leases)})
	if err != nil {
		return fmt.Errorf("write ledger version %d: %w", l.Version+1, err)
	}
	if res.MatchedCount == 0 {
		cur, lerr := s.Load(ctx)
		if lerr != nil {
			return fmt.Errorf("write ledger version %d: %w (then: %v)", l.Version+1, ErrConflict, lerr)
		}
		if cur.Epoch != l.Epoch {
			return fmt.Errorf("write ledger at epoch %d: ledger is at epoch %d: %w", l.Epoch, cur.Epoch, ErrFenced)
		}
		return fmt.Errorf("write ledger version %d: found version %d: %w", l.Version+1, cur.Version, ErrConflict)
	}
	l.Version++
	l.Leases = next.Leases
	return nil
}

// Commit applies c to l in memory, as Apply does once its write succeeded:
// releases first, then grants (a holder both released and granted keeps its
// new lease). It is pure; the admission property test drives it.
func (l *Ledger) Commit(c Change) {
	if l.Leases == nil {
		l.Leases = map[string][]Claim{}
	}
	for _, h := range c.Releases {
		delete(l.Leases, h)
	}
	for h, cs := range c.Grants {
		l.Leases[h] = slices.Clone(cs)
	}
}
