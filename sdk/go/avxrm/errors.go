package avxrm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
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
// server sent (or one made up from the status when the body was none).
type Error struct {
	StatusCode int
	Problem    api.Problem
}

// Error is one line: the problem's detail (or title) and its field errors.
func (e *Error) Error() string {
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
		if len(fields) > 0 {
			msg += " (" + strings.Join(fields, "; ") + ")"
		}
	}
	return fmt.Sprintf("%d %s", e.StatusCode, msg)
}

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

// Is matches the sentinel of the status.
func (e *Error) Is(target error) bool { return slices.Contains(statuses[target], e.StatusCode) }

// ResponseError reads the RFC 9457 problem of a failed answer (the first
// MiB of its body), for requests sent with Send.
func ResponseError(resp *http.Response) *Error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return problemError(resp, raw)
}

// problemError reads the problem of a failed answer.
func problemError(resp *http.Response, body []byte) *Error {
	e := &Error{StatusCode: resp.StatusCode}
	if json.Unmarshal(body, &e.Problem) != nil || e.Problem.Title == "" && e.Problem.Detail == nil {
		text := strings.TrimSpace(string(body))
		if len(text) > 200 {
			text = text[:200] + "…"
		}
		e.Problem = api.Problem{Status: int64(resp.StatusCode), Title: http.StatusText(resp.StatusCode)}
		if text != "" {
			e.Problem.Detail = &text
		}
	}
	return e
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
		return nil, fmt.Errorf("%s %s: unexpected answer %d", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode)
	}
	return v, nil
}
