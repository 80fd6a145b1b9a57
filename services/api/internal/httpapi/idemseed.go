package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/api/internal/problem"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// What an Idempotency-Key ties to is the resource its request creates, not
// only the response (idempotency.go): the key's record holds a seed, every
// attempt of the request makes the new resource's id from it (newID), and an
// attempt that finds that id stored answers with what is stored
// (createOnce). So a retry after the first attempt died at any point (before
// the insert, after it, before the response was recorded) creates nothing
// twice and gets 201 with the same resource.

type idemSeedKey struct{}

type idemSeed struct {
	seed string
	// held: another attempt holds the key's claim; this one may answer
	// from the store but creates nothing.
	held bool
	// fresh: the seed was made for this attempt, so nothing was stored
	// with it yet.
	fresh bool
}

func withIdemSeed(ctx context.Context, seed string, held, fresh bool) context.Context {
	return context.WithValue(ctx, idemSeedKey{}, idemSeed{seed: seed, held: held, fresh: fresh})
}

func idemSeedOf(ctx context.Context) (idemSeed, bool) {
	s, ok := ctx.Value(idemSeedKey{}).(idemSeed)
	return s, ok && s.seed != ""
}

// newSeed makes the seed of a new idempotency record: an id without prefix.
func newSeed() string { return events.NewID("") }

// newID returns the id of the resource the request creates: made from the
// Idempotency-Key's seed when the request has one, so every attempt of it
// makes the same id; a fresh one otherwise.
func newID(ctx context.Context, prefix string) string {
	if s, ok := idemSeedOf(ctx); ok {
		return prefix + "-" + s.seed
	}
	return events.NewID(prefix)
}

// createOnce runs insert, which creates the resource of the request,
// unless an earlier attempt of the same idempotent request stored it: then,
// and when insert is refused because it is stored meanwhile, the answer is
// the stored resource as load reads it (an error wrapping
// problem.ErrNotFound when it is not stored). The request body is the same
// (the middleware answers 422 otherwise), so the stored resource is what it
// asks for. Without an Idempotency-Key it is insert.
func createOnce[O any](ctx context.Context, insert func() (O, error), load func() (O, error)) (O, error) {
	s, ok := idemSeedOf(ctx)
	if !ok {
		return insert()
	}
	if !s.fresh {
		if out, err := load(); err == nil || !errors.Is(err, problem.ErrNotFound) {
			return out, err
		}
	}
	if s.held {
		var none O
		return none, errKeyInProgress()
	}
	out, err := insert()
	if err == nil {
		return out, nil
	}
	if stored, lerr := load(); lerr == nil {
		return stored, nil // a concurrent attempt stored it first
	}
	return out, err
}

// errKeyInProgress answers a retry while another attempt holds the key and
// has not created the resource yet.
func errKeyInProgress() error {
	return problem.New(http.StatusConflict, "a request with this Idempotency-Key is still in progress; retry later",
		problem.Field("Idempotency-Key", "request in progress"))
}

// releaseIdempotencyKey settles the record of a request that did not
// succeed: one refused with a 4xx created nothing, so the key is freed (the
// client may correct the body); after any other failure what it created is
// unknown, so the record and its seed stay and only the claim is dropped,
// letting a retry run at once. An attempt that did not hold the claim
// (claimedUntil zero) leaves the record alone.
func (s *Server) releaseIdempotencyKey(ctx context.Context, coll *mongo.Collection, id string, claimedUntil time.Time, clientError bool) {
	if claimedUntil.IsZero() {
		return
	}
	mine := bson.D{{Key: "_id", Value: id}, {Key: "done", Value: false}, {Key: "claimed_until", Value: claimedUntil}}
	var err error
	if clientError {
		_, err = coll.DeleteOne(ctx, mine)
	} else {
		_, err = coll.UpdateOne(ctx, mine, bson.D{{Key: "$set", Value: bson.D{{Key: "claimed_until", Value: time.Time{}}}}})
	}
	if err != nil {
		s.opts.Logger.Warn("releasing an idempotency key failed; its claim expires by itself", "key", id, "err", err)
	}
}

// arrayJobID is the id of the job of index i of array arrID: the array's
// time, 12 digits (60 bits) of a hash of the array's id, and i in 4 digits,
// so that every attempt of a submission makes the same ids (a retry
// completes a partial bulk insert), the jobs of an array sort by index, and
// they meet no id of another array nor one of events.NewID (whose random
// part is not a hash of an array id), short of a 60-bit collision within
// one millisecond.
func arrayJobID(arrID string, i int) (string, error) {
	body, ok := strings.CutPrefix(arrID, "arr-")
	if !ok || len(body) != 26 || strings.Trim(body, crockford) != "" {
		return "", fmt.Errorf("array id %q is not an id", arrID)
	}
	if i < 0 || i >= 32*32*32*32 {
		return "", fmt.Errorf("array index %d out of range", i)
	}
	sum := sha256.Sum256([]byte(arrID))
	h := binary.BigEndian.Uint64(sum[:8])
	digits := []byte(body[:10] + "000000000000" + "0000")
	for k := 21; k >= 10; k-- {
		digits[k] = crockford[h&31]
		h >>= 5
	}
	for k, n := 25, i; k >= 22; k-- {
		digits[k] = crockford[n&31]
		n >>= 5
	}
	return "job-" + string(digits), nil
}

// completeJobArray answers a retried array submission whose array arrID is
// stored: it stores those of its jobs that are not (the first attempt may
// have stopped partway through the bulk insert; their ids are arrayJobID's,
// so each is stored once) and returns the array as stored.
func (s *Server) completeJobArray(ctx context.Context, arrID string, jobs []*events.Job) (*jobArrayOutput, error) {
	if _, err := s.jobArrayKind().FindOne(ctx, bson.D{{Key: "_id", Value: arrID}}, arrID); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		// Tombstones count: a deleted job of the array was stored.
		ids, err := indexed.FindIDs(ctx, s.jobs.Jobs(), bson.D{{Key: "array_id", Value: arrID}}, nil)
		if err != nil {
			return nil, fmt.Errorf("list the jobs of array %s: %w", arrID, err)
		}
		stored := make(map[string]bool, len(ids))
		for _, id := range ids {
			stored[id] = true
		}
		var missing []*events.Job
		for _, j := range jobs {
			if !stored[j.ID] {
				missing = append(missing, j)
			}
		}
		if len(missing) == 0 {
			break
		}
		err = s.jobs.CreateMany(ctx, missing, events.TypeJobSubmitted)
		if err == nil {
			break
		}
		if !errors.Is(err, outbox.ErrDuplicate) || attempt >= 3 {
			return nil, fmt.Errorf("complete the jobs of array %s: %w", arrID, err)
		}
		// Another attempt stored some of them meanwhile: list them again.
	}
	arr, err := s.loadJobArray(ctx, arrID)
	if err != nil {
		return nil, err
	}
	return &jobArrayOutput{Status: http.StatusCreated, Location: BasePath + "/job-arrays/" + arrID, Body: arr}, nil
}
