package httpapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"
)

// HEAD (RFC 9110 §9.3.2): every route that answers GET answers HEAD with
// the same status and headers and no body. The HEAD route runs the GET's
// handler behind the same middlewares (authorization reads HEAD as GET;
// metrics count it as HEAD), with the request still a HEAD, so that
// net/http sends no body and counts what the handler writes for
// Content-Length as it does for the GET, and http.ServeContent reads no
// content. HEAD routes are not listed by Echo.Routes, so neither the
// OpenAPI document nor Rules gains them: they answer what their GET does.

// answerHEAD adds a HEAD route beside each GET route registered on e from
// now on (echo, huma and the web view register through e.Add). Call it
// before the first route is registered.
func answerHEAD(e *echo.Echo) {
	e.OnAddRouteHandler = func(host string, r echo.Route, h echo.HandlerFunc, mw []echo.MiddlewareFunc) {
		if r.Method != http.MethodGet || host != "" {
			return
		}
		for i := len(mw) - 1; i >= 0; i-- {
			h = mw[i](h)
		}
		e.Router().Add(http.MethodHead, r.Path, headOf(h))
	}
}

// errHeadAnswered refuses writes after a HEAD's headers are sent.
var errHeadAnswered = errors.New("the HEAD request is answered: no body follows")

// headOf runs get for a HEAD. A streaming GET (the event stream, logs)
// flushes once its headers are decided: for a HEAD that is the whole
// answer, so the first flush sends the headers, cancels the request's
// context and fails the writes after it, and the stream ends there.
func headOf(get echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		ctx, cancel := context.WithCancel(context.WithValue(r.Context(), headKey{}, true))
		defer cancel()
		c.SetRequest(r.WithContext(ctx))
		res := c.Response()
		w := &headWriter{ResponseWriter: res.Writer, end: cancel}
		res.Writer = w
		defer func() { res.Writer = w.ResponseWriter }()
		return get(c)
	}
}

type headKey struct{}

// isHEAD says whether ctx is a HEAD request's, run by headOf: a handler
// that would open something for the body (a consumer of the event stream)
// need not.
func isHEAD(ctx context.Context) bool {
	head, _ := ctx.Value(headKey{}).(bool)
	return head
}

// headWriter ends a HEAD at its first flush. net/http itself discards the
// body of a HEAD; writes before the flush go through to it so that it can
// set Content-Length where it would for the GET.
type headWriter struct {
	http.ResponseWriter
	end   context.CancelFunc
	ended bool
}

func (w *headWriter) Write(p []byte) (int, error) {
	if w.ended {
		return 0, errHeadAnswered
	}
	return w.ResponseWriter.Write(p)
}

// Flush sends the headers and ends the request.
func (w *headWriter) Flush() {
	if w.ended {
		return
	}
	w.ended = true
	_ = http.NewResponseController(w.ResponseWriter).Flush()
	w.end()
}

func (w *headWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
