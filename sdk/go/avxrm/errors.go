package avxrm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/avxrm/rm/sdk/go/avxrm/api"
)

// Sentinels an *Error matches with errors.Is, by status.
var (
	ErrBadRequest   = errors.New("bad request")         // 400, 422: the problem names the fields
	ErrUnauthorized = errors.New("unauthorized")        // 401: no or bad token
	ErrForbidden    = errors.New("forbidden")           // 403
	ErrNotFound     = errors.New("not found")           // 404
	ErrConflict     = errors.New("conflict")            // 409
	ErrPrecondition = errors.New("precondition failed") // 412: If-Match did not match
	ErrUnavailable  = errors.New("unavailable")         // 503
)

// Error is an answer of status 400 or above, with the RFC 9457 problem the
// server sent (or one made up from the status when the body was none), or
// an answer of any status that is not the API's (NotAPI).
type Error struct {
	StatusCode int
	Problem    api.Problem
	// Server is the root URL the request went to: its URL up to the API's
	// base path.
	Server string
	// ContentType is the answer's media type, such as
	// application/problem+json; empty when it named none.
	ContentType string

	notAPI bool
}

// NotAPI says whether the answer cannot be the Resource Manager API's: it
// is below 500, not JSON, and no problem could be read from it, such as
// another web server's HTML page (the client's server URL names the wrong
// server, or not its root). A proxy's page of status 500 or above still
// means the API is unavailable.
func (e *Error) NotAPI() bool { return e.notAPI }

// isJSON says whether a media type is JSON: application/json,
// application/problem+json and the like.
func isJSON(mediaType string) bool {
	return mediaType == "application/json" || strings.HasSuffix(mediaType, "+json")
}

// Error is one line: the problem's detail (or title) and its field errors.
func (e *Error) Error() string {
	if e.NotAPI() {
		what := e.ContentType
		if what == "" {
			what = "no Content-Type"
		} else if isJSON(what) {
			what += " that is not JSON"
		}
		return fmt.Sprintf("the server at %s answered %d with %s, not the Resource Manager's API", e.Server, e.StatusCode, what)
	}
	msg := e.Problem.Title
	if e.Problem.Detail != nil && *e.Problem.Detail != "" {
		msg = *e.Problem.Detail
	}
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	if errs, _ := e.Problem.Errors.Get(); len(errs) > 0 {
		var fields []string
		for _, f := range errs {
			if f.Field != "" && !strings.Contains(msg, f.Message) {
				fields = append(fields, f.Field+": "+f.Message)
			} else if !strings.Contains(msg, f.Message) {
				fields = append(fields, f.Message)
			}
		}
		if len(fields) > maxErrorFields { // the rest stay in FieldErrors
			fields = append(fields[:maxErrorFields], fmt.Sprintf("and %d more", len(fields)-maxErrorFields))
		}
		if len(fields) > 0 {
			msg += " (" + strings.Join(fields, "; ") + ")"
		}
	}
	return fmt.Sprintf("%d %s", e.StatusCode, msg)
}

// maxErrorFields bounds the field errors Error adds to the detail: a
// problem may name thousands (an array's jobs), and a message is one line.
const maxErrorFields = 3

// FieldErrors returns the problem's errors by field.
func (e *Error) FieldErrors() []api.FieldError {
	errs, _ := e.Problem.Errors.Get() // absent or null: none
	return errs
}

// statuses are the statuses each sentinel stands for.
var statuses = map[error][]int{
	ErrBadRequest:   {http.StatusBadRequest, http.StatusUnprocessableEntity},
	ErrUnauthorized: {http.StatusUnauthorized},
	ErrForbidden:    {http.StatusForbidden},
	ErrNotFound:     {http.StatusNotFound},
	ErrConflict:     {http.StatusConflict},
	ErrPrecondition: {http.StatusPreconditionFailed},
	ErrUnavailable:  {http.StatusServiceUnavailable},
}

// Is matches the sentinel of the status, unless the answer is not the
// API's: another server's 404 does not say that a job is not found.
func (e *Error) Is(target error) bool {
	return !e.NotAPI() && slices.Contains(statuses[target], e.StatusCode)
}

// ResponseError reads the RFC 9457 problem of a failed answer: of a
// request sent with Send, or with the client's API (the first MiB of its
// body). The answers of 400 and above that the generated client reads
// (c.API's …WithResponse methods) keep their body for it, so that it gives
// the *Error the package's own calls give; CheckResponse does the same
// with the body such a method returns.
func ResponseError(resp *http.Response) *Error {
	if b, ok := resp.Body.(*keptBody); ok {
		return problemError(resp, b.raw)
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return problemError(resp, raw)
}

// CheckResponse is the error of an answer of the generated client, its
// body read already (the HTTPResponse and Body of a c.API …WithResponse
// result): nil below 400; else the *Error the package's own calls give,
// with the RFC 9457 problem (Problem, FieldErrors; errors.Is matches the
// status's sentinel, such as ErrBadRequest for a 422).
func CheckResponse(resp *http.Response, body []byte) error {
	if resp.StatusCode < 400 {
		return nil
	}
	return problemError(resp, body)
}

// keptBody is an answer's body that the client has read already, and
// that may be read again by ResponseError once the generated client has
// read and closed it.
type keptBody struct {
	*bytes.Reader
	raw []byte
}

func (*keptBody) Close() error { return nil }

func keep(raw []byte) *keptBody { return &keptBody{Reader: bytes.NewReader(raw), raw: raw} }

// problemError reads the problem of a failed answer.
func problemError(resp *http.Response, body []byte) *Error {
	e := newError(resp)
	if json.Unmarshal(body, &e.Problem) != nil || e.Problem.Title == "" && e.Problem.Detail == nil {
		e.Problem = api.Problem{Status: int64(resp.StatusCode), Title: http.StatusText(resp.StatusCode)}
		e.notAPI = resp.StatusCode < 500 && e.ContentType != "" && !isJSON(e.ContentType)
		// A short text says what went wrong (a proxy's "upstream timed
		// out"); a web page does not fit on the line.
		if text := strings.TrimSpace(string(body)); text != "" && !strings.HasPrefix(e.ContentType, "text/html") {
			if len(text) > 200 {
				text = text[:200] + "…"
			}
			e.Problem.Detail = &text
		}
	}
	return e
}

// notJSON reads the body of an answer labelled JSON, or of status 400 or
// above: if it is labelled JSON and is not JSON, it returns the answer's
// error (NotAPI below 500: another server's page; else the status's
// *Error), which no decoder of the API's types should meet, as its error
// would name neither the server nor the status; or the error of reading
// it. Else it leaves the body to be read again (keptBody: by
// ResponseError too, once the generated client has read it).
func notJSON(resp *http.Response) error {
	e := newError(resp)
	if !isJSON(e.ContentType) && resp.StatusCode < 400 || resp.StatusCode == http.StatusNoContent ||
		resp.Request != nil && resp.Request.Method == http.MethodHead {
		return nil
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = keep(raw)
	if err != nil {
		return err
	}
	if !isJSON(e.ContentType) || json.Valid(raw) {
		return nil
	}
	if resp.StatusCode >= 500 {
		return problemError(resp, raw)
	}
	e.notAPI = true
	return e
}

// newError is the *Error of resp, without its problem.
func newError(resp *http.Response) *Error {
	e := &Error{StatusCode: resp.StatusCode}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		e.ContentType, _, _ = mime.ParseMediaType(ct)
		if e.ContentType == "" {
			e.ContentType = ct
		}
	}
	if resp.Request != nil && resp.Request.URL != nil {
		e.Server = ServerRoot(resp.Request.URL)
	}
	return e
}

// notAPIAnswer is the error of a successful answer, whose body did not
// decode as the API's, when it names a media type other than JSON (NotAPI);
// else nil.
func notAPIAnswer(resp *http.Response) error {
	e := newError(resp)
	if e.ContentType == "" || isJSON(e.ContentType) {
		return nil
	}
	e.notAPI = true
	return e
}

// ServerRoot is the root URL a request to u went to: u up to the API's
// base path, or without the root's own routes (/version, /.well-known/…),
// and without a user or query.
func ServerRoot(u *url.URL) string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path} // no user: the line may be shown
	if i := strings.Index(r.Path, BasePath); i >= 0 {
		r.Path = r.Path[:i]
	} else if i := strings.Index(r.Path, "/.well-known/"); i >= 0 {
		r.Path = r.Path[:i]
	} else {
		r.Path = strings.TrimSuffix(r.Path, "/version")
	}
	return strings.TrimSuffix(r.String(), "/")
}

// result turns a generated client's answer, which answer gives once err is
// nil, into its value or an *Error.
func result[T any](err error, answer func() (*http.Response, []byte, *T)) (*T, error) {
	if err != nil {
		return nil, err
	}
	resp, body, v := answer()
	if resp.StatusCode >= 400 {
		return nil, problemError(resp, body)
	}
	if v == nil {
		if err := notAPIAnswer(resp); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%s %s: unexpected answer %d", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode)
	}
	return v, nil
}

// Unreachable says whether err means the server cannot be reached for now:
// a connection refused, reset or cut, no answer within the client's
// timeouts, or a 502, 503 or 504 from the server or a proxy before it. A command that follows something (a log, an
// array's counts) may read again later; the SDK's own requests have tried
// a few times already.
func Unreachable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		switch e.StatusCode {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	if err == nil || errors.Is(err, context.Canceled) {
		return false // the caller ended it (a deadline of its own is its to check)
	}
	var ne net.Error
	return isConnError(err) || errors.As(err, &ne) && ne.Timeout() // no answer came in time
}
