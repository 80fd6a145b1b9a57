package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/services/api/internal/auth"
	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/avxrm/rm/services/api/internal/store"
	"github.com/labstack/echo/v4"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Idempotency-Key (draft-ietf-httpapi-idempotency-key-header) on POSTs: the
// first request with a key claims it in the idempotency_keys collection,
// runs, and records its response if it succeeded (2xx); a repeat with the
// same body gets that response again, byte for byte, and one with another
// body a 422. Keys are scoped by method and path, so one key on two routes
// is two keys.
//
// The record also holds a seed, made when the key is first claimed, from
// which the handler makes the id of what it creates (newID, idemseed.go).
// A request whose outcome is lost (the API died after the insert, or the
// insert's reply was lost) keeps the record and its seed for the whole
// idempotencyTTL, so its retry makes the same id: its insert hits the
// stored resource, which is the answer (createOnce). A request refused
// with a 4xx (nothing was created) releases the key, so the client may
// correct the body and retry; one that failed otherwise only releases its
// claim, and a retry with another body is a 422.

const (
	// idempotencyTTL is how long a recorded response is replayed, and a
	// claim's seed kept.
	idempotencyTTL = 24 * time.Hour
	// idempotencyClaimTTL bounds a claim whose request never finished (the
	// process died); after it a retry takes the claim over, with its seed
	// (before, a retry answers from the store if the resource is there).
	idempotencyClaimTTL = time.Minute
	maxIdempotencyKey   = 255
)

// replayedHeaders are the response headers recorded and replayed.
var replayedHeaders = []string{echo.HeaderContentType, echo.HeaderLocation, "ETag"}

type idempotencyRecord struct {
	ID        string            `bson:"_id"` // method, path and key
	BodyHash  string            `bson:"body_hash"`
	Done      bool              `bson:"done"`
	Status    int               `bson:"status,omitempty"`
	Header    map[string]string `bson:"header,omitempty"`
	Body      string            `bson:"body,omitempty"`
	ExpiresAt time.Time         `bson:"expires_at"`

	// Seed makes the id of what the request creates (newID).
	Seed string `bson:"seed,omitempty"`
	// ClaimedUntil: an attempt runs the request until then (it may have
	// died); zero when none does.
	ClaimedUntil time.Time `bson:"claimed_until"`
}

// idempotentPost makes the idempotency middleware serve the POST route at
// path (a huma path such as /queues/{queue_id}/things). Routes that keep
// their own idempotency records (job submission) do not call it.
func (s *Server) idempotentPost(path string) {
	s.idempotentRoutes[echoPath.ReplaceAllString(path, ":$1")] = true
}

// echoPath matches the parameters of a huma path, which echo spells :name.
var echoPath = regexp.MustCompile(`\{([^}]+)\}`)

// idempotency is the middleware that honours Idempotency-Key on the routes
// marked with idempotentPost.
func (s *Server) idempotency(next echo.HandlerFunc) echo.HandlerFunc {
	coll := func() *mongo.Collection { return s.opts.Store.DB.Collection(store.IdempotencyKeys) }
	return func(c echo.Context) error {
		r := c.Request()
		key := r.Header.Get("Idempotency-Key")
		if r.Method != http.MethodPost || key == "" || !s.idempotentRoutes[c.Path()] {
			return next(c)
		}
		if len(key) > maxIdempotencyKey || strings.IndexFunc(key, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0 {
			return problem.New(http.StatusBadRequest, "invalid Idempotency-Key",
				problem.Field("Idempotency-Key", "at most %d printable ASCII characters", maxIdempotencyKey))
		}
		body, err := readLimited(c.Response().Writer, r, s.bodyLimit())
		if err != nil {
			return err
		}
		ctx := r.Context()
		id := r.Method + " " + r.URL.Path + " " + key
		if s.opts.Auth != nil { // keys are per caller: another's key replays nothing of theirs
			id += " " + auth.From(ctx).Subject
		}
		hash := bodyHash(body)
		k, replayed, err := s.claimKey(c, coll, id, hash)
		if err != nil || replayed {
			return err
		}
		seed, claimedUntil, fresh := k.seed, k.claimedUntil, k.fresh

		held := claimedUntil.IsZero()
		c.SetRequest(r.WithContext(withIdemSeed(ctx, seed, held, fresh)))
		rec := &recorder{ResponseWriter: c.Response().Writer}
		c.Response().Writer = rec
		err = next(c)
		c.Response().Writer = rec.ResponseWriter
		// The key is settled even if the client has gone.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		status := c.Response().Status
		if err != nil || status < 200 || status > 299 {
			s.releaseIdempotencyKey(sctx, coll(), id, claimedUntil, err == nil && status >= 400 && status < 500)
			return err
		}
		hdr := map[string]string{}
		for _, h := range replayedHeaders {
			if v := c.Response().Header().Get(h); v != "" {
				hdr[h] = v
			}
		}
		_, uerr := coll().UpdateOne(sctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{
			{Key: "done", Value: true}, {Key: "status", Value: status}, {Key: "header", Value: hdr},
			{Key: "body", Value: rec.body.String()}, {Key: "expires_at", Value: time.Now().Add(idempotencyTTL)},
		}}})
		if uerr != nil {
			s.opts.Logger.Warn("recording an idempotent response failed; a retry may run again", "key", id, "err", uerr)
		}
		s.sweepIdempotencyKeys()
		return nil
	}
}

// keyClaim is what claiming an idempotency key gave the request: the seed its
// resource's id comes from, the end of its claim (zero: another attempt
// holds the key), and whether the seed is new.
type keyClaim struct {
	seed         string
	claimedUntil time.Time
	fresh        bool
}

// claimKey claims the idempotency record id for a request whose body hashes
// to hash. replayed: the key's request had finished, and its response was
// written again.
func (s *Server) claimKey(c echo.Context, coll func() *mongo.Collection, id, hash string) (k keyClaim, replayed bool, err error) {
	ctx := c.Request().Context()
	for attempt := 0; ; attempt++ {
		var rec idempotencyRecord
		err := coll().FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&rec)
		now := time.Now()
		switch {
		case err == nil && rec.ExpiresAt.After(now):
			if rec.BodyHash != hash {
				return keyClaim{}, false, problem.New(http.StatusUnprocessableEntity, "this Idempotency-Key was used with a different request body",
					problem.Field("Idempotency-Key", "already used with a different request body"))
			}
			if !rec.Done && rec.Seed == "" { // a record from before seeds
				return keyClaim{}, false, errKeyInProgress()
			}
			if !rec.Done && rec.ClaimedUntil.After(now) {
				// Another attempt runs (or died running): answer
				// from the store if it created the resource
				// already, else 409 (createOnce).
				return keyClaim{seed: rec.Seed}, false, nil
			}
			if !rec.Done { // its attempt died or failed: take over its claim and seed
				until := now.Add(idempotencyClaimTTL)
				res, err := coll().UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "done", Value: false}, {Key: "claimed_until", Value: rec.ClaimedUntil}},
					bson.D{{Key: "$set", Value: bson.D{{Key: "claimed_until", Value: until}}}})
				if err != nil {
					return keyClaim{}, false, fmt.Errorf("claim idempotency key: %w", err)
				}
				if res.MatchedCount == 1 {
					return keyClaim{seed: rec.Seed, claimedUntil: until}, false, nil
				}
				if attempt > 2 {
					return keyClaim{}, false, errKeyInProgress()
				}
				continue // another retry took it first: read it again
			}
			for k, v := range rec.Header {
				c.Response().Header().Set(k, v)
			}
			c.Response().Header().Set("Idempotent-Replayed", "true")
			c.Response().WriteHeader(rec.Status)
			_, err := c.Response().Write([]byte(rec.Body))
			return keyClaim{}, true, err
		case err == nil: // expired: free it, unless someone else renewed it meanwhile
			if _, err := coll().DeleteOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "expires_at", Value: rec.ExpiresAt}}); err != nil {
				return keyClaim{}, false, fmt.Errorf("release expired idempotency key: %w", err)
			}
		case !errors.Is(err, mongo.ErrNoDocuments):
			return keyClaim{}, false, fmt.Errorf("look up idempotency key: %w", err)
		}
		claim := idempotencyRecord{ID: id, BodyHash: hash, Seed: newSeed(),
			ClaimedUntil: now.Add(idempotencyClaimTTL), ExpiresAt: now.Add(idempotencyTTL)}
		_, err = coll().InsertOne(ctx, claim)
		if err == nil {
			return keyClaim{seed: claim.Seed, claimedUntil: claim.ClaimedUntil, fresh: true}, false, nil
		}
		if !mongo.IsDuplicateKeyError(err) || attempt > 2 {
			return keyClaim{}, false, fmt.Errorf("claim idempotency key: %w", err)
		}
		// Another request claimed the key between our read and insert: read it again.
	}
}

func (s *Server) bodyLimit() int64 {
	if s.opts.BodyLimit > 0 {
		return s.opts.BodyLimit
	}
	return 1 << 20
}

// bodyHash identifies a request body. JSON is compared by value (member order
// and spacing do not matter); anything else byte for byte.
func bodyHash(body []byte) string {
	var v any
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(&v); err == nil && !d.More() {
		if canon, err := json.Marshal(v); err == nil {
			body = canon
		}
	}
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// recorder keeps a copy of the response body as it is written.
type recorder struct {
	http.ResponseWriter
	body bytes.Buffer
}

func (r *recorder) Write(b []byte) (int, error) {
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// keysAll leads the index of every idempotency key (a claim is done or
// not), whose rows give their expiries.
var keysAll = []indexed.Cond{{Path: "done", In: []any{true, false}}}

// keySweepEvery is the least time between two sweeps of expired keys.
const keySweepEvery = 10 * time.Minute

// lastKeySweep is when expired keys were last deleted (Unix nanoseconds).
var lastKeySweep atomic.Int64

// sweepIdempotencyKeys deletes expired keys now and then (at most every
// ten minutes), in the background, for stores without TTL indexes
// (FerretDB); with one it finds nothing.
func (s *Server) sweepIdempotencyKeys() {
	now := time.Now()
	last := lastKeySweep.Load()
	if now.UnixNano()-last < int64(keySweepEvery) || !lastKeySweep.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	go func() {
		// Key by key (the embedded store) a sweep may take a while: about
		// 2 ms a key, 100 s for 50,000. What is left for the next.
		ctx, cancel := context.WithTimeout(context.Background(), keySweepEvery)
		defer cancel()
		n, err := s.sweepExpiredKeys(ctx, now)
		switch {
		case err != nil:
			s.opts.Logger.Warn("sweeping expired idempotency keys", "deleted", n, "err", err)
		case n > 0:
			s.opts.Logger.Info("deleted expired idempotency keys", "keys", n, "took", time.Since(now).Round(time.Millisecond).String())
		}
	}()
}

// sweepExpiredKeys deletes the idempotency keys that expired before now
// and returns how many it deleted by index (-1: the store deleted them,
// uncounted).
//
// On the embedded store one DeleteMany of {expires_at: {$lt: now}} made
// FerretDB read every key, a recorded response each, while it held the
// store's write lock: with 100,000 keys (a campaign's submissions through
// the SDK or the CLI, which send a key with every POST, within the 24 h
// the keys are kept) every write of the system waited 13 s. So there the
// keys' expiries come from an index (the Lookup's MatchingVersions, no key
// read) and each expired key is deleted on its own, as it was read (its
// expires_at in the filter: a key claimed again meanwhile stays), so that
// other writes wait for one deletion at most.
func (s *Server) sweepExpiredKeys(ctx context.Context, now time.Time) (int, error) {
	if s.opts.Lookup == nil {
		return -1, s.opts.Store.SweepExpired(ctx, store.IdempotencyKeys, now)
	}
	expiries, err := s.opts.Lookup.MatchingVersions(ctx, store.IdempotencyKeys, keysAll, nil, "expires_at")
	if errors.Is(err, errors.ErrUnsupported) { // an older store over the wire
		return -1, s.opts.Store.SweepExpired(ctx, store.IdempotencyKeys, now)
	}
	if err != nil {
		return 0, fmt.Errorf("read the keys' expiries: %w", err)
	}
	coll := s.opts.Store.DB.Collection(store.IdempotencyKeys)
	n := 0
	for id, ms := range expiries {
		if ms == indexed.NoValue || !time.UnixMilli(ms).Before(now) {
			continue
		}
		res, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "expires_at", Value: time.UnixMilli(ms)}})
		if err != nil {
			return n, fmt.Errorf("delete expired idempotency key: %w", err)
		}
		n += int(res.DeletedCount)
	}
	return n, nil
}
