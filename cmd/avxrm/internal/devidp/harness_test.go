package devidp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/devidp"
	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/pkg/events/indexed/ferretlookup"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/api"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

const v1 = "/api/resources/v1"

// env is the dev IdP and a real API (FerretDB, NATS) with auth on, both in
// this process on loopback.
type env struct {
	t    testing.TB
	idp  *devidp.IdP
	base string
	svc  *api.Service
	db   *mongo.Database
	js   jetstream.JetStream
}

func start(t testing.TB, cfg devidp.Config, authOpts ...func(*api.AuthConfig)) *env {
	t.Helper()
	return startStore(t, cfg, false, authOpts...)
}

// startStore is start with the API reading the embedded store's hot paths
// by index when indexed (api.Deps.Lookup, as the all-in-one runs it), else
// as it reads MongoDB.
func startStore(t testing.TB, cfg devidp.Config, indexed bool, authOpts ...func(*api.AuthConfig)) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	idp, err := devidp.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	uri, ferret := mongotest.Start(t)
	db := mongotest.Client(t, uri).Database("rm")
	js := eventstest.Run(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ob := outbox.New(events.NewPublisher(js), log)
	ac := api.AuthConfig{Issuer: idp.Issuer, ClockSkew: time.Millisecond}
	for _, o := range authOpts {
		o(&ac)
	}
	deps := api.Deps{DB: db, Outbox: ob, Logger: log, JS: js}
	if indexed {
		deps.Lookup = ferretlookup.New(ferret, db.Name())
	}
	svc, err := api.New(ctx, api.Config{Auth: ac}, deps)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, idp: idp, base: srv.URL, svc: svc, db: db, js: js}
}

// tokens is an answer of the token endpoint.
type tokens struct {
	AccessToken  string `json:"access_token"`
	IDToken      string `json:"id_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int    `json:"expires_in"`
	TokenType    string `json:"token_type"`
	Error        string `json:"error"`
}

// grant posts form to the token endpoint, as the product documents do with curl.
func (e *env) grant(form url.Values) (int, tokens) {
	e.t.Helper()
	res, err := http.PostForm(e.idp.TokenURL, form)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	var tk tokens
	if err := json.NewDecoder(res.Body).Decode(&tk); err != nil {
		e.t.Fatal(err)
	}
	return res.StatusCode, tk
}

// login is the documents' password grant for one of the dev IdP's users.
func (e *env) login(username string) tokens {
	e.t.Helper()
	u, ok := e.idp.User(username)
	if !ok {
		e.t.Fatalf("no user %s", username)
	}
	code, tk := e.grant(url.Values{"grant_type": {"password"}, "client_id": {"avxrm"},
		"username": {u.Username}, "password": {u.Password}, "scope": {"offline_access"}})
	if code != http.StatusOK || tk.AccessToken == "" {
		e.t.Fatalf("password grant for %s = %d %+v", username, code, tk)
	}
	return tk
}

type resp struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r resp) obj(t testing.TB) map[string]any {
	t.Helper()
	var o map[string]any
	if err := json.Unmarshal(r.Body, &o); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
	return o
}

// do sends a request with token (none if empty); body is JSON unless a string.
func (e *env) do(token, method, path string, body any) resp {
	e.t.Helper()
	var rd io.Reader
	ct := "application/json"
	switch b := body.(type) {
	case nil:
	case string:
		rd, ct = strings.NewReader(b), "application/octet-stream"
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
		if method == http.MethodPatch {
			ct = "application/merge-patch+json"
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", ct)
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	var raw []byte
	if res.Header.Get("Content-Type") != "text/event-stream" {
		raw, _ = io.ReadAll(res.Body)
	}
	return resp{Status: res.StatusCode, Header: res.Header, Body: raw}
}

func (e *env) must(want int, token, method, path string, body any) resp {
	e.t.Helper()
	r := e.do(token, method, path, body)
	if r.Status != want {
		e.t.Fatalf("%s %s = %d %s, want %d", method, path, r.Status, r.Body, want)
	}
	return r
}

func bearer(tk tokens) string { return "Bearer " + tk.AccessToken }

// replayed is the subjects of the events GET /events?query replays
// (Last-Event-ID 0) to token until those of until have all come.
func (e *env) replayed(token, query string, until ...string) map[string]bool {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.base+v1+"/events?"+query, nil)
	req.Header.Set("Authorization", token)
	req.Header.Set("Last-Event-ID", "0")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /events?%s = %d", query, res.StatusCode)
	}
	got := map[string]bool{}
	for msg := range readMessages(res.Body) {
		for _, line := range msg {
			var ce struct {
				Subject string `json:"subject"`
			}
			if data, ok := strings.CutPrefix(line, "data: "); ok && json.Unmarshal([]byte(data), &ce) == nil {
				got[ce.Subject] = true
			}
		}
		if !slices.ContainsFunc(until, func(s string) bool { return !got[s] }) {
			return got
		}
	}
	t.Fatalf("the stream ended before %v came, having seen %v", until, got)
	return nil
}

// openAndRestricted makes, as admin, the queues open and restricted (whose
// jobs only rm-admin may read) and an application, and returns submit: a
// job of one worker, named name ("": none), submitted to queue as token.
func (e *env) openAndRestricted(admin string) (submit func(token, queue, name string) map[string]any) {
	t := e.t
	t.Helper()
	e.must(http.StatusCreated, admin, http.MethodPost, v1+"/queues", map[string]any{"name": "open"})
	e.must(http.StatusCreated, admin, http.MethodPost, v1+"/queues", map[string]any{"name": "restricted",
		"access": map[string]any{"read": []string{"role:rm-admin"}}})
	app := e.must(http.StatusCreated, admin, http.MethodPost, v1+"/applications", map[string]any{"name": "sim", "version": "1", "image": "sim:1"}).obj(t)
	return func(token, queue, name string) map[string]any {
		t.Helper()
		body := map[string]any{"queue_id": queue, "application": map[string]any{"id": app["id"]}, "worker_instances": 1}
		if name != "" {
			body["name"] = name
		}
		return e.must(http.StatusCreated, token, http.MethodPost, v1+"/jobs", body).obj(t)
	}
}
