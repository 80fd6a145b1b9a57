// Package ui is the web view served at /ui/: queues with their usage, a
// queue's running and pending jobs with the reasons they wait, a filterable
// jobs table, a job's timeline, instances, log tail and downloads, and a live
// event feed. Pages are rendered on the server from Go templates; a small
// script (no framework, no CDN) keeps them live by listening to the API's
// event stream and patching the page in place.
//
// The view reads what the API serves by calling the API's own routes in
// process, with the caller's Authorization header, so it shows exactly what
// the caller may read and nothing the REST contract does not say. Two reads
// go around the routes because the routes cannot answer them: the jobs table
// (name search and newest-first paging over the jobs collection, scoped to
// the queues the caller may list) and past events (the job timeline and the
// feed's first page, read from the event stream). It must not import
// package httpapi: the routes are its interface.
package ui

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/avxrm/rm/pkg/events/buildinfo"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Path is where the view is served.
const Path = "/ui"

// apiBase prefixes the API's resource routes.
const apiBase = "/api/resources/v1"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// OIDC says how the browser signs users in (authorization code with PKCE).
// The view itself checks nothing: the API checks the token on every call.
type OIDC struct {
	Issuer   string // e.g. https://idp.example/realms/rm
	ClientID string // a public client allowed to redirect to <origin>/ui/callback
	Scope    string // if empty, "openid profile", and offline_access when the issuer lists it
}

// Options configure the view.
type Options struct {
	// API answers the resource routes; the view calls it in process. Required.
	API http.Handler
	// DB holds the jobs collection the jobs table reads. Required.
	DB *mongo.Database
	// JS is the event stream for job timelines and the feed's first page; nil
	// leaves both empty (live updates still come from the API's /events).
	JS jetstream.JetStream
	// Lookup, when set (the embedded store), loads the job index by the
	// store's _id index (scanJobs) rather than one find.
	Lookup indexed.Lookup
	// OIDC, when set, makes the pages offer sign-in.
	OIDC   *OIDC
	Logger *slog.Logger
	// Now is the clock of ages and durations. If nil, time.Now.
	Now func() time.Time
}

// UI serves the pages.
type UI struct {
	opts  Options
	pages map[string]*template.Template
	jobs  jobIndex
}

// Register serves the view under /ui on e.
func Register(e *echo.Echo, opts Options) *UI {
	u := New(opts)
	h := echo.WrapHandler(u)
	e.GET(Path, h)
	e.GET(Path+"/*", h)
	return u
}

// New prepares the view; it panics if a template does not parse (a build error).
func New(opts Options) *UI {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	u := &UI{opts: opts, pages: map[string]*template.Template{}}
	funcs := template.FuncMap{
		"ago":      u.ago,
		"dur":      fmtDuration,
		"ts":       fmtTime,
		"pct":      pct,
		"query":    withQuery,
		"join":     strings.Join,
		"plural":   plural,
		"deref":    func(p *int) int { return *p },
		"instance": func(role string, index int) string { return fmt.Sprintf("%s/%d", role, index) },
		"add":      func(a, b int) int { return a + b },
	}
	for _, page := range []string{"queues", "queue", "jobs", "job", "array", "deployment", "events", "message", "callback"} {
		t := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html", "templates/"+page+".html"))
		u.pages[page] = t
	}
	return u
}

// ServeHTTP routes /ui/… to its page.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, Path)
	switch {
	case rest == "" || rest == "/":
		http.Redirect(w, r, Path+"/queues", http.StatusFound)
	case strings.HasPrefix(rest, "/static/"):
		u.static(w, r, strings.TrimPrefix(rest, "/static/"))
	case rest == "/queues/" || rest == "/jobs/": // the list, not a page of none
		http.Redirect(w, r, Path+strings.TrimSuffix(rest, "/"), http.StatusFound)
	case rest == "/queues":
		u.serve(w, r, u.queuesPage)
	case strings.HasPrefix(rest, "/queues/"):
		u.serve(w, r, func(r *http.Request) (*page, error) { return u.queuePage(r, strings.TrimPrefix(rest, "/queues/")) })
	case rest == "/jobs":
		u.serve(w, r, u.jobsPage)
	case strings.HasPrefix(rest, "/jobs/"):
		u.serve(w, r, func(r *http.Request) (*page, error) { return u.jobPage(r, strings.TrimPrefix(rest, "/jobs/")) })
	case strings.HasPrefix(rest, "/deployments/"):
		u.serve(w, r, func(r *http.Request) (*page, error) {
			return u.deploymentPage(r, strings.TrimPrefix(rest, "/deployments/"))
		})
	case strings.HasPrefix(rest, "/arrays/"):
		u.serve(w, r, func(r *http.Request) (*page, error) { return u.arrayPage(r, strings.TrimPrefix(rest, "/arrays/")) })
	case rest == "/events":
		u.serve(w, r, u.eventsPage)
	case rest == "/callback":
		u.serve(w, r, func(*http.Request) (*page, error) {
			return &page{Name: "callback", Title: "Signing in"}, nil
		})
	default:
		u.serve(w, r, func(*http.Request) (*page, error) {
			return nil, &pageError{Status: http.StatusNotFound, Title: "No such page", Detail: r.URL.Path}
		})
	}
}

func (u *UI) static(w http.ResponseWriter, r *http.Request, name string) {
	sub, _ := fs.Sub(staticFS, "static")
	if fi, err := fs.Stat(sub, name); name == "" || strings.Contains(name, "..") || err != nil || fi.IsDir() {
		u.serve(w, r, func(*http.Request) (*page, error) { // as any page that is not there
			return nil, &pageError{Status: http.StatusNotFound, Title: "No such file", Detail: r.URL.Path}
		})
		return
	}
	// The assets are embedded: they change only with the binary.
	w.Header().Set("Cache-Control", "public, max-age=300")
	http.ServeFileFS(w, r, sub, name)
}

// page is what a template renders.
type page struct {
	Name  string // template
	Title string
	Nav   string // which navigation entry is current
	// Live is what the page listens to: the query of GET /events; "-" for nothing.
	Live string
	Data any
	// Source says where the jobs listed came from, for tests and people
	// who wonder (X-RM-Jobs-Source): "index" or "store".
	Source string
}

// pageError is a page that could not be rendered, shown with its status.
type pageError struct {
	Status int
	Title  string
	Detail string
	Fields []fieldError
}

type fieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e *pageError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Title, e.Detail) }

// layoutData is the whole document.
type layoutData struct {
	*page
	Self     string // the page's URL, which the script fetches to refresh it
	OIDC     *OIDC
	Signin   bool // the API asked for a token: the script fetches the page with one
	Fragment bool
	Error    *pageError
	Version  string // the server's build, in the footer
}

// serve renders a page, or only its main region when the script asks
// (X-RM-Fragment), or the error that stopped it.
func (u *UI) serve(w http.ResponseWriter, r *http.Request, build func(*http.Request) (*page, error)) {
	p, err := build(r)
	d := layoutData{page: p, Self: r.URL.RequestURI(), OIDC: u.opts.OIDC, Fragment: r.Header.Get("X-RM-Fragment") != "",
		Version: buildinfo.Get().Version}
	status := http.StatusOK
	if err != nil {
		var pe *pageError
		if !errors.As(err, &pe) {
			// A read of the view's own failed (the store, the stream): its
			// error names addresses and drivers, which are the operator's
			// business, not the page's.
			u.opts.Logger.Error("ui page failed", "path", r.URL.Path, "request_id", r.Header.Get("X-Request-Id"), "err", err)
			pe = &pageError{Status: http.StatusBadGateway, Title: "The page could not be read",
				Detail: "A read behind this page failed; try again. The server's log says why (\"ui page failed\", path " + r.URL.Path + ")."}
		}
		status = pe.Status
		if status == http.StatusUnauthorized {
			d.Signin = true
		}
		if !acceptsHTML(r) {
			writeProblem(w, r, pe)
			return
		}
		d.page = &page{Name: "message", Title: pe.Title, Live: "-", Data: pe}
		d.Error = pe
	}
	var buf bytes.Buffer
	tmpl := "layout.html"
	if d.Fragment {
		tmpl = "main"
	}
	if err := u.pages[d.Name].ExecuteTemplate(&buf, tmpl, d); err != nil {
		u.opts.Logger.Error("ui template failed", "page", d.Name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; connect-src *; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if p != nil && p.Source != "" {
		w.Header().Set("X-RM-Jobs-Source", p.Source)
	}
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// acceptsHTML says whether the client reads HTML; others get problem JSON.
func acceptsHTML(r *http.Request) bool {
	a := r.Header.Get("Accept")
	return a == "" || strings.Contains(a, "text/html") || strings.Contains(a, "*/*") || r.Header.Get("X-RM-Fragment") != ""
}

func writeProblem(w http.ResponseWriter, r *http.Request, pe *pageError) {
	body := map[string]any{"type": "about:blank", "title": http.StatusText(pe.Status), "status": pe.Status,
		"detail": pe.Title + ": " + pe.Detail, "instance": r.URL.Path}
	if len(pe.Fields) > 0 {
		body["errors"] = pe.Fields
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(pe.Status)
	_ = json.NewEncoder(w).Encode(body)
}

// badQuery is a 400 naming the query parameters that are wrong.
func badQuery(fields ...fieldError) error {
	var parts []string
	for _, f := range fields {
		parts = append(parts, f.Field+": "+f.Message)
	}
	return &pageError{Status: http.StatusBadRequest, Title: "Bad query", Detail: strings.Join(parts, "; "), Fields: fields}
}

// withQuery returns path with the query parameters kv (name, value, …),
// leaving out empty values.
func withQuery(path string, kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Add(kv[i], kv[i+1])
		}
	}
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}
