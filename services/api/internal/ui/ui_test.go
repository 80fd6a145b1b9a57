package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
	"github.com/avxrm/rm/pkg/events/buildinfo"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/indexed/ferretlookup"
	"github.com/avxrm/rm/services/api"
	"github.com/avxrm/rm/services/api/internal/apitest"
	"github.com/avxrm/rm/services/api/internal/ui"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// env is the real API (with the view) over FerretDB and NATS in process. No
// scheduler runs: submitted jobs stay submitted, which is what the waiting
// list shows before the scheduler has seen them.
type env struct {
	t      testing.TB
	base   string
	db     *mongo.Database
	js     jetstream.JetStream
	svc    *api.Service
	ferret *ferretembed.Server
}

func startEnv(t testing.TB) *env {
	t.Helper()
	a := apitest.Start(t, nil)
	return &env{t: t, base: a.URL, db: a.DB, js: a.JS, svc: a.Svc, ferret: a.Ferret}
}

// do sends a request and returns the status, body and Content-Type.
func (e *env) do(method, path string, body any, hdr ...string) (int, string, string) {
	e.t.Helper()
	return e.doAt(e.base, method, path, body, hdr...)
}

// source says what a page of the server at base was read from.
func (e *env) source(base, path string) string {
	e.t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.Header.Get("X-RM-Jobs-Source")
}

func (e *env) doAt(base, method, path string, body any, hdr ...string) (int, string, string) {
	e.t.Helper()
	r := apitest.Do(e.t, method, base+path, body, hdr...)
	return r.Status, string(r.Body), r.Header.Get("Content-Type")
}

func (e *env) must(method, path string, body any, want int) map[string]any {
	e.t.Helper()
	st, raw, _ := e.do(method, path, body)
	if st != want {
		e.t.Fatalf("%s %s = %d, want %d: %s", method, path, st, want, raw)
	}
	var out map[string]any
	_ = json.Unmarshal([]byte(raw), &out)
	return out
}

func (e *env) submit(name, queue string, workers int, labels map[string]string) string {
	e.t.Helper()
	j := e.must(http.MethodPost, "/api/resources/v1/jobs", map[string]any{
		"name": name, "queue_id": queue, "worker_instances": workers, "labels": labels,
		"application": map[string]any{"name": "sim", "version": "1", "image": "registry.example/sim:1"},
	}, http.StatusCreated)
	return j["id"].(string)
}

func (e *env) page(path string) string {
	e.t.Helper()
	return e.pageAt(e.base, path)
}

// pageAt gets a page from the server at base.
func (e *env) pageAt(base, path string) string {
	e.t.Helper()
	st, raw, ct := e.doAt(base, http.MethodGet, path, nil, "Accept", "text/html")
	if st != http.StatusOK || !strings.HasPrefix(ct, "text/html") {
		e.t.Fatalf("GET %s = %d %s: %s", path, st, ct, raw)
	}
	return raw
}

// bothSources starts a second view beside e's that reads the store only,
// waits until e's view has loaded its job index, and returns the base URLs
// of the two.
func (e *env) bothSources() (storeOnly, indexed string) {
	e.t.Helper()
	srv := httptest.NewServer(ui.New(ui.Options{API: e.svc.Handler(), DB: e.db}))
	e.t.Cleanup(srv.Close)
	for deadline := time.Now().Add(20 * time.Second); e.source(e.base, "/ui/jobs") != "index"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			e.t.Fatal("the job index was not loaded within 20 s")
		}
	}
	return srv.URL, e.base
}

// byLookup starts a third view beside e's, whose job index loads by the
// embedded store's _id index (Options.Lookup), waits until it has loaded
// it, and returns its base URL; it fails the test if the load did not read
// by that index.
func (e *env) byLookup() string {
	e.t.Helper()
	l := &idCounter{Lookup: ferretlookup.New(e.ferret, e.db.Name())}
	srv := httptest.NewServer(ui.New(ui.Options{API: e.svc.Handler(), DB: e.db, JS: e.js, Lookup: l}))
	e.t.Cleanup(srv.Close)
	for deadline := time.Now().Add(20 * time.Second); e.source(srv.URL, "/ui/jobs") != "index"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			e.t.Fatal("the job index was not loaded within 20 s")
		}
	}
	if l.after.Load() == 0 {
		e.t.Fatal("the job index was loaded without reading the store's _id index")
	}
	return srv.URL
}

// storeByLookup starts a fourth view beside e's, with the embedded store's
// Lookup but no event stream, so that it never loads its job index: its
// job pages are read from the store, newest first by the _id index. It
// returns the view's base URL and its Lookup, whose counts tell whether
// they were.
func (e *env) storeByLookup() (string, *idCounter) {
	e.t.Helper()
	l := &idCounter{Lookup: ferretlookup.New(e.ferret, e.db.Name())}
	srv := httptest.NewServer(ui.New(ui.Options{API: e.svc.Handler(), DB: e.db, Lookup: l}))
	e.t.Cleanup(srv.Close)
	return srv.URL, l
}

// idCounter counts a Lookup's reads of _ids in order (after) and in
// descending order (before).
type idCounter struct {
	indexed.Lookup
	after, before atomic.Int64
}

func (c *idCounter) IDsAfter(ctx context.Context, coll, after string, limit int) ([]string, error) {
	c.after.Add(1)
	return c.Lookup.IDsAfter(ctx, coll, after, limit)
}

func (c *idCounter) IDsBefore(ctx context.Context, coll, before string, limit int) ([]string, error) {
	c.before.Add(1)
	return c.Lookup.IDsBefore(ctx, coll, before, limit)
}

func wantIn(t *testing.T, what, page string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(page, w) {
			t.Errorf("%s lacks %q", what, w)
		}
	}
}

func TestPagesShowQueuesJobsAndReasons(t *testing.T) {
	e := startEnv(t)
	e.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "Default", "maximum_allowed_worker_instances": 10}, http.StatusCreated)
	e.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "gpu"}, http.StatusCreated)
	first := e.submit("sweep-1", "Default", 10, map[string]string{"team": "adas"})
	second := e.submit("sweep-2", "Default", 8, nil)
	other := e.submit("render", "gpu", 2, map[string]string{"team": "viz"})

	queues := e.page("/ui/queues")
	wantIn(t, "queues page", queues, "Default", "gpu", "simulation-controller-queue", "post-controller-queue",
		`data-usage="0/10"`, `data-usage="0/-"`, "built-in", "default (local processes)")
	if strings.Count(queues, "built-in</span>") != 2 {
		t.Errorf("queues page marks %d queues built-in, want 2", strings.Count(queues, "built-in</span>"))
	}
	// Every page's footer names the server's build.
	wantIn(t, "queues page", queues, `<footer class="foot">Resource Manager <a href="/version" title="this server's build">`+
		template.HTMLEscapeString(buildinfo.Get().Version)+"</a></footer>")

	// No scheduler here: both jobs wait, first submitted first.
	q := e.page("/ui/queues/Default")
	wantIn(t, "queue page", q, "Pending, in admission order", "needs 10 workers, 10 free of 10", "needs 8 workers, 10 free of 10",
		`id="limit-form"`, `<label for="limit-input">`)
	if i, k := strings.Index(q, first), strings.Index(q, second); i < 0 || k < i {
		t.Errorf("queue page lists %s at %d and %s at %d; want submission order", first, i, second, k)
	}
	if strings.Contains(q, other) {
		t.Errorf("queue page of Default lists job %s of queue gpu", other)
	}

	// The jobs table and the queue lists read the view's job index once it
	// is loaded, the store before: both must say the same.
	storeOnly, indexed := e.bothSources()
	storeBack, backReads := e.storeByLookup()
	for base, source := range map[string]string{storeOnly: "store", indexed: "index", e.byLookup(): "index", storeBack: "store"} {
		page := func(path string) string {
			t.Helper()
			if got := e.source(base, path); got != source {
				t.Errorf("GET %s read from the %s, want the %s", path, got, source)
			}
			return e.pageAt(base, path)
		}
		jobs := page("/ui/jobs")
		wantIn(t, "jobs page", jobs, first, second, other, "team=adas")
		if i, k := strings.Index(jobs, other), strings.Index(jobs, first); k < i {
			t.Errorf("jobs page (%s) is not newest first", source)
		}
		for query, want := range map[string][]string{
			"?q=SWEEP":           {first, second},
			"?queue=gpu":         {other},
			"?label=team%3Dadas": {first},
			"?status=submitted":  {first, second, other},
			"?status=running":    {},
			"?owner=nobody":      {},
		} {
			got := tbody(page("/ui/jobs" + query))
			for _, id := range []string{first, second, other} {
				if strings.Contains(got, id) != contains(want, id) {
					t.Errorf("jobs%s (%s): shows %s = %v, want %v", query, source, id, strings.Contains(got, id), contains(want, id))
				}
			}
		}
		// Paging: one a page, newest first, the next link carrying the filter.
		p1 := page("/ui/jobs?limit=1&q=sweep")
		if b := tbody(p1); !strings.Contains(b, second) || strings.Contains(b, first) {
			t.Fatalf("first page of one (%s) should hold %s only", source, second)
		}
		next := "/ui/jobs?cursor=" + second + "&amp;limit=1&amp;q=sweep"
		wantIn(t, "first page", p1, next)
		p2 := tbody(page(strings.ReplaceAll(next, "&amp;", "&")))
		if !strings.Contains(p2, first) || strings.Contains(p2, second) || strings.Contains(p2, `rel="next"`) {
			t.Errorf("second page (%s) should hold %s only and be the last", source, first)
		}
		q := page("/ui/queues/Default")
		if i, k := strings.Index(q, first), strings.Index(q, second); i < 0 || k < i || strings.Contains(q, other) {
			t.Errorf("queue page (%s) lists %s at %d and %s at %d (and %s: %v)", source, first, i, second, k, other, strings.Contains(q, other))
		}
	}
	if backReads.before.Load() == 0 {
		t.Error("the store's pages of a view with a Lookup were not read by the _id index, newest first")
	}
	// The usage counted from the index is the API's.
	fromIndex, fromAPI := tbody(e.page("/ui/queues")), tbody(e.pageAt(storeOnly, "/ui/queues"))
	if fromIndex != fromAPI || !strings.Contains(fromIndex, `<td class="num">2<span class="muted sub">18 workers</span></td>`) {
		t.Errorf("queues page from the index:\n%s\nfrom the API:\n%s", fromIndex, fromAPI)
	}
	// A job submitted now is on the next page the index serves.
	late := e.submit("late", "gpu", 1, nil)
	if got := tbody(e.page("/ui/jobs?queue=gpu")); !strings.Contains(got, late) {
		t.Errorf("the jobs page does not show the job just submitted")
	}
	e.must(http.MethodDelete, "/api/resources/v1/jobs/"+late, nil, http.StatusNoContent)
	if got := tbody(e.page("/ui/jobs?queue=gpu")); strings.Contains(got, late) {
		t.Errorf("the jobs page still shows the job just deleted")
	}

	job := e.page("/ui/jobs/" + first)
	wantIn(t, "job page", job, "sweep-1", "Timeline", `data-step="submitted"`, `data-step="pending"`, "Cancel job", "Clean up",
		"Start post controller", "No instance has been created yet", "No artifact has been uploaded", "team=adas")

	feed := e.page("/ui/events")
	wantIn(t, "events page", feed, "rm.job.submitted", "rm.queue.created", "/ui/jobs/"+first)

	// The page asks the script to follow the right slice of the stream.
	wantIn(t, "queue page", q, `data-live="queue_id=q-`)
	wantIn(t, "job page", job, `data-live="job_id=`+first+`&amp;type=`, `rm.job.running`, `rm.export.ready`)

	// The fragment the script fetches is the main region alone.
	st, frag, _ := e.do(http.MethodGet, "/ui/queues/Default", nil, "X-RM-Fragment", "1")
	if st != http.StatusOK || !strings.HasPrefix(frag, "<main") || strings.Contains(frag, "<html") {
		t.Errorf("fragment = %d %.80q", st, frag)
	}

	// Assets are served from the binary.
	for _, a := range []string{"/ui/static/ui.js", "/ui/static/ui.css"} {
		if st, body, _ := e.do(http.MethodGet, a, nil); st != http.StatusOK || len(body) < 1000 {
			t.Errorf("GET %s = %d (%d bytes)", a, st, len(body))
		}
	}
}

// tbody is the table body of a page, and what follows it (the pager).
func tbody(page string) string {
	_, b, _ := strings.Cut(page, "<tbody>")
	return b
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestBadInputIsA4xxNamingTheField(t *testing.T) {
	e := startEnv(t)
	e.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "Default", "maximum_allowed_worker_instances": 10}, http.StatusCreated)
	id := e.submit("j", "Default", 1, nil)
	for path, want := range map[string]struct {
		status int
		field  string
	}{
		"/ui/jobs?status=bogus":                 {400, "status"},
		"/ui/jobs?label=no-equals":              {400, "label"},
		"/ui/jobs?cursor=x%27%20or%201":         {400, "cursor"},
		"/ui/jobs?limit=0":                      {400, "limit"},
		"/ui/jobs?limit=abc":                    {400, "limit"},
		"/ui/jobs?queue=nope":                   {400, "queue"},
		"/ui/jobs?array=arr-nope":               {400, "array"},
		"/ui/jobs?q=" + strings.Repeat("a", 64): {400, "q"},
		"/ui/jobs/" + id + "?ipage=0":           {400, "ipage"},
		"/ui/jobs/" + id + "?log=worker/x":      {400, "log"},
		"/ui/jobs/" + id + "?istatus=zzz":       {400, "istatus"},
		"/ui/jobs/job-doesnotexist":             {404, ""},
		"/ui/jobs/not-a-job":                    {404, ""},
		"/ui/queues/nope":                       {404, ""},
		"/ui/nowhere":                           {404, ""},
		"/ui/static/nope.js":                    {404, ""},
		"/ui/static/":                           {404, ""},
	} {
		st, body, ct := e.do(http.MethodGet, path, nil, "Accept", "application/json")
		if st != want.status || ct != "application/problem+json" {
			t.Errorf("GET %s = %d %s, want %d problem JSON: %s", path, st, ct, want.status, body)
			continue
		}
		var p struct {
			Status int `json:"status"`
			Errors []struct {
				Field string `json:"field"`
			} `json:"errors"`
		}
		if err := json.Unmarshal([]byte(body), &p); err != nil || p.Status != st {
			t.Errorf("GET %s: not a problem: %s", path, body)
		}
		if want.field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != want.field) {
			t.Errorf("GET %s: problem names %+v, want field %q", path, p.Errors, want.field)
		}
		// A browser gets the same status with a readable page: a 404 of
		// a job or queue worded alike whatever the id's shape, a bad
		// query's problem said once.
		st, html, ct := e.do(http.MethodGet, path, nil, "Accept", "text/html")
		if st != want.status || !strings.HasPrefix(ct, "text/html") || !strings.Contains(html, `role="alert"`) {
			t.Errorf("GET %s (HTML) = %d %s", path, st, ct)
		}
		for prefix, title := range map[string]string{"/ui/jobs/": "No such job", "/ui/queues/": "No such queue"} {
			if st == http.StatusNotFound && strings.HasPrefix(path, prefix) && (!strings.Contains(html, "<h1>"+title+"</h1>") || !strings.Contains(html, "not found")) {
				t.Errorf("GET %s (HTML): want %q and the id not found, got %s", path, title, html)
			}
		}
		if want.field != "" && (strings.Count(html, "<code>"+want.field+"</code>: ") != 1 || strings.Contains(html, want.field+": ")) {
			t.Errorf("GET %s (HTML): the problem of %s is not said once, in the list: %s", path, want.field, html)
		}
	}
	// A list's path with a slash after it is the list.
	for path, want := range map[string]string{"/ui/jobs/": "/ui/jobs", "/ui/queues/": "/ui/queues"} {
		res, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(e.base + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusFound || res.Header.Get("Location") != want {
			t.Errorf("GET %s = %d to %q, want 302 to %s", path, res.StatusCode, res.Header.Get("Location"), want)
		}
	}
}

// A page's path is decoded once: /ui/queues/%25 asks for a queue named
// "%", and the answer names it (decoding it twice asked for "").
func TestAPathIsDecodedOnce(t *testing.T) {
	e := startEnv(t)
	for _, path := range []string{"/ui/queues/%25", "/ui/arrays/%25", "/ui/deployments/%25"} {
		st, body, _ := e.do(http.MethodGet, path, nil, "Accept", "application/json")
		if st != http.StatusNotFound || !strings.Contains(body, `\"%\" not found`) {
			t.Errorf("GET %s = %d %s, want 404 naming %q", path, st, body, "%")
		}
	}
}

// When a read of the view's own fails (here the store is unreachable), the
// page is a 502 that says so without the driver's error, which names
// addresses and internals.
func TestAFailedReadLeaksNoInternals(t *testing.T) {
	e := startEnv(t)
	client, err := mongo.Connect(options.Client().ApplyURI("mongodb://127.0.0.1:1/").SetServerSelectionTimeout(200 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	srv := httptest.NewServer(ui.New(ui.Options{API: e.svc.Handler(), DB: client.Database("rm"), Logger: apitest.Discard()}))
	t.Cleanup(srv.Close)
	for _, accept := range []string{"text/html", "application/json"} {
		st, body, _ := e.doAt(srv.URL, http.MethodGet, "/ui/jobs", nil, "Accept", accept)
		if st != http.StatusBadGateway || !strings.Contains(body, "could not be read") {
			t.Errorf("GET /ui/jobs (%s) with the store away = %d, want 502 saying the page could not be read: %s", accept, st, body)
		}
		for _, internal := range []string{"127.0.0.1:1", "server selection", "list queues"} {
			if strings.Contains(body, internal) {
				t.Errorf("GET /ui/jobs (%s) shows %q: %s", accept, internal, body)
			}
		}
	}
}

// requireBearer stands in for the API's auth middleware: it answers 401
// unless the request carries the token.
func requireBearer(next http.Handler, token string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") && r.Header.Get("Authorization") != "Bearer "+token {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"title":"Unauthorized","status":401,"detail":"a bearer token is required"}`)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// The view reads through the API with the caller's token: without one it
// asks for sign-in, with one it shows the page.
func TestTheCallersTokenGoesToTheAPI(t *testing.T) {
	e := startEnv(t)
	u := ui.New(ui.Options{API: requireBearer(e.svc.Handler(), "s3cret"), DB: e.db, JS: e.js,
		OIDC: &ui.OIDC{Issuer: "http://127.0.0.1:1/realms/rm", ClientID: "avxrm-ui"}})
	srv := httptest.NewServer(u)
	t.Cleanup(srv.Close)
	get := func(hdr ...string) (int, string) {
		st, body, _ := e.doAt(srv.URL, http.MethodGet, "/ui/queues", nil, hdr...)
		return st, body
	}
	st, body := get()
	if st != http.StatusUnauthorized || !strings.Contains(body, "data-signin") || !strings.Contains(body, `data-oidc-issuer="http://127.0.0.1:1/realms/rm"`) {
		t.Errorf("without a token: %d, want 401 with the sign-in page: %.300s", st, body)
	}
	if st, body = get("Authorization", "Bearer wrong"); st != http.StatusUnauthorized {
		t.Errorf("with a wrong token: %d", st)
	}
	if st, body = get("Authorization", "Bearer s3cret", "X-RM-Fragment", "1"); st != http.StatusOK || !strings.Contains(body, "simulation-controller-queue") {
		t.Errorf("with the token: %d %.200s", st, body)
	}
}

// A job given no name is named by its id (the API's default): the pages
// show the id once, as the id, not once as a name and again below it.
func TestAJobNamedByItsIDShowsItOnce(t *testing.T) {
	e := startEnv(t)
	e.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "Default", "maximum_allowed_worker_instances": 10}, http.StatusCreated)
	unnamed := e.must(http.MethodPost, "/api/resources/v1/jobs", map[string]any{"queue_id": "Default", "worker_instances": 1,
		"application": map[string]any{"name": "sim", "version": "1", "image": "registry.example/sim:1"}}, http.StatusCreated)["id"].(string)
	named := e.submit("sweep-1", "Default", 1, nil)
	storeOnly, indexed := e.bothSources()
	for _, base := range []string{storeOnly, indexed} {
		for _, path := range []string{"/ui/jobs", "/ui/queues/Default"} {
			body := tbody(e.pageAt(base, path))
			if n := strings.Count(body, ">"+unnamed+"<"); n != 1 || !strings.Contains(body, "<code>"+unnamed+"</code>") {
				t.Errorf("%s shows the id of the job without a name %d times, want once as <code>", path, n)
			}
			if !strings.Contains(body, ">sweep-1<") {
				t.Errorf("%s does not show the name of job %s", path, named)
			}
		}
	}
	if p := e.page("/ui/jobs/" + unnamed); strings.Count(p, ">"+unnamed+"<") != 1 || !strings.Contains(p, "<h1>Job <code>"+unnamed+"</code>") {
		t.Errorf("the page of the job without a name shows its id %d times, want once, in the heading", strings.Count(p, ">"+unnamed+"<"))
	}
	if p := e.page("/ui/jobs/" + named); !strings.Contains(p, "<h1>Job sweep-1") || !strings.Contains(p, "<code>"+named+"</code>") {
		t.Error("the page of job sweep-1 does not show its name in the heading and its id below")
	}
}
