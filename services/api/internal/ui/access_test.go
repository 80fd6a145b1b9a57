package ui_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/avxrm/rm/pkg/events/indexed/ferretlookup"
	"github.com/avxrm/rm/services/api/internal/ui"
)

// asCaller stands in for the API with auth on for a caller whose token is
// "Bearer t": GET /whoami answers who (JSON), every other call goes to api
// without the token (auth is off there).
func asCaller(api http.Handler, who any) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.URL.Path == "/api/resources/v1/whoami" {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(who)
			return
		}
		r.Header.Del("Authorization")
		api.ServeHTTP(w, r)
	})
}

// TestJobPagesKeepToWhatTheCallerMayRead: with a token, the jobs table
// holds the jobs of the queues GET /whoami says the caller may read, and
// its own on the others, on each of the view's reads: the store by a find,
// the store by the _id index newest first, and the job index; so do a
// queue's lists from the job index (without it they are the API's lists,
// which TestWebViewShowsOnlyReadableJobs in cmd/avxrm/internal/devidp
// checks with real tokens).
func TestJobPagesKeepToWhatTheCallerMayRead(t *testing.T) {
	e := startEnv(t)
	e.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "Default"}, http.StatusCreated)
	e.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "gpu"}, http.StatusCreated)
	hidden, mine, open := e.submit("hidden", "Default", 1, nil), e.submit("mine", "Default", 1, nil), e.submit("open", "gpu", 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.db.Collection("jobs").UpdateByID(ctx, mine, bson.D{{Key: "$set", Value: bson.D{{Key: "owner.subject", Value: "u-1"}}}}); err != nil {
		t.Fatal(err)
	}
	var queues []map[string]any
	for _, name := range []string{"Default", "gpu"} {
		q := e.must(http.MethodGet, "/api/resources/v1/queues/"+name, nil, http.StatusOK)
		queues = append(queues, map[string]any{"id": q["id"], "name": name, "read": name == "gpu", "submit": false})
	}
	who := map[string]any{"subject": "u-1", "username": "alice", "access": "viewer", "queues": queues}
	api := asCaller(e.svc.Handler(), who)
	serve := func(o ui.Options) string {
		o.API, o.DB = api, e.db
		srv := httptest.NewServer(ui.New(o))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	lookup := &idCounter{Lookup: ferretlookup.New(e.ferret, e.db.Name())}
	views := map[string]string{
		"the store by a find":        serve(ui.Options{}),
		"the store by the _id index": serve(ui.Options{Lookup: lookup}),
		"the job index":              serve(ui.Options{JS: e.js}),
	}
	get := func(base, path string) (string, string) {
		t.Helper()
		st, body, _ := e.doAt(base, http.MethodGet, path, nil, "Accept", "text/html", "Authorization", "Bearer t")
		if st != http.StatusOK {
			t.Fatalf("GET %s = %d: %s", path, st, body)
		}
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("Authorization", "Bearer t")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return body, res.Header.Get("X-RM-Jobs-Source")
	}
	for name, base := range views {
		if name == "the job index" {
			for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				if _, src := get(base, "/ui/jobs"); src == "index" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the job index was not loaded within 20 s")
				}
			}
		}
		for _, path := range []string{"/ui/jobs", "/ui/jobs?queue=Default", "/ui/jobs?status=submitted", "/ui/jobs?q=n", "/ui/queues/Default"} {
			if path == "/ui/queues/Default" && name != "the job index" {
				continue // read through the API's routes, which this stand-in does not narrow
			}
			body, _ := get(base, path)
			body = tbody(body)
			for id, want := range map[string]bool{hidden: false, mine: true, open: !strings.Contains(path, "Default")} {
				if got := strings.Contains(body, id); got != want {
					t.Errorf("%s: GET %s shows %s: %v, want %v", name, path, id, got, want)
				}
			}
		}
	}
	if lookup.before.Load() == 0 {
		t.Error("the view with a Lookup did not read the store by the _id index")
	}
}
