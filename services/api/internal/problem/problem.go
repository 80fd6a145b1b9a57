// Package problem is the API's one error shape: RFC 9457 problem details with
// the offending fields named, and the one mapping from domain errors to HTTP
// status codes. It owns the replacement of huma's default error constructor.
package problem

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/avxrm/rm/pkg/events/backoff"
	"github.com/danielgtaylor/huma/v2"
)

// Sentinel errors of the domain; handlers wrap them with details.
var (
	ErrNotFound           = errors.New("not found")
	ErrConflict           = errors.New("conflict")
	ErrPreconditionFailed = errors.New("precondition failed")
	ErrInvalid            = errors.New("invalid")
)

// FieldError names one offending field of a request.
type FieldError struct {
	Field   string `json:"field" doc:"the field, as a dotted path into the request body, or the query or path parameter"`
	Message string `json:"message"`
}

// Error implements error so FieldErrors can travel as errors.
func (f *FieldError) Error() string {
	if f.Field == "" {
		return f.Message
	}
	return f.Field + ": " + f.Message
}

// Field returns a field error.
func Field(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Problem is an RFC 9457 problem details object.
type Problem struct {
	Type     string        `json:"type" doc:"a URI naming the kind of problem"`
	Title    string        `json:"title"`
	Status   int           `json:"status"`
	Detail   string        `json:"detail,omitempty"`
	Instance string        `json:"instance,omitempty"`
	Errors   []*FieldError `json:"errors,omitempty"`

	// cause is the error a 5xx stands for, which the client is not shown.
	cause error
}

// Cause is the error behind a 5xx problem that Install made of a handler's
// error, for the request's log line; nil for any other problem.
func (p *Problem) Cause() error { return p.cause }

func (p *Problem) Error() string {
	if p.Detail != "" {
		return p.Detail
	}
	return p.Title
}

// GetStatus implements huma.StatusError.
func (p *Problem) GetStatus() int { return p.Status }

// ContentType implements huma.ContentTypeFilter: problems are problem+json.
func (p *Problem) ContentType(string) string { return "application/problem+json" }

// New returns a problem of the given status with a detail and field errors.
func New(status int, detail string, fields ...*FieldError) *Problem {
	return &Problem{
		Type:   "https://avxrm.dev/problems/" + strings.ReplaceAll(strings.ToLower(http.StatusText(status)), " ", "-"),
		Title:  http.StatusText(status),
		Status: status,
		Detail: detail,
		Errors: fields,
	}
}

// Invalid is a 422 naming the fields.
func Invalid(fields ...*FieldError) *Problem {
	msgs := make([]string, 0, min(len(fields), detailFields))
	for _, f := range fields[:min(len(fields), detailFields)] {
		msgs = append(msgs, f.Error())
	}
	detail := "validation failed: " + strings.Join(msgs, "; ")
	if more := len(fields) - len(msgs); more > 0 {
		detail += fmt.Sprintf("; and %d more (errors lists them all)", more)
	}
	return New(http.StatusUnprocessableEntity, detail, fields...)
}

// detailFields is how many field errors a 422's detail spells out; errors
// lists every one. A list of 10,000 unknown samples made a 2 MB detail.
const detailFields = 10

// fieldOf turns huma's error location ("body.name", "query.limit",
// "path.queue_id", "header.If-Match") into the field name users see.
func fieldOf(location string) string {
	for _, p := range []string{"body.", "query.", "path.", "header."} {
		if rest, ok := strings.CutPrefix(location, p); ok {
			return rest
		}
	}
	if location == "body" {
		return ""
	}
	return location
}

// PatternWords say in words what a pattern of the API's schemas accepts:
// a value that does not match gets "expected <words>" instead of the
// regular expression.
var PatternWords = map[string]string{}

// humanMessage rewords huma's validation messages that quote a schema.
func humanMessage(msg string) string {
	if p, ok := strings.CutPrefix(msg, "expected string to match pattern "); ok {
		if w := PatternWords[p]; w != "" {
			return "expected " + w
		}
	}
	if strings.HasPrefix(msg, "expected number") {
		// huma prints a bound as %v of a float64: "expected number <= 1e+06".
		msg = eNotation.ReplaceAllStringFunc(msg, func(n string) string {
			f, err := strconv.ParseFloat(n, 64)
			if err != nil {
				return n
			}
			return strconv.FormatFloat(f, 'f', -1, 64)
		})
	}
	return msg
}

var eNotation = regexp.MustCompile(`-?[0-9]+(\.[0-9]+)?e[+-][0-9]+`)

// Install replaces huma's error constructor so every error huma produces
// (validation, bad JSON, body too large) is a Problem naming the fields, and a
// handler's domain error gets the status of the sentinel it wraps. A 5xx
// keeps the handler's error as its Cause: huma calls this without the
// request, so the request's log line (package httpapi) logs it.
func Install() {
	huma.NewError = func(status int, msg string, errs ...error) huma.StatusError {
		if status == http.StatusInternalServerError && len(errs) == 1 {
			p := From(errs[0])
			if p.Status >= 500 {
				with := *p // a copy: From may return a shared problem
				with.cause = errs[0]
				return &with
			}
			return p
		}
		var fields []*FieldError
		cursorOnly := len(errs) > 0 // API.md: a malformed cursor is a 400
		for _, err := range errs {
			if err == nil {
				continue
			}
			var d *huma.ErrorDetail
			var f *FieldError
			cursorOnly = cursorOnly && errors.As(err, &d) && d.Location == "query.cursor"
			switch {
			case errors.As(err, &f):
				fields = append(fields, f)
			case errors.As(err, &d):
				fields = append(fields, &FieldError{Field: fieldOf(d.Location), Message: humanMessage(d.Message)})
			default:
				fields = append(fields, &FieldError{Message: err.Error()})
			}
		}
		switch {
		case status == http.StatusUnsupportedMediaType:
			// huma: "unknown content type: text/plain"
			got := "this content type"
			for _, f := range fields {
				if rest, ok := strings.CutPrefix(f.Message, huma.ErrUnknownContentType.Error()+": "); ok {
					got = rest
				}
			}
			return New(status, fmt.Sprintf("the body is %s; this endpoint takes application/json", got),
				&FieldError{Field: "Content-Type", Message: "expected application/json, got " + got})
		case status == http.StatusBadRequest && msg == "validation failed":
			msg = "bad request body"
		case status == http.StatusUnprocessableEntity && cursorOnly:
			status, msg = http.StatusBadRequest, "malformed cursor"
			for _, f := range fields {
				f.Message += "; pass a next_cursor of this list, or none"
			}
		}
		if (msg == "validation failed" || msg == "bad request body") && len(fields) > 0 {
			msgs := make([]string, len(fields))
			for i, f := range fields {
				msgs[i] = f.Error()
			}
			msg += ": " + strings.Join(msgs, "; ")
		}
		return New(status, msg, fields...)
	}
}

// From maps a domain error to a problem: the status from the sentinel it
// wraps, 500 for anything else (whose text is not shown to the client).
func From(err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	var f *FieldError
	switch {
	case errors.As(err, &f):
		return Invalid(f)
	case errors.Is(err, ErrNotFound):
		if what, ok := strings.CutSuffix(err.Error(), ": "+ErrNotFound.Error()); ok {
			return New(http.StatusNotFound, what+" not found")
		}
		return New(http.StatusNotFound, err.Error())
	case errors.Is(err, ErrConflict):
		return New(http.StatusConflict, sentence(err, ErrConflict))
	case errors.Is(err, ErrPreconditionFailed):
		return New(http.StatusPreconditionFailed, sentence(err, ErrPreconditionFailed))
	case errors.Is(err, ErrInvalid):
		return New(http.StatusUnprocessableEntity, sentence(err, ErrInvalid))
	case backoff.Unreachable(err):
		// The store is restarting or cut off: nothing is wrong with the
		// request, and the same request later will likely succeed.
		return New(http.StatusServiceUnavailable, StoreUnavailable)
	}
	return New(http.StatusInternalServerError, "internal error")
}

// StoreUnavailable is the detail of the 503 a request gets when the store
// cannot be reached; the answer carries Retry-After.
const StoreUnavailable = "the store cannot be reached at the moment; retry the request shortly"

// RetryAfterSeconds is the Retry-After of a 503: about how long a store
// restart takes.
const RetryAfterSeconds = 2

// sentence is the message of err without the sentinel it wraps at its end
// ("…already exists: conflict"): the status says that already.
func sentence(err, sentinel error) string {
	msg, _ := strings.CutSuffix(err.Error(), ": "+sentinel.Error())
	return msg
}
