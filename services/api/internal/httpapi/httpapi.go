// Package httpapi is the API's HTTP surface: echo routes, huma operations
// (the OpenAPI document is generated from them, so the two cannot drift),
// request and response types, health, readiness and metrics. Storage goes
// through package store; errors through package problem.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/buildinfo"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/services/api/internal/auth"
	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/avxrm/rm/services/api/internal/store"
	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humaecho"
	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// BasePath prefixes every resource route.
const BasePath = "/api/resources/v1"

// ReadyCheck reports whether a dependency is usable; nil means ready.
type ReadyCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

// Options configure the HTTP surface.
type Options struct {
	Store     *store.Store
	Source    string // CloudEvents source of the API's events
	BodyLimit int64
	Ready     []ReadyCheck
	Gatherer  prometheus.Gatherer
	Registry  prometheus.Registerer
	Logger    *slog.Logger
	Now       func() time.Time
	JS        jetstream.JetStream // for GET /events; nil answers 503 there
	Artifacts ArtifactConfig      // upload limit and export lifetime; zero values mean the defaults
	// Auth verifies bearer tokens; nil: auth is off and every request may do anything.
	Auth *auth.Authenticator
	// JobTokens mints the RM_JOB_TOKEN of each job; nil: jobs get none.
	JobTokens *auth.JobTokens
	// Lookup finds active jobs by index on a store that cannot use one for
	// the filter (the embedded FerretDB); nil: the filter goes to the store.
	Lookup indexed.Lookup
	// DefaultDriver is the launchers' driver type for queues without a
	// plugin while no plugin is the default; "": not known.
	DefaultDriver string
	// JobRetention is how long a job is kept after it ended: ExpireJobs
	// deletes it then (retention.go). Zero: every job is kept.
	JobRetention time.Duration
}

// Server holds the routes.
type Server struct {
	opts Options
	Echo *echo.Echo
	API  huma.API

	queues store.Kind[*events.Queue]
	jobs   *jobdoc.Store
	active *indexed.Reader // a queue's active jobs, by index (usage, positions)
	// artifacts reads a job's artifact records by an index of job_id
	// (the Lookup's on the embedded store; MongoDB's, EnsureIndexes).
	artifacts *indexed.Reader
	hub       *eventHub // the readers of GET /events (eventhub.go)
	// callerStreams bounds the readers of GET /events of each caller.
	callerStreams callerStreams
	// streams ends when the server begins to shut down (EndStreams), and
	// with it the answers that last as long as their client (streams.go).
	streams    context.Context
	endStreams context.CancelFunc
	// arrayCancels asks the jobs of cancelled arrays to cancel, after the
	// answer (arraycancel.go).
	arrayCancels arrayCancels
	// blobRemovals removes the bytes of deleted artifacts and exports, after
	// the answer (blobremoval.go).
	blobRemovals blobRemovals
	// idempotentRoutes are the echo paths of the POSTs the idempotency
	// middleware serves (see idempotentPost).
	idempotentRoutes map[string]bool
	// pluginTypes are the queues' plugins' types as last read
	// (queuePluginOfType).
	pluginTypes pluginTypes
	// controllerQueue is simulation-controller-queue as last read
	// (nothingForTheController).
	controllerQueue controllerQueueRead
	// jobsExpired counts the jobs ExpireJobs deleted; expireBatch, set by
	// tests only, replaces the jobs one pass deletes at most (retention.go).
	jobsExpired prometheus.Counter
	expireBatch int
	// beforeWrite, set by tests only, runs between the read of a resource
	// and its conditional write (crud), with its collection and id.
	beforeWrite func(ctx context.Context, coll, id string)
}

// New builds the echo router with every route.
func New(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	problem.Install()
	nameMissingFields()
	// A field is named exactly as the schema names it: huma's validation
	// otherwise takes "Name" for "name", and encoding/json, which ignores
	// case too, keeps the later of {"name": "ok", "Name": "a b"}, so a value
	// the schema never checked (a name outside the pattern, a priority
	// beyond its maximum) was stored. "Name" is an unknown field, a 422.
	huma.ValidateStrictCasing = true
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler
	answerHEAD(e)
	e.Use(requestID, logRequests(opts.Logger), httpMetrics(opts.Registry), recoverProblem, retryAfter, ignoreInvalidRange, decodeParams)

	cfg := huma.DefaultConfig("Resource Manager API", "1.0.0")
	configureOpenAPI(&cfg)
	humanJSON(&cfg)
	cfg.Transformers = append(cfg.Transformers, problemInstance, noteFailure)
	api := humaecho.New(e, cfg)
	api.UseMiddleware(checkQuery(api))
	nameReadOnlyFields(api.OpenAPI().Components.Schemas)

	s := &Server{opts: opts, Echo: e, API: api, idempotentRoutes: map[string]bool{}}
	s.streams, s.endStreams = context.WithCancel(context.Background())
	s.jobsExpired = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "rm_api_jobs_expired_total", Help: "Jobs the API deleted as they ended longer ago than the retention (RM_JOB_RETENTION).",
	})
	if opts.Registry != nil {
		opts.Registry.MustRegister(s.jobsExpired)
	}
	if opts.JS != nil {
		s.hub = newEventHub(opts.JS, opts.Logger)
	}
	s.queues = store.Kind[*events.Queue]{S: opts.Store, Coll: store.Queues, Name: "queue", IDPrefix: "q"}
	e.Use(refuseCrossOrigin, s.authorize, rejectNonUTF8(opts.BodyLimit))
	s.jobs = jobdoc.New(opts.Store.DB, opts.Store.Outbox, jobdoc.API, opts.Source, jobdoc.WithClock(opts.Now), jobdoc.WithLookup(opts.Lookup))
	s.active = &indexed.Reader{Coll: opts.Store.DB.Collection(store.Jobs), Lookup: opts.Lookup, Exclude: []string{"runtime", "_outbox"}}
	s.artifacts = &indexed.Reader{Coll: opts.Store.DB.Collection(store.Artifacts), Lookup: opts.Lookup}
	api.OpenAPI().OnAddOperation = append(api.OpenAPI().OnAddOperation, s.documentConventions)
	e.Use(s.idempotency)

	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/readyz", s.readyz)
	e.GET("/version", echo.WrapHandler(buildinfo.Handler()))
	if opts.Gatherer != nil {
		e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{})))
	}
	s.registerDocs()
	s.registerAuth()
	s.registerWhoami()
	s.registerQueues()
	s.registerPlugins()
	s.registerApplications()
	s.registerAppRuntimeConfigs()
	s.registerDeployments()
	s.registerJobs()
	s.registerPending()
	s.registerJobArrays()
	s.registerArtifacts()
	s.registerExports()
	s.registerEvents()
	s.registerLogs()
	// Last, once every operation is registered: the document as clients read it.
	s.finishDocument()
	return s
}

func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{}
	ok := true
	for _, rc := range s.opts.Ready {
		if err := rc.Check(ctx); err != nil {
			checks[rc.Name] = err.Error()
			ok = false
		} else {
			checks[rc.Name] = "ok"
		}
	}
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	return c.JSON(status, map[string]any{"ready": ok, "checks": checks})
}

// errorHandler answers echo's own errors (unknown route, wrong method) and
// those of the middlewares as problems; logRequests logs a 5xx.
func errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	p := asProblemOf(err)
	p.Instance = c.Request().URL.Path
	c.Response().Header().Set(echo.HeaderContentType, "application/problem+json")
	_ = c.JSON(p.Status, p)
}

// problemInstance gives the problems huma writes (a handler's error, a
// request huma or checkQuery refuses) their instance, the path asked for,
// as errorHandler does for the answers echo's middlewares and routes give:
// huma writes its errors itself, never through echo's error handler.
func problemInstance(ctx huma.Context, _ string, v any) (any, error) {
	p, ok := v.(*problem.Problem)
	if !ok || p.Instance != "" {
		return v, nil
	}
	with := *p // a copy: a problem value may be shared
	with.Instance = ctx.URL().Path
	return &with, nil
}

// asProblemOf is the problem the error handler answers err with.
func asProblemOf(err error) *problem.Problem {
	var p *problem.Problem
	var he *echo.HTTPError
	switch {
	case errors.As(err, &p):
		return p
	case errors.As(err, &he):
		return problem.New(he.Code, fmt.Sprint(he.Message))
	}
	return problem.From(err)
}

// crossOrigin tells a request a browser sent from a page of another
// origin (Sec-Fetch-Site, else Origin against Host) from the others.
var crossOrigin = http.NewCrossOriginProtection()

// refuseCrossOrigin answers 403 to a request that would change something
// (not GET, HEAD or OPTIONS) sent by a browser from a page of another
// origin: while auth is off nothing else stops such a page from cancelling
// or deleting jobs (a POST with no body, or a text/plain one, needs no CORS
// preflight), and with auth on no page of another origin has a reason to
// write. Clients that are not browsers (curl, the CLI, the SDKs) send
// neither Sec-Fetch-Site nor Origin and pass, as do the web view and the
// docs page, served from the API's own origin. The API answers no CORS
// preflight, so no other origin is allowed.
func refuseCrossOrigin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if !routed(c) || crossOrigin.Check(r) == nil {
			return next(c)
		}
		from := r.Header.Get("Origin")
		if from == "" {
			from = "(none)"
		}
		why := fmt.Sprintf("its Origin %s is not this server's (%s)", from, origin(c))
		if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
			why = fmt.Sprintf("the browser says it comes from another origin (Sec-Fetch-Site: %s; Origin %s)", site, from)
		}
		return problem.New(http.StatusForbidden, fmt.Sprintf("a %s from a page of another origin is refused: %s; "+
			"send it from the API's own origin (the web view at /ui/), or from a client that is not a browser", r.Method, why))
	}
}

// retryAfter adds Retry-After to every 503 that does not carry one, so a
// client knows the refusal is temporary and when to try again.
func retryAfter(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		res := c.Response()
		res.Before(func() {
			if res.Status == http.StatusServiceUnavailable && res.Header().Get("Retry-After") == "" {
				res.Header().Set("Retry-After", strconv.Itoa(problem.RetryAfterSeconds))
			}
		})
		return next(c)
	}
}

// recoverProblem turns a panic into a 500 problem instead of a dropped
// connection; logRequests logs the panic with the request.
func recoverProblem(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic in handler: %v", r) // a 500 "internal error" to the client
			}
		}()
		return next(c)
	}
}

// bodyReadTimeout bounds the time a client may take to send a request body.
const bodyReadTimeout = 30 * time.Second

// rejectNonUTF8 bounds request bodies and refuses bytes that are not UTF-8,
// which encoding/json would otherwise silently replace with U+FFFD.
func rejectNonUTF8(limit int64) echo.MiddlewareFunc {
	if limit <= 0 {
		limit = 1 << 20
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if r.Body == nil || r.Body == http.NoBody || !isJSON(r.Header.Get(echo.HeaderContentType)) {
				return next(c)
			}
			if err := plainMediaType(r); err != nil {
				return err
			}
			if ce := r.Header.Get(echo.HeaderContentEncoding); ce != "" && !strings.EqualFold(ce, "identity") {
				// Not decoded: the compressed bytes were read as the JSON
				// itself and refused as "not valid UTF-8".
				c.Response().Header().Set(echo.HeaderAcceptEncoding, "identity")
				return problem.New(http.StatusUnsupportedMediaType, fmt.Sprintf("the body is sent with Content-Encoding %s; this API takes JSON bodies uncompressed", ce),
					problem.Field("Content-Encoding", "expected none or identity, got %s", ce))
			}
			if r.ContentLength > limit {
				return tooLarge(c.Response().Writer, r, limit)
			}
			// The read is bounded in time here, and the deadline lifted after
			// it: a deadline left on the connection (as huma's BodyReadTimeout
			// leaves it) cancels the request's context when it passes, in the
			// middle of a slow handler.
			rc := http.NewResponseController(c.Response().Writer)
			_ = rc.SetReadDeadline(time.Now().Add(bodyReadTimeout))
			body, err := readLimited(c.Response().Writer, r, limit)
			_ = rc.SetReadDeadline(time.Time{})
			if err != nil {
				return err
			}
			if !utf8.Valid(body) {
				return problem.New(http.StatusBadRequest, "request body is not valid UTF-8", problem.Field("", "invalid UTF-8 at byte %d", firstInvalid(body)))
			}
			if f := scanBody(body); f != nil {
				return problem.Invalid(f)
			}
			return next(c)
		}
	}
}

func isJSON(ct string) bool {
	return ct == "" || strings.Contains(strings.ToLower(ct), "json")
}

// plainMediaType checks the Content-Type of a JSON body and leaves only its
// media type, in lower case, which is what the operations match: media types
// are case-insensitive (RFC 9110 8.3.1), and JSON in a charset other than
// UTF-8 would be read as UTF-8.
func plainMediaType(r *http.Request) error {
	ct := r.Header.Get(echo.HeaderContentType)
	if ct == "" {
		return nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return problem.New(http.StatusUnsupportedMediaType, fmt.Sprintf("the Content-Type %q is not a media type", ct),
			problem.Field("Content-Type", "not a media type (%v); send application/json", err))
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return problem.New(http.StatusUnsupportedMediaType, fmt.Sprintf("the body is in charset %s; this API reads JSON in UTF-8", cs),
			problem.Field("Content-Type", "expected charset utf-8 or none, got %s", cs))
	}
	r.Header.Set(echo.HeaderContentType, mt)
	return nil
}

func firstInvalid(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}

// etag is the ETag of a resource version.
func etag(v int64) string { return `"` + strconv.FormatInt(v, 10) + `"` }

// checkQuery answers 422 when a query parameter that takes one
// value is given more than once (?status=failed&status=succeeded): the
// router would use the first and drop the rest without a word. Parameters
// that take several (label) may repeat. So is a parameter the operation
// does not take: a misspelt filter (?queue=Default for ?queue_id=) would
// otherwise list everything, or a DELETE act without the condition meant.
func checkQuery(api huma.API) func(huma.Context, func(huma.Context)) {
	return func(ctx huma.Context, next func(huma.Context)) {
		u := ctx.URL()
		q := u.Query()
		var takes []string
		many := map[string]bool{}
		for _, p := range ctx.Operation().Parameters {
			if p.In == "query" {
				takes = append(takes, p.Name)
				many[p.Name] = p.Schema != nil && p.Schema.Type == "array"
			}
		}
		var errs []error
		for _, qp := range queryProblems(q, takes, many) {
			errs = append(errs, &huma.ErrorDetail{Location: "query." + qp.name, Value: q[qp.name], Message: qp.message})
		}
		if len(errs) > 0 {
			_ = huma.WriteErr(api, ctx, http.StatusUnprocessableEntity, "validation failed", errs...)
			return
		}
		next(ctx)
	}
}

// queryProblem is what is wrong with one query parameter.
type queryProblem struct{ name, message string }

// queryProblems says what is wrong with query q on a route that takes the
// parameters takes, of which those in many may repeat: one given more
// than once that takes one value (the first would be used and the rest
// dropped without a word), and one the route does not take (a misspelt
// filter), in the order of takes, then of the names.
func queryProblems(q url.Values, takes []string, many map[string]bool) []queryProblem {
	var out []queryProblem
	for _, name := range takes {
		if len(q[name]) > 1 && !many[name] {
			out = append(out, queryProblem{name, fmt.Sprintf("given %d times; it takes one value", len(q[name]))})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(q)) {
		if slices.Contains(takes, name) {
			continue
		}
		msg := "no such query parameter here; it takes none"
		if len(takes) > 0 {
			msg = "no such query parameter here; it takes " + strings.Join(takes, ", ")
		}
		out = append(out, queryProblem{name, msg})
	}
	return out
}

// decodeParams gives the handlers path parameters decoded whatever the
// client escaped. Echo matches the decoded path, but the raw one when it is
// not in Go's canonical escaping (RawPath set: "%2E%2E", "a%2Fb"), and its
// parameters are then still escaped: GET /jobs/%2E%2E looked up a job named
// "%2E%2E" and said so.
func decodeParams(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if c.Request().URL.RawPath != "" {
			vals := c.ParamValues()
			for i, v := range vals {
				if d, err := url.PathUnescape(v); err == nil {
					vals[i] = d
				}
			}
			c.SetParamValues(vals...)
		}
		return next(c)
	}
}
