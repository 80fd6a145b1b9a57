// Package apitest serves the real API over in-process FerretDB and NATS on
// loopback, for the API's tests (the api package's, the web view's, the
// contract tests'), and sends requests to it. It is imported by tests
// only.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/indexed/ferretlookup"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/api"
)

// Env is a running API and what it runs on.
type Env struct {
	URL    string // http://127.0.0.1:port
	DB     *mongo.Database
	JS     jetstream.JetStream
	Outbox *outbox.Outbox
	Svc    *api.Service
	// Ferret is the embedded FerretDB (for EnsureIDIndex).
	Ferret *ferretembed.Server
	// NATS is the in-process NATS server (to take it away).
	NATS *server.Server
}

// Start starts FerretDB, NATS and the API (zero Config) for one test,
// stopped by t.Cleanup. The API logs to log; nil discards.
func Start(t testing.TB, log *slog.Logger) *Env {
	t.Helper()
	return start(t, log, api.Config{}, nil)
}

// StartConfigured is Start with the API's Config cfg.
func StartConfigured(t testing.TB, log *slog.Logger, cfg api.Config) *Env {
	t.Helper()
	return start(t, log, cfg, nil)
}

// StartIndexed is Start with the API's hot reads by index on the embedded
// store (api.Deps.Lookup), as the all-in-one runs it.
func StartIndexed(t testing.TB, log *slog.Logger) *Env {
	t.Helper()
	return start(t, log, api.Config{}, func(l indexed.Lookup) indexed.Lookup { return l })
}

// StartIndexedWith is StartIndexed with the Lookup the API is given made
// by wrap from the embedded store's (a test that counts its reads).
func StartIndexedWith(t testing.TB, log *slog.Logger, wrap func(indexed.Lookup) indexed.Lookup) *Env {
	t.Helper()
	return start(t, log, api.Config{}, wrap)
}

// StartWithOutage is Start with the API's store client dialling through
// outage, so that a test can take the store away (outage.Down) and give it
// back (Up), and giving up on a store it cannot reach after 500 ms, not
// 30 s. DB is the API's own client's.
func StartWithOutage(t testing.TB, log *slog.Logger, outage *mongotest.Outage) *Env {
	t.Helper()
	return start(t, log, api.Config{}, nil, outage)
}

// start starts the API; with reads by index when lookup is not nil, of
// the Lookup it makes of the store's.
func start(t testing.TB, log *slog.Logger, cfg api.Config, lookup func(indexed.Lookup) indexed.Lookup, outage ...*mongotest.Outage) *Env {
	t.Helper()
	if log == nil {
		log = Discard()
	}
	uri, ferret := mongotest.Start(t)
	var db *mongo.Database
	if len(outage) == 0 {
		db = mongotest.Client(t, uri).Database("rm")
	} else {
		client, err := mongo.Connect(options.Client().ApplyURI(uri).SetDialer(outage[0]).
			SetServerSelectionTimeout(500 * time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
		db = client.Database("rm")
	}
	ns := eventstest.RunServer(t)
	_, js := eventstest.Connect(t, ns)
	ob := outbox.New(events.NewPublisher(js), Discard())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	deps := api.Deps{DB: db, Outbox: ob, JS: js, Logger: log}
	if lookup != nil {
		deps.Lookup = lookup(ferretlookup.New(ferret, db.Name()))
	}
	svc, err := api.New(ctx, cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	return &Env{URL: srv.URL, DB: db, JS: js, Outbox: ob, Svc: svc, Ferret: ferret, NATS: ns}
}

// Discard is a logger that writes nothing.
func Discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestLogger sends warnings and errors to t's log, until t ends: the API's
// background work (an array's cancel) may log after, which t.Log forbids.
func TestLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.ended.Store(true) })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct {
	t     testing.TB
	ended atomic.Bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	if w.ended.Load() {
		return len(p), nil
	}
	w.t.Helper()
	w.t.Logf("%s", bytes.TrimSpace(p))
	return len(p), nil
}

// Response is an answer of the API.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends a request to url; body is JSON-encoded unless it is []byte or
// string (application/merge-patch+json for PATCH, application/json
// otherwise); headers are name, value pairs. Any failure to send or read
// fails the test.
func Do(t testing.TB, method, url string, body any, headers ...string) Response {
	t.Helper()
	return DoContext(context.Background(), t, method, url, body, headers...)
}

// DoContext is Do with the request under ctx: a deadline bounds the wait
// for an answer that may never end (a stream).
func DoContext(ctx context.Context, t testing.TB, method, url string, body any, headers ...string) Response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		ct := "application/json"
		if method == http.MethodPatch {
			ct = "application/merge-patch+json"
		}
		req.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return Response{Status: res.StatusCode, Header: res.Header, Body: raw}
}
