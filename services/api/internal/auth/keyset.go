package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/time/rate"
)

// keySet holds the issuer's signing keys (its jwks_uri) for go-oidc's
// verifier. It fetches them on first use and again when a token names a kid
// it does not hold (key rotation), but at most refetchBurst times in a row
// and then once every refetchEvery: anyone can send tokens with made-up kids,
// and they must not make the API fetch the key set on every request. A kid
// it holds whose signature does not verify is a forgery, never a reason to
// fetch. (go-oidc's RemoteKeySet fetches on every such token.)
type keySet struct {
	url    string
	client *http.Client
	now    func() time.Time
	limit  *rate.Limiter

	fetching sync.Mutex // one fetch at a time; waiters then use its keys
	mu       sync.Mutex
	keys     []jose.JSONWebKey
	fetches  int   // successful fetches so far, to tell whether one happened while waiting
	lastErr  error // of the last fetch; nil once one succeeds
}

// The refetch budget for unknown kids.
const (
	refetchEvery = 10 * time.Second
	refetchBurst = 3
)

// errKeysUnavailable marks a key set that could not be fetched: the API
// cannot check any token then, which is its failure (503), not the caller's.
var errKeysUnavailable = errors.New("cannot fetch the issuer's keys")

func newKeySet(url string, client *http.Client, now func() time.Time) *keySet {
	return &keySet{url: url, client: client, now: now, limit: rate.NewLimiter(rate.Every(refetchEvery), refetchBurst)}
}

// VerifySignature implements oidc.KeySet.
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, asymmetricJoseAlgs())
	if err != nil {
		return nil, fmt.Errorf("malformed jwt: %w", err)
	}
	kid := jws.Signatures[0].Header.KeyID
	keys, fetches, lastErr := k.current()
	if !holds(keys, kid) {
		if keys, lastErr = k.refetch(ctx, fetches); !holds(keys, kid) {
			if lastErr != nil {
				return nil, lastErr
			}
			return nil, fmt.Errorf("the issuer's key set has no key %s", quoted(kid))
		}
	}
	for _, key := range keys {
		if kid == "" || key.KeyID == kid {
			if payload, err := jws.Verify(&key); err == nil {
				return payload, nil
			}
		}
	}
	return nil, errors.New("the signature does not verify")
}

func (k *keySet) current() ([]jose.JSONWebKey, int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.keys, k.fetches, k.lastErr
}

// refetch fetches the key set unless one was fetched since fetches was read
// or the budget is spent; it returns the keys held then and, if the last
// fetch failed, why.
func (k *keySet) refetch(ctx context.Context, fetches int) ([]jose.JSONWebKey, error) {
	k.fetching.Lock()
	defer k.fetching.Unlock()
	keys, n, lastErr := k.current()
	if n != fetches || !k.limit.AllowN(k.now(), 1) {
		return keys, lastErr
	}
	got, err := k.fetch(ctx)
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		k.lastErr = fmt.Errorf("%w from %s: %v", errKeysUnavailable, k.url, err)
		return k.keys, k.lastErr
	}
	k.keys, k.lastErr = got, nil
	k.fetches++
	return k.keys, nil
}

func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	// The fetch serves every waiting request, so one caller's cancellation must not end it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, err
	}
	res, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s", res.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("not a JWK set: %v", err)
	}
	return set.Keys, nil
}

// holds reports whether keys may verify a token naming kid.
func holds(keys []jose.JSONWebKey, kid string) bool {
	for _, key := range keys {
		if kid == "" || key.KeyID == kid {
			return true
		}
	}
	return false
}

func asymmetricJoseAlgs() []jose.SignatureAlgorithm {
	out := make([]jose.SignatureAlgorithm, len(asymmetricAlgs))
	for i, a := range asymmetricAlgs {
		out[i] = jose.SignatureAlgorithm(a)
	}
	return out
}
