package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/api/internal/auth"
	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/avxrm/rm/services/api/internal/store"
	"github.com/danielgtaylor/huma/v2"
	"github.com/labstack/echo/v4"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Authorization (API.md "Conventions"): one echo middleware checks every
// route before huma or a handler runs. What a route needs is derived from
// its method and path (ruleFor), so a route added anywhere is covered: a
// GET reads, a write is for rm-admin, except the job routes that rm-user
// may use on the jobs it owns. Queue access lists narrow what a caller may
// read and where it may submit; handlers apply those through
// readableJobsFilter, beforeSubmit and the event stream's eventFilter.

// JWKSPath publishes the public key of the API's job tokens.
const JWKSPath = "/.well-known/jwks.json"

// ProtectedResourcePath publishes, with auth on, which issuer's tokens the
// API takes (RFC 9728, OAuth 2.0 Protected Resource Metadata), so that a
// client given only the server finds where to log in ('avxrm login').
const ProtectedResourcePath = "/.well-known/oauth-protected-resource"

// ProtectedResource is the metadata served at ProtectedResourcePath.
type ProtectedResource struct {
	Resource             string   `json:"resource"`
	AuthorizationServers []string `json:"authorization_servers"`
	BearerMethods        []string `json:"bearer_methods_supported"`
	ResourceName         string   `json:"resource_name"`
}

// rule is what a route needs.
type rule struct {
	Open  bool       // no token needed: health, metrics, the docs page and the document
	Level auth.Level // the least role
	// Job: the path's :id is a job whose queue access (reads) or owner
	// (writes, for rm-user) is checked.
	Job bool
	// Owner: rm-user must own the job.
	Owner bool
	// Export: the path's :id is a scenario export, read as its job is.
	Export bool
	// JobToken: the job's RM_JOB_TOKEN is accepted (artifact uploads, log reads).
	JobToken bool
	// Self: any valid token, a job's too, even without a role (who am I).
	Self bool
}

// ruleFor is what the route method path (echo's spelling, :param) needs.
func ruleFor(method, path string) rule {
	rel, under := strings.CutPrefix(path, BasePath)
	if !under || strings.HasPrefix(rel, "/openapi") {
		return rule{Open: true}
	}
	jobItem := strings.HasPrefix(rel, "/jobs/:id")
	switch {
	case rel == whoamiPath:
		return rule{Self: true}
	case method == http.MethodGet || method == http.MethodHead:
		return rule{Level: auth.LevelViewer, Job: jobItem, JobToken: jobItem && strings.HasSuffix(rel, "/logs"),
			Export: strings.HasPrefix(rel, "/scenario-exports/:id")}
	case method == http.MethodPut && jobItem && strings.Contains(rel, "/artifacts/"):
		return rule{Level: auth.LevelAdmin, Job: true, JobToken: true}
	case method == http.MethodPost && (rel == "/jobs" || rel == "/job-arrays"):
		return rule{Level: auth.LevelUser} // the queue's access.submit: beforeSubmit
	case method == http.MethodPost && rel == "/job-arrays/:id/cancel":
		return rule{Level: auth.LevelUser} // its owner: cancelJobArray
	case jobItem:
		return rule{Level: auth.LevelUser, Job: true, Owner: true}
	case method == http.MethodDelete && rel == "/scenario-exports/:id":
		return rule{Level: auth.LevelUser, Export: true, Owner: true} // as its job's changes
	}
	return rule{Level: auth.LevelAdmin}
}

// RouteRule is one route with what it needs, for tests and documentation.
type RouteRule struct {
	Method, Path string // echo's path, :param
	rule
}

// Rules lists every route of the router with its rule.
func (s *Server) Rules() []RouteRule {
	var out []RouteRule
	for _, r := range s.Echo.Routes() {
		if r.Method == echo.RouteNotFound || r.Method == "echo_route_any" {
			continue
		}
		out = append(out, RouteRule{Method: r.Method, Path: r.Path, rule: ruleFor(r.Method, r.Path)})
	}
	return out
}

// authorize is the middleware: 401 without a valid token, 403 without the
// role, queue permission or ownership the route needs.
func (s *Server) authorize(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		a := s.opts.Auth
		if a == nil || !routed(c) {
			// No route of this method: the 404 or 405 says so, whoever asks.
			return next(c)
		}
		r := c.Request()
		ru := ruleFor(r.Method, c.Path())
		if ru.Open || r.Method == http.MethodOptions {
			return next(c)
		}
		ctx := r.Context()
		var p *auth.Principal
		var aerr *auth.Error
		if n := len(r.Header.Values(echo.HeaderAuthorization)); n > 1 {
			// A proxy in front may have read the other one.
			aerr = auth.Unauthorized("malformed request: %d Authorization headers; send one", n)
		} else {
			p, aerr = a.Authenticate(ctx, r.Header.Get(echo.HeaderAuthorization))
		}
		if aerr == nil {
			aerr = s.permit(ctx, c, ru, p)
		}
		if aerr != nil {
			if aerr.Status == http.StatusUnauthorized {
				c.Response().Header().Set(echo.HeaderWWWAuthenticate,
					fmt.Sprintf("%s, resource_metadata=%q", aerr.Challenge(), origin(c)+ProtectedResourcePath))
			}
			return problem.New(aerr.Status, aerr.Detail)
		}
		c.SetRequest(r.WithContext(auth.WithPrincipal(ctx, p)))
		return next(c)
	}
}

// routed reports whether the router found a route of the request's method
// for its path. Echo runs the middlewares for the others too, with the
// handler that answers 404 or 405 (and, for a 405, the path of the routes
// that take other methods).
func routed(c echo.Context) bool {
	if c.Path() == "" || c.Get(echo.ContextKeyHeaderAllow) != nil {
		return false
	}
	h := reflect.ValueOf(c.Handler()).Pointer()
	return h != reflect.ValueOf(echo.NotFoundHandler).Pointer() && h != reflect.ValueOf(echo.MethodNotAllowedHandler).Pointer()
}

// documentedPath is an echo route path as the documents write it:
// /jobs/{id} for /jobs/:id, and a trailing wildcard as {path}.
func documentedPath(p string) string {
	p = echoParam.ReplaceAllString(p, "{$1}")
	if rest, ok := strings.CutSuffix(p, "/*"); ok {
		p = rest + "/{path}"
	}
	return p
}

var echoParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

// jobAuthDoc is what authorization needs of a job.
type jobAuthDoc struct {
	QueueID string           `bson:"queue_id"`
	Status  string           `bson:"status"`
	Owner   *events.JobOwner `bson:"owner"`
}

// permit checks p against ru on the request c.
func (s *Server) permit(ctx context.Context, c echo.Context, ru rule, p *auth.Principal) *auth.Error {
	if p.JobID != "" {
		if !ru.Self && (!ru.JobToken || c.Param("id") != p.JobID) {
			return auth.Forbidden("a job token is valid only for its own job's artifact uploads and log reads, and for %s%s (job %s)", BasePath, whoamiPath, p.JobID)
		}
		j, err := s.jobAuth(ctx, p.JobID)
		if err != nil {
			return auth.Forbidden("job token: %v", err)
		}
		if j != nil && events.JobFinal(j.Status) {
			return &auth.Error{Status: http.StatusUnauthorized, Detail: fmt.Sprintf("job token: job %q is %s, its token ended with it", p.JobID, j.Status)}
		}
		return nil
	}
	if ru.Self {
		return nil
	}
	if p.Level < ru.Level {
		return auth.Forbidden("%s %s needs role %s; the token's roles are %q", c.Request().Method, documentedPath(c.Path()), p.RoleFor(ru.Level), p.Roles)
	}
	if !(ru.Job || ru.Export) || p.Level == auth.LevelAdmin {
		return nil
	}
	id := c.Param("id")
	if ru.Export {
		var err error
		if id, err = s.exportJob(ctx, id); err != nil || id == "" {
			return errorOrNil(err)
		}
	}
	j, err := s.jobAuth(ctx, id)
	if err != nil {
		return &auth.Error{Status: http.StatusServiceUnavailable, Detail: err.Error()}
	}
	if j == nil {
		return nil // the handler answers 404
	}
	if j.Owner != nil && j.Owner.Subject == p.Subject {
		return nil
	}
	// Whether the caller may read the job comes first: who owns a job is
	// told only to those who may read it.
	refusal, err := s.readRefusal(ctx, p, j.QueueID)
	if err != nil {
		return &auth.Error{Status: http.StatusServiceUnavailable, Detail: err.Error()}
	}
	if refusal != "" {
		return auth.Forbidden("%s", refusal)
	}
	if ru.Owner {
		who := "nobody (submitted while auth was off)"
		if j.Owner != nil {
			who = j.Owner.Username
		}
		return auth.Forbidden("job %q belongs to %s: only its owner or %s may change it", id, who, p.RoleFor(auth.LevelAdmin))
	}
	return nil
}

// jobAuth reads what authorization needs of job id; nil if there is none.
func (s *Server) jobAuth(ctx context.Context, id string) (*jobAuthDoc, error) {
	var d jobAuthDoc
	err := s.opts.Store.DB.Collection(store.Jobs).FindOne(ctx, bson.D{{Key: "_id", Value: id}, outbox.NotDeleted()},
		options.FindOne().SetProjection(bson.D{{Key: "queue_id", Value: 1}, {Key: "status", Value: 1}, {Key: "owner", Value: 1}})).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up job %s: %w", id, err)
	}
	return &d, nil
}

// exportJob is the job of scenario export id; "" if there is no such export.
func (s *Server) exportJob(ctx context.Context, id string) (string, error) {
	var d struct {
		JobID string `bson:"job_id"`
	}
	err := s.opts.Store.DB.Collection(store.Exports).FindOne(ctx, bson.D{{Key: "_id", Value: id}, outbox.NotDeleted()},
		options.FindOne().SetProjection(bson.D{{Key: "job_id", Value: 1}})).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look up scenario export %s: %w", id, err)
	}
	return d.JobID, nil
}

// errorOrNil is a 503 for a storage error, nil for none.
func errorOrNil(err error) *auth.Error {
	if err == nil {
		return nil
	}
	return &auth.Error{Status: http.StatusServiceUnavailable, Detail: err.Error()}
}

type queueAccessDoc struct {
	ID     string              `bson:"_id"`
	Name   string              `bson:"name"`
	Access *events.QueueAccess `bson:"access"`
}

// queueAccess reads the access lists of every queue.
func (s *Server) queueAccess(ctx context.Context) ([]queueAccessDoc, error) {
	cur, err := s.opts.Store.DB.Collection(store.Queues).Find(ctx, bson.D{outbox.NotDeleted()},
		options.Find().SetProjection(bson.D{{Key: "name", Value: 1}, {Key: "access", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("read queue access: %w", err)
	}
	var out []queueAccessDoc
	return out, cur.All(ctx, &out)
}

func mayRead(p *auth.Principal, a *events.QueueAccess) bool {
	if p.Level == auth.LevelAdmin {
		return true
	}
	if a == nil || a.Read == nil {
		return p.Level >= auth.LevelViewer
	}
	return p.Level >= auth.LevelViewer && p.Matches(a.Read)
}

// maySubmit reports whether p may submit to a queue with access lists a:
// its role (rm-user or rm-admin), then access.submit.
func maySubmit(p *auth.Principal, a *events.QueueAccess) bool {
	return p.Level >= auth.LevelUser && (a == nil || a.Submit == nil || p.Matches(a.Submit))
}

// readRefusalOf says why p may not read a job (or a job array) that owner
// owns on queue queueID, "" if it may: rm-admin and the owner may, others
// as the queue's access.read says (readRefusal). p is nil, or rm-admin,
// while auth is off.
func (s *Server) readRefusalOf(ctx context.Context, p *auth.Principal, owner *events.JobOwner, queueID string) (string, error) {
	if p == nil || p.Level == auth.LevelAdmin || (owner != nil && owner.Subject == p.Subject) {
		return "", nil
	}
	return s.readRefusal(ctx, p, queueID)
}

// readRefusal says why p may not read the jobs of queue queueID, "" if it
// may. A queue that is gone (its jobs outlive it) is read by every role.
func (s *Server) readRefusal(ctx context.Context, p *auth.Principal, queueID string) (string, error) {
	qs, err := s.queueAccess(ctx)
	if err != nil {
		return "", err
	}
	for _, q := range qs {
		if q.ID != queueID || mayRead(p, q.Access) {
			continue
		}
		if q.Access == nil || q.Access.Read == nil {
			return fmt.Sprintf("reading the jobs of queue %s needs role %s", q.Name, p.RoleFor(auth.LevelViewer)), nil
		}
		return accessRefusal(q, "read", q.Access.Read, p), nil
	}
	if p.Level < auth.LevelViewer {
		return fmt.Sprintf("reading jobs needs role %s", p.RoleFor(auth.LevelViewer)), nil
	}
	return "", nil
}

// accessRefusal is the detail of a 403 for a queue's access list (list,
// "read" or "submit") that does not name p, the queue named by its name
// (unique, and what a path takes) in both.
func accessRefusal(q queueAccessDoc, list string, entries []string, p *auth.Principal) string {
	who := p.Username
	if who == "" {
		who = p.Subject
	}
	return fmt.Sprintf("queue %s's access.%s %q does not name %s (nor a role or group of it)", q.Name, list, entries, who)
}

// readableQueues is the ids of the queues whose jobs p may read; nil means all.
func (s *Server) readableQueues(ctx context.Context, p *auth.Principal) (map[string]bool, error) {
	if s.opts.Auth == nil || p.Level == auth.LevelAdmin {
		return nil, nil
	}
	qs, err := s.queueAccess(ctx)
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, q := range qs {
		if mayRead(p, q.Access) {
			ids[q.ID] = true
		}
	}
	return ids, nil
}

// readableJobsFilter narrows a job query to what the caller may read: jobs
// of queues whose access.read names it, and its own.
func (s *Server) readableJobsFilter(ctx context.Context) (bson.D, error) {
	p := auth.From(ctx)
	ids, err := s.readableQueues(ctx, p)
	return readableFilter(ids, p.Subject), err
}

// readableFilter is the filter of the jobs of the queues ids (from
// readableQueues) and of the owner subject; none when ids is nil (the
// caller may read every job).
func readableFilter(ids map[string]bool, subject string) bson.D {
	if ids == nil {
		return nil
	}
	in := bson.A{}
	for id := range ids {
		in = append(in, id)
	}
	return bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "queue_id", Value: bson.D{{Key: "$in", Value: in}}}},
		bson.D{{Key: "owner.subject", Value: subject}},
	}}}
}

// beforeSubmit runs on every job about to be created: the caller must be
// named by its queue's access.submit; the job records its owner and gets its
// job token.
func (s *Server) beforeSubmit(ctx context.Context, j *events.Job) error {
	if s.opts.Auth == nil {
		return nil
	}
	p := auth.From(ctx)
	if p.Level < auth.LevelUser {
		return problem.New(http.StatusForbidden, fmt.Sprintf("submitting a job needs role %s", p.RoleFor(auth.LevelUser)))
	}
	qs, err := s.queueAccess(ctx)
	if err != nil {
		return err
	}
	for _, q := range qs {
		if q.ID == j.QueueID && !maySubmit(p, q.Access) {
			return problem.New(http.StatusForbidden, accessRefusal(q, "submit", q.Access.Submit, p))
		}
	}
	j.Owner = &events.JobOwner{Subject: p.Subject, Username: p.Username}
	if s.opts.JobTokens != nil {
		tok, err := s.opts.JobTokens.Mint(j.ID)
		if err != nil {
			return err
		}
		j.Runtime.JobToken = tok
	}
	return nil
}

// eventFilter decides, for one SSE client, which events it may receive.
type eventFilter struct {
	s *Server
	p *auth.Principal

	mu      sync.Mutex
	ids     map[string]bool // readable queues; nil until read
	fetched time.Time
	own     map[string]bool // whether the caller owns a job, by id, as learnt
}

// eventFilterTTL is how long a stream keeps the readable queues it computed.
const eventFilterTTL = 5 * time.Second

// eventFilterJobs bounds the jobs a stream remembers the owner of; past it
// the memory starts afresh.
const eventFilterJobs = 4096

func (s *Server) newEventFilter(ctx context.Context) *eventFilter {
	if s.opts.Auth == nil {
		return nil
	}
	return &eventFilter{s: s, p: auth.From(ctx), own: map[string]bool{}}
}

// allows reports whether the client may see e, which is about job (jobOf):
// events without a queue are for every role, and so are those of queues,
// deployments and app-runtime-configs, which every role reads whatever the
// queue's access.read; a job's or an export's need the queue readable, or
// the job the caller's own, as the REST reads of jobs and exports do.
func (f *eventFilter) allows(ctx context.Context, e events.Event, job string) bool {
	if f == nil || f.p.Level == auth.LevelAdmin || e.QueueID == "" || e.QueueID == events.NoQueue {
		return true
	}
	if k := e.Kind(); k != events.KindJob && k != events.KindExport {
		return f.p.Level >= auth.LevelViewer
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fetched.IsZero() || time.Since(f.fetched) > eventFilterTTL {
		ids, err := f.s.readableQueues(ctx, f.p)
		if err == nil {
			f.ids, f.fetched = ids, time.Now()
		}
	}
	// Until the readable queues could be read once, none is (ids nil).
	if f.ids[e.QueueID] {
		return true
	}
	switch e.Kind() {
	case events.KindJob:
		var j struct {
			Owner *events.JobOwner `json:"owner"`
		}
		mine := json.Unmarshal(e.Data, &j) == nil && j.Owner != nil && j.Owner.Subject == f.p.Subject
		f.learn(job, mine)
		return mine
	case events.KindExport:
		return job != "" && f.owns(ctx, job)
	}
	return false
}

// owns reports whether the caller owns job, reading its owner once per
// stream (an export's data names its job, not the job's owner). A job
// deleted meanwhile still has its owner until its tombstone goes.
func (f *eventFilter) owns(ctx context.Context, job string) bool {
	if mine, ok := f.own[job]; ok {
		return mine
	}
	var d struct {
		Owner *events.JobOwner `bson:"owner"`
	}
	err := f.s.opts.Store.DB.Collection(store.Jobs).FindOne(ctx, bson.D{{Key: "_id", Value: job}},
		options.FindOne().SetProjection(bson.D{{Key: "owner", Value: 1}})).Decode(&d)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return false // not remembered: asked again with the next event
	}
	mine := d.Owner != nil && d.Owner.Subject == f.p.Subject
	f.learn(job, mine)
	return mine
}

func (f *eventFilter) learn(job string, mine bool) {
	if job == "" {
		return
	}
	if len(f.own) >= eventFilterJobs {
		clear(f.own)
	}
	f.own[job] = mine
}

// authDescription is the document's section on auth.
const authDescription = `

## Authentication
While the server runs with auth on (RM_OIDC_ISSUER set), every operation needs
` + "`Authorization: Bearer <access token>`" + ` from the OIDC issuer. No token or a bad one
answers **401** with a ` + "`WWW-Authenticate: Bearer`" + ` challenge (with ` + "`error=\"invalid_token\"`" + ` for a
token that was sent) and a problem saying which check failed; a token without the role, queue permission or job ownership
the operation needs answers **403** naming it.

Roles: **rm-admin** does everything; **rm-user** reads everything (plugin secrets
masked), submits to queues whose access.submit allows it, and cancels, cleans up,
deletes, exports and starts post controllers of the jobs it owns; **rm-viewer**
reads. Job lists and the event stream hold only the jobs of queues whose
access.read names the caller, and the caller's own.

Getting a token (Keycloak's password grant; ` + "`avxrm up --dev-idp`" + ` serves the same
endpoint locally and prints its users' passwords):

    curl -s -d grant_type=password -d client_id=avxrm -d scope=offline_access \
         -d username=<user> -d password=<password> \
         <issuer>/protocol/openid-connect/token

Click **Authorize**, paste the answer's access_token (without "Bearer ") into
"bearer", or use the password flow with client_id avxrm. The refresh_token gets a
new access token (grant_type=refresh_token) before the access token expires.
Job instances get RM_JOB_TOKEN, valid for their own job's artifact uploads and log
reads while the job is not final.`

// documentAuth adds the 401 and 403 answers to an operation.
func documentAuth(op *huma.Operation, content map[string]*huma.MediaType) {
	for code, desc := range map[string]string{
		"401": "No valid bearer token (auth on): the problem and WWW-Authenticate say which check failed",
		"403": "The token lacks the role, queue permission or job ownership this operation needs: the problem names it",
	} {
		if _, ok := op.Responses[code]; !ok {
			op.Responses[code] = &huma.Response{Description: desc, Content: content}
		}
	}
}

// registerAuth serves the job tokens' key set and, with auth on, offers
// the issuer's password flow in the document (Swagger UI's Authorize).
func (s *Server) registerAuth() {
	if a := s.opts.Auth; a != nil && a.TokenURL() != "" {
		oapi := s.API.OpenAPI()
		oapi.Components.SecuritySchemes["password"] = &huma.SecurityScheme{
			Type: "oauth2", Description: "The issuer's password grant (client_id avxrm, no secret)",
			Flows: &huma.OAuthFlows{Password: &huma.OAuthFlow{TokenURL: a.TokenURL(), Scopes: map[string]string{}}},
		}
		oapi.Security = append(oapi.Security, map[string][]string{"password": {}})
	}
	s.Echo.GET(ProtectedResourcePath, func(c echo.Context) error {
		a := s.opts.Auth
		if a == nil {
			return problem.New(http.StatusNotFound, "auth is off: this server takes requests without a token")
		}
		return c.JSON(http.StatusOK, ProtectedResource{
			Resource: origin(c) + BasePath, AuthorizationServers: []string{a.Config().Issuer},
			BearerMethods: []string{"header"}, ResourceName: "avxrm Resource Manager",
		})
	})
	s.Echo.GET(JWKSPath, func(c echo.Context) error {
		if s.opts.JobTokens == nil {
			return c.JSON(http.StatusOK, map[string]any{"keys": []any{}})
		}
		return c.JSON(http.StatusOK, s.opts.JobTokens.JWKS())
	})
}

// origin is the scheme and host the request was sent to (X-Forwarded-Proto
// counts, behind a proxy that ends TLS).
func origin(c echo.Context) string { return c.Scheme() + "://" + c.Request().Host }

// validateAccess checks a queue's access lists.
func validateAccess(field string, a *events.QueueAccess) []*problem.FieldError {
	if a == nil {
		return nil
	}
	var errs []*problem.FieldError
	for name, list := range map[string][]string{"submit": a.Submit, "read": a.Read} {
		for i, e := range list {
			if msg := auth.ValidEntry(e); msg != "" {
				errs = append(errs, problem.Field(fmt.Sprintf("%s.%s[%d]", field, name, i), "%s", msg))
			}
		}
	}
	return errs
}
