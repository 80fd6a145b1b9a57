package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/avxrm/rm/services/api/internal/store"
	"github.com/danielgtaylor/huma/v2"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// The conventions every resource kind shares (API.md "Conventions"): ids and
// meta, ETag and If-Match, full replace, JSON merge patch validated like a
// replace, delete refused while in use, cursor lists. Each kind supplies what
// differs as functions of a crud; its operations are one-line closures over it.

// IfMatchParam is the conditional-request header of PUT, PATCH and DELETE.
type IfMatchParam struct {
	IfMatch string `header:"If-Match" maxLength:"256" doc:"the ETag (\"<version>\") the change applies to; a different current version answers 412"`
}

// idempotencyParam names the Idempotency-Key header in the inputs of
// creating POSTs. The idempotency middleware acts on the header before huma
// runs, and the OpenAPI hook documentConventions documents it, so huma need
// not (and, the field being unexported, does not) parse it.
type idempotencyParam struct {
	IdempotencyKey string `header:"Idempotency-Key" maxLength:"255"`
}

// ListParams are the paging parameters of every list.
type ListParams struct {
	Limit  int    `query:"limit" minimum:"1" maximum:"1000" default:"50" doc:"page size"`
	Cursor string `query:"cursor" maxLength:"64" pattern:"^[A-Za-z0-9-]*$" doc:"next_cursor of the previous page"`
}

// MergePatchBody is the body of every PATCH: an RFC 7396 JSON merge patch of
// the resource's writable fields (null deletes a field).
type MergePatchBody struct {
	ContentType string `header:"Content-Type" hidden:"true"`
	RawBody     []byte `contentType:"application/merge-patch+json"`
}

// ListBody is one page of a list.
type ListBody[O any] struct {
	Items      []O    `json:"items" nullable:"false"`
	NextCursor string `json:"next_cursor,omitempty" doc:"absent on the last page"`
}

type listOutput[O any] struct {
	Body ListBody[O]
}

type resourceOutput[O any] struct {
	Location string `header:"Location" doc:"on create: the new resource's URL"`
	ETag     string `header:"ETag" doc:"\"<version>\"; send it back in If-Match"`
	Body     O
}

// crud is the shared implementation of a kind's operations: T is what is
// stored, B what clients write (POST, PUT, and the base of merge patches), O
// what they read (and what events carry).
type crud[T store.Resource, B any, O any] struct {
	s        *Server
	store    store.Kind[T]
	kind     string // events.Kind*
	location func(r T) string
	// lookup resolves a reference from a path; nil: store.Kind.Get (id or name).
	lookup func(ctx context.Context, ref string) (store.Loaded[T], error)
	// build validates b and returns the resource it describes; prev is nil on
	// create, else the stored resource whose read-only fields carry over.
	// Meta is set by crud.
	build func(ctx context.Context, b *B, prev T) (T, error)
	// writable is the client's view of r as a B: what a PUT would send to
	// leave r as it is. Merge patches apply to it.
	writable func(r T) *B
	// present returns r as the API shows it (and as events carry it).
	present func(ctx context.Context, r T) (O, error)
	// eventData, if set, is what r's events carry instead of present's
	// answer (a deployment's: without its per-replica list).
	eventData func(out O) any
	// queueOf is the queue token of r's event subjects.
	queueOf func(r T) string
	// named says what a duplicate of r would be called: "a queue named
	// Default"; nil: "a <kind> with that name".
	named func(r T) string
	// pathNamed marks a kind its path names, not a field of its body (an
	// app-runtime-config): a duplicate's refusal names no field and says
	// where to change the one that exists.
	pathNamed bool
	// name returns r's name; nil: the kind has none. A name may look like an
	// id (API.md) but not have an id's exact form, which the id would hide.
	name func(r T) string
	// inUse refuses a delete (409 saying by what); nil: never in use.
	inUse func(ctx context.Context, r T) error
	// afterWrite runs after r was stored (created or replaced); nil: nothing.
	afterWrite func(ctx context.Context, r T) error
}

func (c *crud[T, B, O]) get(ctx context.Context, ref string) (store.Loaded[T], error) {
	if c.lookup != nil {
		return c.lookup(ctx, ref)
	}
	return c.store.Get(ctx, ref)
}

// event returns the event announcing action on r, with r as the API shows it.
func (c *crud[T, B, O]) event(ctx context.Context, action string, r T) (events.Event, O, error) {
	out, err := c.present(ctx, r)
	if err != nil {
		return events.Event{}, out, err
	}
	q := c.queueOf(r)
	if q == "" {
		q = events.NoQueue
	}
	var data any = out
	if c.eventData != nil {
		data = c.eventData(out)
	}
	ev, err := events.New(events.Type(c.kind, action), c.s.opts.Source, q, r.GetMeta().ID, data)
	return ev, out, err
}

func (c *crud[T, B, O]) output(r T, out O, created bool) *resourceOutput[O] {
	o := &resourceOutput[O]{ETag: etag(r.GetMeta().Version), Body: out}
	if created {
		o.Location = c.location(r)
	}
	return o
}

// create stores a new resource built from b; init, if not nil, sets what
// the request says besides the body (such as references from the path).
func (c *crud[T, B, O]) create(ctx context.Context, b *B, init func(T)) (*resourceOutput[O], error) {
	var none T
	r, err := c.build(ctx, b, none)
	if err != nil {
		return nil, err
	}
	if err := c.checkName(r, nil); err != nil {
		return nil, err
	}
	if init != nil {
		init(r)
	}
	now := c.s.now()
	m := r.GetMeta()
	m.ID, m.CreatedAt, m.UpdatedAt, m.Version = newID(ctx, c.store.IDPrefix), now, now, 1
	return createOnce(ctx, func() (*resourceOutput[O], error) {
		ev, out, err := c.event(ctx, "created", r)
		if err != nil {
			return nil, err
		}
		if err := c.store.Insert(ctx, r, ev); err != nil {
			return nil, c.duplicate(r, err)
		}
		if c.afterWrite != nil {
			if err := c.afterWrite(ctx, r); err != nil {
				return nil, err
			}
		}
		return c.output(r, out, true), nil
	}, func() (*resourceOutput[O], error) { return c.created(ctx, m.ID) })
}

// checkName refuses a new name of r (prev is nil on create) that has the
// exact form of an id of its kind: a lookup takes a segment as an id first,
// so a queue named like another queue's id could never be found by its name,
// and one named like an id handed out later would vanish behind it. A name
// that merely starts like an id (q-sim) stays allowed.
func (c *crud[T, B, O]) checkName(r T, prev *T) error {
	if c.name == nil {
		return nil
	}
	n := c.name(r)
	if !isIDOf(n, c.store.IDPrefix) || (prev != nil && c.name(*prev) == n) {
		return nil
	}
	return problem.Invalid(problem.Field("name", "%s has the form of a %s id (%s- and 26 letters and digits), which the server hands out; choose another name",
		n, c.store.Name, c.store.IDPrefix))
}

// created answers a retried create with resource id as stored.
func (c *crud[T, B, O]) created(ctx context.Context, id string) (*resourceOutput[O], error) {
	l, err := c.store.FindOne(ctx, bson.D{{Key: "_id", Value: id}}, id)
	if err != nil {
		return nil, err
	}
	out, err := c.present(ctx, l.Res)
	if err != nil {
		return nil, err
	}
	return c.output(l.Res, out, true), nil
}

// duplicate words a unique index refusing r as a 409 saying what exists
// already: "a queue named Default already exists".
func (c *crud[T, B, O]) duplicate(r T, err error) error {
	if !errors.Is(err, problem.ErrConflict) || c.named == nil {
		return err
	}
	what := c.named(r)
	if c.pathNamed {
		return problem.New(http.StatusConflict, fmt.Sprintf("%s already exists; change it with PUT or PATCH at %s", what, c.location(r)))
	}
	return problem.New(http.StatusConflict, what+" already exists", problem.Field("name", "%s already exists", what))
}

func (c *crud[T, B, O]) read(ctx context.Context, ref string) (*resourceOutput[O], error) {
	l, err := c.get(ctx, ref)
	if err != nil {
		return nil, err
	}
	out, err := c.present(ctx, l.Res)
	if err != nil {
		return nil, err
	}
	return c.output(l.Res, out, false), nil
}

func (c *crud[T, B, O]) replace(ctx context.Context, ref, ifMatch string, b *B) (*resourceOutput[O], error) {
	return retryRaced(ifMatch, func() (*resourceOutput[O], error) {
		prev, err := c.getIfMatch(ctx, ref, ifMatch)
		if err != nil {
			return nil, err
		}
		return c.store1(ctx, prev, b)
	})
}

// getIfMatch reads the resource ref and checks the client's If-Match
// against its version.
func (c *crud[T, B, O]) getIfMatch(ctx context.Context, ref, ifMatch string) (store.Loaded[T], error) {
	prev, err := c.get(ctx, ref)
	if err != nil {
		return prev, err
	}
	return prev, checkIfMatch(ifMatch, prev.Res.GetMeta().Version)
}

// raceAttempts bounds how often a change the client did not condition on a
// version (no If-Match, or "*") is read and tried again after another
// writer changed the resource between the read and the write (the launcher
// writes a deployment's status at any time).
const raceAttempts = 20

// raced is the store refusing a write because the resource changed after
// it was read; retryRaced tries the change again. It is a 412 (it wraps
// problem.ErrPreconditionFailed) wherever it is not retried.
type raced struct{ error }

func (r raced) Unwrap() error { return r.error }

// retryRaced runs attempt (read the resource, check, write at the version
// read) until no concurrent change refuses its write, at most raceAttempts
// times. With an If-Match that names versions the client asked for the
// change at the version it read: a concurrent change is its 412, not
// retried. The error returned is never a raced, so that an enclosing
// retryRaced does not take a failure of a nested write for its own.
func retryRaced[R any](ifMatch string, attempt func() (R, error)) (R, error) {
	retry := strings.TrimSpace(ifMatch) == "" || strings.TrimSpace(ifMatch) == "*"
	for i := 1; ; i++ {
		r, err := attempt()
		var rc raced
		if !errors.As(err, &rc) {
			return r, err
		}
		if !retry || i >= raceAttempts {
			return r, rc.error
		}
		// A moment, varied, so that a writer at a steady pace does not
		// meet every try at the same point (at most 0.2 s in all).
		time.Sleep(rand.N(time.Duration(i) * time.Millisecond))
	}
}

// beforeWrite runs the Server's test hook, if any, between the read of a
// resource and its conditional write, where another writer may change it.
func (c *crud[T, B, O]) beforeWrite(ctx context.Context, id string) {
	if h := c.s.beforeWrite; h != nil {
		h(ctx, c.store.Coll, id)
	}
}

// store1 stores b over prev; a concurrent change since prev was read is a
// raced error.
func (c *crud[T, B, O]) store1(ctx context.Context, prev store.Loaded[T], b *B) (*resourceOutput[O], error) {
	r, err := c.build(ctx, b, prev.Res)
	if err != nil {
		return nil, err
	}
	if err := c.checkName(r, &prev.Res); err != nil {
		return nil, err
	}
	pm, m := prev.Res.GetMeta(), r.GetMeta()
	m.ID, m.CreatedAt, m.UpdatedAt, m.Version = pm.ID, pm.CreatedAt, c.s.now(), pm.Version+1
	ev, out, err := c.event(ctx, "updated", r)
	if err != nil {
		return nil, err
	}
	c.beforeWrite(ctx, m.ID)
	if err := c.store.Replace(ctx, prev, r, ev); err != nil {
		if errors.Is(err, problem.ErrPreconditionFailed) {
			return nil, raced{err}
		}
		return nil, c.duplicate(r, err)
	}
	if c.afterWrite != nil {
		if err := c.afterWrite(ctx, r); err != nil {
			return nil, err
		}
	}
	return c.output(r, out, false), nil
}

// patch applies an RFC 7396 merge patch to the writable view of the resource
// and stores the result as a replace would, after the same validation: the
// request schema of B (through huma, so messages and field names match a PUT)
// and then build.
func (c *crud[T, B, O]) patch(ctx context.Context, ref, ifMatch string, body MergePatchBody) (*resourceOutput[O], error) {
	// application/merge-patch+json, or plain JSON, which clients send by habit.
	// A JSON Patch (RFC 6902) is JSON too, but another language: taken as a
	// merge patch it would do something else than its sender meant.
	if ct := body.ContentType; ct != "" && (!strings.Contains(ct, "json") || ct == "application/json-patch+json") {
		return nil, problem.New(http.StatusUnsupportedMediaType, fmt.Sprintf("the body is %s; a PATCH takes application/merge-patch+json (or application/json)", ct),
			problem.Field("Content-Type", "expected application/merge-patch+json, got %s", ct))
	}
	patch, err := decodePatch(body.RawBody)
	if err != nil {
		return nil, err
	}
	// Each attempt applies the patch to the resource as it is then: a merge
	// patch says what to change, not what the whole resource becomes.
	return retryRaced(ifMatch, func() (*resourceOutput[O], error) {
		prev, err := c.getIfMatch(ctx, ref, ifMatch)
		if err != nil {
			return nil, err
		}
		base, err := toJSONValue(c.writable(prev.Res))
		if err != nil {
			return nil, fmt.Errorf("patch %s %s: %w", c.kind, ref, err)
		}
		merged := mergePatch(base, patch) // changes base, not patch
		b, err := decodeValidated[B, O](c.s.API, merged)
		if err != nil {
			return nil, err
		}
		return c.store1(ctx, prev, b)
	})
}

func (c *crud[T, B, O]) remove(ctx context.Context, ref, ifMatch string) error {
	_, err := retryRaced(ifMatch, func() (struct{}, error) {
		prev, err := c.getIfMatch(ctx, ref, ifMatch)
		if err != nil {
			return struct{}{}, err
		}
		if c.inUse != nil {
			if err := c.inUse(ctx, prev.Res); err != nil {
				return struct{}{}, err
			}
		}
		// The deleted event carries the resource at the version the delete gives it.
		m := prev.Res.GetMeta()
		gone := *m
		m.Version, m.UpdatedAt = m.Version+1, c.s.now()
		ev, _, err := c.event(ctx, "deleted", prev.Res)
		*m = gone
		if err != nil {
			return struct{}{}, err
		}
		c.beforeWrite(ctx, gone.ID)
		if err := c.store.Delete(ctx, prev, ev); err != nil {
			if errors.Is(err, problem.ErrPreconditionFailed) {
				return struct{}{}, raced{err}
			}
			return struct{}{}, err
		}
		return struct{}{}, nil
	})
	return err
}

func (c *crud[T, B, O]) list(ctx context.Context, filter bson.D, p ListParams) (*listOutput[O], error) {
	if err := checkCursor(p.Cursor, c.store.IDPrefix); err != nil {
		return nil, err
	}
	limit := p.Limit
	if limit == 0 {
		limit = 50
	}
	rs, more, err := c.store.List(ctx, filter, p.Cursor, limit)
	if err != nil {
		return nil, err
	}
	out := &listOutput[O]{Body: ListBody[O]{Items: make([]O, 0, len(rs))}}
	for _, r := range rs {
		o, err := c.present(ctx, r)
		if err != nil {
			return nil, err
		}
		out.Body.Items = append(out.Body.Items, o)
	}
	if more && len(rs) > 0 {
		out.Body.NextCursor = rs[len(rs)-1].GetMeta().ID
	}
	return out, nil
}

// checkCursor answers 400 naming cursor unless cursor is empty or one that a
// list of this kind hands out (the id of a resource with prefix), so that a
// client does not silently restart paging from the first page.
func checkCursor(cursor, prefix string) error {
	if cursor == "" {
		return nil
	}
	if isIDOf(cursor, prefix) {
		return nil
	}
	return problem.New(http.StatusBadRequest, fmt.Sprintf("cursor %q is not a next_cursor of this list", cursor),
		problem.Field("cursor", "not a next_cursor of this list; start again without cursor"))
}

// isIDOf says whether s has the form of an id with prefix (events.NewID).
func isIDOf(s, prefix string) bool {
	rest, ok := strings.CutPrefix(s, prefix+"-")
	return ok && len(rest) == 26 && strings.Trim(rest, crockford) == ""
}

// crockford is the alphabet of the ids (events.NewID).
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// checkIfMatch answers 412 unless the If-Match header (absent, "*", or a list
// of entity tags, strong or weak) names version.
func checkIfMatch(header string, version int64) error {
	header = strings.TrimSpace(header)
	if header == "" || header == "*" {
		return nil
	}
	want := strconv.FormatInt(version, 10)
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if strings.Trim(t, `"`) == want {
			return nil
		}
	}
	return fmt.Errorf("If-Match %s does not match the current version %s: %w", header, etag(version), problem.ErrPreconditionFailed)
}

// decodePatch parses a merge patch; it must be a JSON object, as a patch of
// anything else would replace the whole resource.
func decodePatch(raw []byte) (map[string]any, error) {
	if !utf8.Valid(raw) {
		return nil, problem.New(http.StatusBadRequest, "request body is not valid UTF-8", problem.Field("", "invalid UTF-8 at byte %d", firstInvalid(raw)))
	}
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	if err := d.Decode(&v); err != nil {
		msg := err.Error()
		var se *json.SyntaxError
		if errors.As(err, &se) {
			msg = describeSyntaxError(raw, se)
		} else if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			msg = fmt.Sprintf("not valid JSON: the body ends at byte %d before the JSON value is complete", len(raw))
		}
		return nil, problem.New(http.StatusBadRequest, "bad request body: "+msg, problem.Field("", "%s", msg))
	}
	if d.More() {
		return nil, problem.New(http.StatusBadRequest, "the merge patch has data after the JSON value", problem.Field("", "trailing data"))
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, problem.Invalid(problem.Field("", "a merge patch of a resource is a JSON object"))
	}
	return m, nil
}

// mergePatch applies patch to target as RFC 7396 says: objects merge
// recursively, null removes a member, anything else replaces.
func mergePatch(target any, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = mergePatch(t[k], v)
	}
	return t
}

func toJSONValue(v any) (any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	return out, json.Unmarshal(raw, &out)
}

// decodeValidated validates v (a decoded JSON value) against the request
// schema of B, as huma validates a request body, and decodes it into a B;
// a field it refuses that the answer O has is named read-only.
func decodeValidated[B, O any](api huma.API, v any) (*B, error) {
	reg := api.OpenAPI().Components.Schemas
	schema := reg.Schema(reflect.TypeFor[B](), true, "")
	pb := huma.NewPathBuffer(make([]byte, 0, 128), 0)
	pb.Push("body")
	res := &huma.ValidateResult{}
	huma.Validate(reg, schema, pb, huma.ModeWriteToServer, v, res)
	if len(res.Errors) > 0 {
		// A field of the answer O that B does not take is the server's.
		readOnly := map[string]bool{}
		notTaken(readOnly, properties(reg, reg.Schema(reflect.TypeFor[O](), true, "")), properties(reg, schema))
		markReadOnly(res.Errors, readOnly)
		return nil, huma.NewError(http.StatusUnprocessableEntity, "validation failed", res.Errors...)
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("re-encode patched resource: %w", err)
	}
	var b B
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(&b); err != nil {
		return nil, problem.Invalid(problem.Field("", "%v", err))
	}
	return &b, nil
}

// isNotFound reports whether err is a not-found from the store.
func isNotFound(err error) bool { return errors.Is(err, problem.ErrNotFound) }

// Remedies for a refused delete (inUseBy): what to do with the users.
const (
	deleteThem = "delete those first"
	endThem    = "those must end first: cancel them, or wait until they have ended"
	replugThem = "give those queues another plugin_id, or delete them, first"
)

// inUseBy answers a refused delete: 409 naming what still uses the
// resource, and then what to do about them.
func (s *Server) inUseBy(ctx context.Context, what string, coll string, filter bson.D, noun, then string) error {
	return s.inUseByRef(ctx, what, coll, filter, func(_ context.Context, id string) string { return noun + " " + id }, then)
}

// inUseByRef is inUseBy with the first user named by ref, for users a
// client reaches by more than their id.
func (s *Server) inUseByRef(ctx context.Context, what string, coll string, filter bson.D, ref func(ctx context.Context, id string) string, then string) error {
	id, n, err := s.opts.Store.FirstRef(ctx, coll, filter, 1000)
	if err != nil {
		return fmt.Errorf("check whether %s is in use: %w", what, err)
	}
	if n == 0 {
		return nil
	}
	more := ""
	if n > 1 {
		more = fmt.Sprintf(" and %d more", n-1)
		if n == 1000 {
			more = " and more"
		}
	}
	return fmt.Errorf("%s is in use by %s%s; %s: %w", what, ref(ctx, id), more, then, problem.ErrConflict)
}

// now is the time stored in a change, at the precision MongoDB keeps.
func (s *Server) now() time.Time { return s.opts.Now().UTC().Truncate(timePrecision) }
