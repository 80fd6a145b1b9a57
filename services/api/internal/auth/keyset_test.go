package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// issuer is an OIDC issuer over HTTP: discovery and a key set it can
// rotate or stop serving; it counts the key set's fetches.
type issuer struct {
	*httptest.Server
	t testing.TB

	mu      sync.Mutex
	keys    map[string]*rsa.PrivateKey // kid → key, all published
	fetches int
	down    bool
}

func newIssuer(t testing.TB) *issuer {
	is := &issuer{t: t, keys: map[string]*rsa.PrivateKey{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": is.URL, "jwks_uri": is.URL + "/certs", "token_endpoint": is.URL + "/token"})
	})
	mux.HandleFunc("GET /certs", func(w http.ResponseWriter, r *http.Request) {
		is.mu.Lock()
		defer is.mu.Unlock()
		is.fetches++
		if is.down {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		var set jose.JSONWebKeySet
		for kid, k := range is.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"})
		}
		_ = json.NewEncoder(w).Encode(set)
	})
	is.Server = httptest.NewServer(mux)
	t.Cleanup(is.Close)
	return is
}

func (is *issuer) addKey(kid string) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		is.t.Fatal(err)
	}
	is.mu.Lock()
	is.keys[kid] = k
	is.mu.Unlock()
	return k
}

func (is *issuer) state() (fetches int) {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.fetches
}

func (is *issuer) setDown(down bool) {
	is.mu.Lock()
	is.down = down
	is.mu.Unlock()
}

// token is a bearer header for a token of this issuer signed with key as
// kid, valid for a minute from now; change sets or replaces claims.
func (is *issuer) token(key *rsa.PrivateKey, kid string, now time.Time, change ...map[string]any) string {
	is.t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		is.t.Fatal(err)
	}
	c := map[string]any{"iss": is.URL, "aud": "avxrm", "sub": "alice", "exp": now.Add(time.Minute).Unix(),
		"iat": now.Unix(), "realm_access": map[string]any{"roles": []string{"rm-user"}}}
	for _, ch := range change {
		maps.Copy(c, ch)
	}
	claims, _ := json.Marshal(c)
	jws, err := s.Sign(claims)
	if err != nil {
		is.t.Fatal(err)
	}
	raw, _ := jws.CompactSerialize()
	return "Bearer " + raw
}

func newTestAuthenticator(t *testing.T, is *issuer, now *time.Time) *Authenticator {
	t.Helper()
	a, err := New(context.Background(), Config{Issuer: is.URL, Now: func() time.Time { return *now }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestUnknownKidsDoNotFetchTheKeySetEachTime: a rotated key is fetched at
// once, but tokens with made-up kids (or a known kid and another key) do not
// make the API fetch the issuer's key set on every request.
func TestUnknownKidsDoNotFetchTheKeySetEachTime(t *testing.T) {
	is := newIssuer(t)
	now := time.Now()
	a := newTestAuthenticator(t, is, &now)
	ctx := context.Background()
	k1 := is.addKey("k1")
	if _, err := a.Authenticate(ctx, is.token(k1, "k1", now)); err != nil {
		t.Fatalf("a valid token: %v", err)
	}
	k2 := is.addKey("k2") // rotation: the next token names a kid the API has not seen
	if _, err := a.Authenticate(ctx, is.token(k2, "k2", now)); err != nil {
		t.Fatalf("a token of the rotated key: %v", err)
	}
	if n := is.state(); n != 2 {
		t.Fatalf("%d key set fetches, want 2 (first use, rotation)", n)
	}

	attacker, _ := rsa.GenerateKey(rand.Reader, 2048)
	for i := range 50 {
		_, err := a.Authenticate(ctx, is.token(attacker, fmt.Sprintf("made-up-%d", i), now))
		if err == nil || err.Status != http.StatusUnauthorized || !strings.HasPrefix(err.Detail, "bad signature") {
			t.Fatalf("a made-up kid: %+v, want 401 bad signature", err)
		}
	}
	if _, err := a.Authenticate(ctx, is.token(attacker, "k2", now)); err == nil || !strings.HasPrefix(err.Detail, "bad signature") {
		t.Fatalf("a known kid with another key: %+v, want 401 bad signature", err)
	}
	if n := is.state(); n > refetchBurst {
		t.Errorf("%d key set fetches after 51 forged tokens, want at most %d", n, refetchBurst)
	}

	now = now.Add(refetchEvery)
	k3 := is.addKey("k3")
	if _, err := a.Authenticate(ctx, is.token(k3, "k3", now)); err != nil {
		t.Fatalf("a token of a key rotated %s later: %v", refetchEvery, err)
	}
}

// TestIssuerKeysUnreachable: a token the API cannot check because the
// issuer's key set cannot be fetched is the API's failure, a 503 saying so,
// not a 401 blaming the token; once the issuer is back the token passes.
func TestIssuerKeysUnreachable(t *testing.T) {
	is := newIssuer(t)
	now := time.Now()
	a := newTestAuthenticator(t, is, &now)
	ctx := context.Background()
	k1 := is.addKey("k1")
	is.setDown(true)
	_, err := a.Authenticate(ctx, is.token(k1, "k1", now))
	if err == nil || err.Status != http.StatusServiceUnavailable || !strings.Contains(err.Detail, "cannot fetch the issuer's keys from "+is.URL+"/certs: 502") {
		t.Fatalf("keys unreachable: %+v, want 503 naming the key set and why", err)
	}
	is.setDown(false)
	now = now.Add(refetchEvery)
	if _, err := a.Authenticate(ctx, is.token(k1, "k1", now)); err != nil {
		t.Fatalf("the issuer back: %v", err)
	}
}

// TestClockSkew: exp is accepted up to 30 s past (ClockSkew), nbf up to
// 4 min 30 s ahead (go-oidc's 5 min less the 30 s), as docs/auth.md says.
func TestClockSkew(t *testing.T) {
	is := newIssuer(t)
	now := time.Now()
	a := newTestAuthenticator(t, is, &now)
	k := is.addKey("k")
	for name, c := range map[string]struct {
		claims map[string]any
		says   string // "" accepted
	}{
		"exp 25 s ago": {map[string]any{"exp": now.Add(-25 * time.Second).Unix()}, ""},
		"exp 35 s ago": {map[string]any{"exp": now.Add(-35 * time.Second).Unix()}, "token expired at"},
		"nbf in 4 min": {map[string]any{"nbf": now.Add(4 * time.Minute).Unix()}, ""},
		"nbf in 5 min": {map[string]any{"nbf": now.Add(5 * time.Minute).Unix()}, "token not valid yet"},
	} {
		_, err := a.Authenticate(context.Background(), is.token(k, "k", now, c.claims))
		switch {
		case c.says == "" && err != nil:
			t.Errorf("%s: %v, want it accepted", name, err)
		case c.says != "" && (err == nil || !strings.HasPrefix(err.Detail, c.says)):
			t.Errorf("%s: %+v, want 401 %q", name, err, c.says)
		}
	}
}

// TestNewNamesTheIssuerItCannotReach: an issuer that does not answer at
// start is named as RM_OIDC_ISSUER, and the network error is text, not a
// *net.OpError that 'avxrm up' would take for its --server being down.
func TestNewNamesTheIssuerItCannotReach(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var log bytes.Buffer
	_, err := New(ctx, Config{Issuer: "http://127.0.0.1:1/realms/x", Logger: slog.New(slog.NewTextHandler(&log, nil))}, nil)
	// The wait (up to 30 s at a start) is said at once, once.
	if n := strings.Count(log.String(), "waiting for the OIDC issuer"); n != 1 || !strings.Contains(log.String(), "issuer=http://127.0.0.1:1/realms/x") {
		t.Errorf("logged while waiting: %q, want the wait said once, naming the issuer", log.String())
	}
	var op *net.OpError
	if err == nil || !strings.Contains(err.Error(), "RM_OIDC_ISSUER http://127.0.0.1:1/realms/x") || !strings.Contains(err.Error(), "connection refused") || errors.As(err, &op) {
		t.Fatalf("New with an issuer nobody serves: %v (a *net.OpError: %v), want RM_OIDC_ISSUER named and why, no OpError", err, errors.As(err, &op))
	}
}

// TestLongKidIsCut: a made-up kid is quoted in the 401 cut to 100 bytes.
func TestLongKidIsCut(t *testing.T) {
	is := newIssuer(t)
	now := time.Now()
	a := newTestAuthenticator(t, is, &now)
	k := is.addKey("k")
	_, err := a.Authenticate(context.Background(), is.token(k, strings.Repeat("K", 20000), now))
	if err == nil || err.Status != http.StatusUnauthorized || len(err.Detail) > 400 {
		t.Fatalf("a 20 kB kid: %d bytes of detail (%.300v), want a 401 of at most 400", len(fmt.Sprint(err)), err)
	}
}
