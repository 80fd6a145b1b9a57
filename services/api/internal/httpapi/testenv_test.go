package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/pkg/events/indexed/ferretlookup"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/api/internal/auth"
	"github.com/avxrm/rm/services/api/internal/store"
	jose "github.com/go-jose/go-jose/v4"
	"go.mongodb.org/mongo-driver/v2/event"
)

// newEnv is the API over real FerretDB and NATS with the built-in queues,
// auth on against a (testIssuer) when a is not nil; set changes its Options.
func newEnv(t *testing.T, a *auth.Authenticator, set ...func(*Options)) *artifactEnv {
	t.Helper()
	return newEnvOn(t, a, false, set...)
}

// newIndexedEnv is newEnv with the API reading its lists by index, as the
// all-in-one runs it on the embedded store (Options.Lookup).
func newIndexedEnv(t *testing.T, set ...func(*Options)) *artifactEnv {
	t.Helper()
	return newEnvOn(t, nil, true, set...)
}

func newEnvOn(t *testing.T, a *auth.Authenticator, byIndex bool, set ...func(*Options)) *artifactEnv {
	t.Helper()
	return newEnvSeen(t, a, byIndex, nil, set...)
}

// bothWays runs test with the API reading without and with the Lookup
// (byIndex), as against MongoDB and as the all-in-one on the embedded store.
func bothWays(t *testing.T, test func(t *testing.T, byIndex bool)) {
	for _, byIndex := range []bool{false, true} {
		t.Run(map[bool]string{false: "without index", true: "by index"}[byIndex], func(t *testing.T) { test(t, byIndex) })
	}
}

// newEnvSeen is newEnvOn whose server sends its commands to the store on
// a connection of its own that mon sees (nil: the test's).
func newEnvSeen(t *testing.T, a *auth.Authenticator, byIndex bool, mon *event.CommandMonitor, set ...func(*Options)) *artifactEnv {
	t.Helper()
	uri, ferret := mongotest.Start(t)
	db := mongotest.Client(t, uri).Database("rm")
	js := eventstest.Run(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srvDB := db
	if mon != nil {
		srvDB = mongotest.SeenClient(t, uri, mon).Database(db.Name())
	}
	st := &store.Store{DB: srvDB, Outbox: outbox.New(events.NewPublisher(js), log)}
	if err := st.EnsureIndexes(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	opts := Options{Store: st, Source: "/rm/api", BodyLimit: 1 << 20, Logger: log, JS: js, Auth: a}
	if byIndex {
		opts.Lookup = ferretlookup.New(ferret, db.Name())
		st.Lookup = opts.Lookup // as services/api does
	}
	for _, f := range set {
		f(&opts)
	}
	srv := New(opts)
	if err := srv.EnsureBuiltinQueues(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Echo)
	t.Cleanup(hs.Close)
	return &artifactEnv{t: t, srv: srv, base: hs.URL + BasePath, db: db, js: js, ferret: ferret}
}

// json sends body as JSON (headers as in do) and decodes the answer into out,
// if not nil; the test fails unless the status is want.
func (e *artifactEnv) json(want int, method, path string, body any, out any, headers ...string) answer {
	e.t.Helper()
	var r io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		r = strings.NewReader(string(raw))
		headers = append([]string{"Content-Type", "application/json"}, headers...)
	}
	a := e.do(method, path, r, headers...)
	if a.status != want {
		e.t.Fatalf("%s %s = %s, want %d", method, path, a, want)
	}
	if out != nil {
		if err := json.Unmarshal(a.body, out); err != nil {
			e.t.Fatalf("%s %s: decode %s: %v", method, path, a.body, err)
		}
	}
	return a
}

// testIssuer is an OIDC issuer over HTTP (discovery and one key) whose
// tokens the API takes.
type testIssuer struct {
	*httptest.Server
	t   *testing.T
	key *rsa.PrivateKey
}

func newTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	is := &testIssuer{t: t, key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": is.URL, "jwks_uri": is.URL + "/certs", "token_endpoint": is.URL + "/token"})
	})
	mux.HandleFunc("GET /certs", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	is.Server = httptest.NewServer(mux)
	t.Cleanup(is.Close)
	return is
}

// authenticator is the API's Authenticator for tokens of is.
func (is *testIssuer) authenticator() *auth.Authenticator {
	is.t.Helper()
	a, err := auth.New(context.Background(), auth.Config{Issuer: is.URL}, nil)
	if err != nil {
		is.t.Fatal(err)
	}
	return a
}

// bearer is the Authorization header of a token for user with role, valid
// for ten minutes.
func (is *testIssuer) bearer(user, role string) string {
	is.t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: is.key, KeyID: "k1"}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		is.t.Fatal(err)
	}
	now := time.Now()
	claims, _ := json.Marshal(map[string]any{"iss": is.URL, "aud": "avxrm", "sub": "sub-" + user, "preferred_username": user,
		"exp": now.Add(10 * time.Minute).Unix(), "iat": now.Unix(), "realm_access": map[string]any{"roles": []string{role}}})
	jws, err := s.Sign(claims)
	if err != nil {
		is.t.Fatal(err)
	}
	raw, _ := jws.CompactSerialize()
	return "Bearer " + raw
}
