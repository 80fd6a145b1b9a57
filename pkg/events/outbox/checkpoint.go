package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The published-up-to checkpoint.
//
// A write publishes its events right after it is stored and does not write
// the document again to clear them: each Outbox (one per process) has an
// instance id, stamps every entry it stores with that id (By) and the time
// it began the write (At), and keeps the writes whose events are not yet
// published in memory. Every relay interval it stores its checkpoint in the
// outbox_checkpoints collection: every entry it stamped before UpTo is
// published. An entry is unsent while its At is not before its writer's
// checkpoint (entries without a stamp, written before checkpoints existed,
// are unsent; entries of an instance the store no longer knows are sent).
// So a job's change costs one write instead of two, and the relay finds no
// work in documents whose entries are below their writer's checkpoint.
//
// What a write stores carries the entries read with the document that are
// still unsent (a writer that died before publishing them), so they are not
// lost; published ones are dropped then. A relay sweep (at start, unless
// every earlier instance closed cleanly, and when another instance's
// checkpoint has not been renewed for staleAfter)
// publishes every unsent entry older than MinAge and clears them, then
// retires the stale instances: no sweep looks for their entries again.
// Publishing an entry twice is harmless within the stream's duplicate
// window (events.DuplicateWindow, 10 minutes), and only entries between a
// dead writer's last checkpoint and its death (one relay interval) can be
// published twice.
//
// Retiring keeps the instance's UpTo: an entry of it stamped at or after
// UpTo that a document still holds is an orphan, never published by that
// sweep. It can only be a write that reached the store after the sweep
// read: one held up in the network (a service cut off for longer than
// staleAfter whose connection resumes when it is back), or a process that
// stalled. Taking such entries for sent (as retiring did until 2026-12-01,
// with UpTo far in the future) lost their events, or let the scheduler
// hand a finished job's workers on before the job's end was in the stream
// (the fault suite's launcher cut-off). So an orphan stays unsent: a
// reader about to act on it publishes it (PublishUnsent), a sweep flushes
// it, and the next write of its document adopts it (stamps it as its own,
// publishes it, and drops it once its checkpoint passes it).

// CheckpointCollection holds one checkpoint document per outbox instance.
const CheckpointCollection = "outbox_checkpoints"

// staleAfterIntervals: an instance whose checkpoint is older than this many
// relay intervals (at least minStaleAfter) is taken for dead.
const (
	staleAfterIntervals = 10
	minStaleAfter       = 20 * time.Second
	retiredKeep         = 7 * 24 * time.Hour
)

type checkpointDoc struct {
	ID        string    `bson:"_id"`
	UpTo      time.Time `bson:"up_to"`
	RenewedAt time.Time `bson:"renewed_at"`
	Retired   bool      `bson:"retired,omitempty"`
	// Closed: the instance retired itself at a clean stop, everything it
	// wrote published (Close).
	Closed bool `bson:"closed,omitempty"`
}

// Close ends this instance once nothing writes through it any more (its
// services have stopped). When every write it stamped is published, it
// moves its checkpoint to now and marks it retired and closed: no relay
// sweeps for it when it stops renewing, and a relay that starts after
// every earlier instance closed so skips its first sweep (sweepAtStart),
// which reads every registered collection. With a write unpublished (NATS
// away) it leaves its checkpoint to go stale, and a sweep publishes what
// it left. A write after Close would be stamped after the checkpoint, so
// it stays unsent (an orphan, see above), not lost.
func (o *Outbox) Close(ctx context.Context) error {
	o.mu.Lock()
	c, registered, busy := o.ckpt, o.registered, len(o.pending) > 0
	o.mu.Unlock()
	if c == nil || !registered || busy {
		return nil
	}
	up := o.upTo()
	_, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: o.id}}, bson.D{{Key: "$set", Value: bson.D{
		{Key: "up_to", Value: up}, {Key: "renewed_at", Value: time.Now().UTC()},
		{Key: "retired", Value: true}, {Key: "closed", Value: true}}}})
	if err != nil {
		return fmt.Errorf("outbox: close checkpoint: %w", err)
	}
	return nil
}

// sweepAtStart reports whether the relay's first round sweeps: unless
// every other instance the checkpoints know closed (Close), one of them
// may have left entries unsent; with no checkpoint at all, the store may
// hold entries of before checkpoints. A failed read of them: sweep.
func (o *Outbox) sweepAtStart(ctx context.Context) bool {
	marks, err := o.readMarks(ctx)
	if err != nil {
		return true
	}
	others := 0
	for id, m := range marks {
		if id == o.id {
			continue
		}
		if !m.Closed {
			return true
		}
		others++
	}
	return others == 0
}

// inflight is a write whose events its writer has not published yet.
type inflight struct {
	coll    *mongo.Collection
	id      any
	deleted bool
	at      time.Time
	entries []Entry  // to publish, carried entries included
	own     []string // the ids of the entries this write stamped: the adopted ones, then its new ones
	fresh   []string // the tail of own that are its new entries: only they show it was stored (readBack)
	stored  bool     // the write committed; until then it may still fail
	unsure  bool     // the store's answer was lost: retryFailed reads the document back
}

// stamp gives the new entries of a write, and the orphans it adopts (see
// above), this instance's id and the write's time, and records the write as
// in flight; done must follow.
func (o *Outbox) stamp(coll *mongo.Collection, id any, deleted bool, entries, orphans []Entry) *inflight {
	o.mu.Lock()
	defer o.mu.Unlock()
	// Milliseconds, as the store keeps times; never back in time, so UpTo
	// never passes a later write.
	at := time.Now().UTC().Truncate(time.Millisecond)
	if at.Before(o.lastAt) {
		at = o.lastAt
	}
	o.lastAt = at
	w := &inflight{coll: coll, id: id, deleted: deleted, at: at, entries: entries}
	for _, list := range [][]Entry{orphans, entries} {
		for i := range list {
			list[i].By, list[i].At = o.id, at
			w.own = append(w.own, list[i].ID)
			o.unpublished[list[i].ID]++
		}
	}
	w.fresh = w.own[len(orphans):]
	o.pending[w] = struct{}{}
	return w
}

// done forgets a write: its events are published, or it never committed.
func (o *Outbox) done(w *inflight) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.pending[w]; !ok {
		return
	}
	delete(o.pending, w)
	for _, id := range w.own {
		if o.unpublished[id]--; o.unpublished[id] <= 0 {
			delete(o.unpublished, id)
		}
	}
}

// upTo is this instance's checkpoint: before the oldest write in flight.
func (o *Outbox) upTo() time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	up := time.Now().UTC().Truncate(time.Millisecond)
	if o.lastAt.After(up) {
		up = o.lastAt
	}
	o.lastAt = up // later writes are stamped at or after it, whatever the clock does
	for w := range o.pending {
		if w.at.Before(up) {
			up = w.at
		}
	}
	return up
}

// checkpoints is the checkpoint collection, once a collection is registered.
func (o *Outbox) checkpoints() *mongo.Collection {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ckpt
}

// register stores this instance's first checkpoint (nothing sent yet)
// before its first write, so that other relays know its entries.
func (o *Outbox) register(ctx context.Context) error {
	o.mu.Lock()
	done, c := o.registered, o.ckpt
	o.mu.Unlock()
	if done || c == nil {
		return nil
	}
	now := time.Now().UTC()
	_, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: o.id}},
		bson.D{{Key: "$setOnInsert", Value: bson.D{{Key: "up_to", Value: time.Time{}}, {Key: "renewed_at", Value: now}}}},
		options.UpdateOne().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("outbox: register checkpoint: %w", err)
	}
	o.mu.Lock()
	o.registered = true
	o.mu.Unlock()
	return nil
}

// renew stores this instance's checkpoint (once registered) and reads every
// instance's, caching them for sent; it reports whether another instance
// is stale.
func (o *Outbox) renew(ctx context.Context, staleAfter time.Duration) (bool, error) {
	c := o.checkpoints()
	if c == nil {
		return false, nil
	}
	o.mu.Lock()
	registered := o.registered
	o.mu.Unlock()
	now := time.Now().UTC()
	if registered {
		// An instance retired while it lived (its renewals held up for
		// staleAfter) is not any more: if it dies later, a sweep must
		// look for what it left. A replacement, which drops retired and
		// closed, rather than $set and $unset: the embedded store's proxy
		// writes a replacement by _id in SQL itself, and each instance
		// renews every interval.
		up := o.upTo()
		_, err := c.ReplaceOne(ctx, bson.D{{Key: "_id", Value: o.id}}, checkpointDoc{ID: o.id, UpTo: up, RenewedAt: now})
		if err != nil {
			return false, fmt.Errorf("outbox: renew checkpoint: %w", err)
		}
	}
	marks, err := o.readMarks(ctx)
	if err != nil {
		return false, err
	}
	stale := false
	for _, m := range marks {
		if m.ID != o.id && !m.Retired && now.Sub(m.RenewedAt) > staleAfter {
			stale = true
		}
		if m.Retired && now.Sub(m.RenewedAt) > retiredKeep {
			_, _ = c.DeleteOne(ctx, bson.D{{Key: "_id", Value: m.ID}})
		}
	}
	return stale, nil
}

// readMarks reads every checkpoint and caches them.
func (o *Outbox) readMarks(ctx context.Context) (map[string]checkpointDoc, error) {
	c := o.checkpoints()
	marks := map[string]checkpointDoc{}
	if c == nil {
		return marks, nil
	}
	cur, err := c.Find(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("outbox: read checkpoints: %w", err)
	}
	var docs []checkpointDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("outbox: read checkpoints: %w", err)
	}
	for _, d := range docs {
		marks[d.ID] = d
	}
	o.mu.Lock()
	o.marks = marks
	o.mu.Unlock()
	return marks, nil
}

// retire marks the instances ids as swept: no sweep looks for their
// entries again. Their UpTo stays: entries at or after it are orphans.
func (o *Outbox) retire(ctx context.Context, ids []string) error {
	c := o.checkpoints()
	for _, id := range ids {
		_, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "retired", Value: true}, {Key: "renewed_at", Value: time.Now().UTC()}}}})
		if err != nil {
			return fmt.Errorf("outbox: retire instance %s: %w", id, err)
		}
	}
	return nil
}

// unsent reports whether en may not have been published, by marks (the
// checkpoints as read) and, for this instance's own entries, by what it
// knows in memory.
func (o *Outbox) unsent(en Entry, marks map[string]checkpointDoc) bool {
	if en.By == "" {
		return true // written before checkpoints: cleared once published
	}
	if en.By == o.id { // exactly those of writes not yet done
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.unpublished[en.ID] > 0
	}
	m, ok := marks[en.By]
	if !ok {
		return false // an instance retired long ago
	}
	return !en.At.Before(m.UpTo)
}

// carry returns the entries read with a document that a write must keep:
// those that may be unsent, and apart from them the orphans of retired
// instances, which the write adopts. Entries of an instance not (yet) in
// the cached checkpoints are kept unless a day old.
func (o *Outbox) carry(pending []Entry) (kept, orphans []Entry) {
	if len(pending) == 0 {
		return nil, nil
	}
	o.mu.Lock()
	marks := o.marks
	o.mu.Unlock()
	kept = make([]Entry, 0, len(pending))
	for _, en := range pending {
		m, known := marks[en.By]
		switch {
		case en.By != "" && en.By != o.id && !known:
			if time.Since(en.At) < 24*time.Hour {
				kept = append(kept, en)
			}
		case !o.unsent(en, marks):
		case known && m.Retired:
			orphans = append(orphans, en)
		default:
			kept = append(kept, en)
		}
	}
	return kept, orphans
}

// publishEntries publishes entries in order; an event NATS refuses for
// good is dropped (logged, counted). It stops at the first failure.
func (o *Outbox) publishEntries(ctx context.Context, coll *mongo.Collection, id any, entries []Entry) error {
	for _, en := range entries {
		err := o.pub.Publish(ctx, en.Event())
		if tooLarge(err) {
			droppedEvents.WithLabelValues(en.Type).Inc()
			o.log.Error("event dropped: NATS refuses it for good", "collection", coll.Name(), "id", id,
				"type", en.Type, "event", en.ID, "bytes", len(en.Data), "err", err)
			continue
		}
		if err != nil {
			return fmt.Errorf("outbox publish %s/%v: %w", coll.Name(), id, err)
		}
	}
	return nil
}

// complete publishes a committed write's events (and removes a tombstone);
// on success the write is done, else it stays for retryFailed.
func (o *Outbox) complete(ctx context.Context, w *inflight) error {
	if err := o.publishEntries(ctx, w.coll, w.id, w.entries); err != nil {
		return err
	}
	if w.deleted {
		if _, err := w.coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: w.id}}); err != nil {
			return fmt.Errorf("outbox remove tombstone %s/%v: %w", w.coll.Name(), w.id, err)
		}
	}
	o.done(w)
	return nil
}

// retryFailed publishes again the committed writes of this instance whose
// publication failed, settles the writes whose outcome is unknown by
// reading their documents back, and returns how many events it published.
func (o *Outbox) retryFailed(ctx context.Context) (int, error) {
	o.mu.Lock()
	var ws []*inflight
	cutoff := time.Now().Add(-o.MinAge)
	for w := range o.pending {
		if (w.stored || w.unsure) && w.at.Before(cutoff) {
			ws = append(ws, w)
		}
	}
	o.mu.Unlock()
	n := 0
	for _, w := range ws {
		if w.unsure {
			stored, err := o.readBack(ctx, w)
			if err != nil {
				return n, err
			}
			if !stored {
				o.done(w)
				continue
			}
			o.mu.Lock()
			w.unsure, w.stored = false, true
			o.mu.Unlock()
		}
		if err := o.complete(ctx, w); err != nil {
			return n, err
		}
		n += len(w.entries)
	}
	return n, nil
}

// failed settles a write the store answered with err. A refusal (a
// duplicate key, a version conflict, any answer of the server) stored
// nothing. A lost connection or a timeout may have stored it, and then its
// events must still go out: the write stays in flight, holding this
// instance's checkpoint back so that no other writer drops its entries,
// until retryFailed has read the document back.
func (o *Outbox) failed(w *inflight, err error) {
	if !ambiguous(err) {
		o.done(w)
		return
	}
	o.mu.Lock()
	w.unsure = true
	o.mu.Unlock()
}

// ambiguous reports whether a write that returned err may have been applied.
func ambiguous(err error) bool {
	return mongo.IsNetworkError(err) || mongo.IsTimeout(err) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// readBack reports whether w's document holds one of w's own entries: the
// write was stored. A document that is gone was never stored, or was
// deleted by a write that carried (and published) those entries.
func (o *Outbox) readBack(ctx context.Context, w *inflight) (bool, error) {
	var env Envelope
	err := w.coll.FindOne(ctx, bson.D{{Key: "_id", Value: w.id}}, options.FindOne().SetProjection(bson.D{{Key: Field, Value: 1}})).Decode(&env)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("outbox: read back %s/%v: %w", w.coll.Name(), w.id, err)
	}
	// Not the adopted entries: the document held them before the write.
	own := make(map[string]bool, len(w.fresh))
	for _, id := range w.fresh {
		own[id] = true
	}
	for _, en := range env.Outbox {
		if own[en.ID] {
			return true, nil
		}
	}
	return false, nil
}

func newInstanceID() string { return events.NewID("ob") }
