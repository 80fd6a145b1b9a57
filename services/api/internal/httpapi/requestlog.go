package httpapi

import (
	"crypto/rand"
	"log/slog"

	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humaecho"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// requestID gives every answer an X-Request-Id, which its log line carries:
// the one the request came with (from a proxy in front, a client that
// keeps its own, the web view's calls for its page), if it looks like an
// id, else a new random one. A value that does not (too long, spaces,
// quotes) is replaced rather than echoed: echo's middleware.RequestID
// takes any. The request's header is set to it too, for the handlers.
func requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(echo.HeaderXRequestID)
		if !looksLikeID(id) {
			id = rand.Text()
			c.Request().Header.Set(echo.HeaderXRequestID, id)
		}
		c.Response().Header().Set(echo.HeaderXRequestID, id)
		return next(c)
	}
}

// looksLikeID says whether id is 1 to 128 letters, digits and -_.:+/=
// (UUIDs, ULIDs, hex, base64, AWS's Root=1-…).
func looksLikeID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, r := range id {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		case r == '-' || r == '_' || r == '.' || r == ':' || r == '+' || r == '/' || r == '=':
		default:
			return false
		}
	}
	return true
}

// failureKey holds, on the echo context, the error behind a 5xx problem
// that huma wrote itself (noteFailure), for logRequests.
const failureKey = "rm.failure"

// noteFailure keeps the error behind a 5xx problem huma writes for the
// request's log line: huma answers a handler's error itself, never through
// echo's error handler, so logRequests does not see it returned.
func noteFailure(ctx huma.Context, _ string, v any) (any, error) {
	if p, ok := v.(*problem.Problem); ok && p.Status >= 500 {
		var err error = p // its detail: a problem a handler made (the event stream is not connected)
		if p.Cause() != nil {
			err = p.Cause()
		}
		humaecho.Unwrap(ctx).Set(failureKey, err)
	}
	return v, nil
}

// logRequests writes one line per request once it is answered (a stream,
// GET /events or a followed log, when it ends): "request failed" at level
// error with the error for a 5xx problem, "request" at level debug for
// any other answer (a 503 of /readyz is no failure of the request). A line
// names the method, the route template, the path, the status, how long the
// answer took, the bytes of its body and its X-Request-Id; never a query
// (an access_token may be in it), a header (Authorization) or a body.
func logRequests(log *slog.Logger) echo.MiddlewareFunc {
	return middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		// The error handler answers first, so that the status and the
		// bytes are those sent.
		HandleError:     true,
		LogMethod:       true,
		LogURIPath:      true,
		LogStatus:       true,
		LogLatency:      true,
		LogResponseSize: true,
		LogError:        true,
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			failure := v.Error
			if failure == nil {
				failure, _ = c.Get(failureKey).(error)
			}
			level, msg := slog.LevelDebug, "request"
			if v.Status >= 500 && failure != nil {
				level, msg = slog.LevelError, "request failed"
			}
			ctx := c.Request().Context()
			if !log.Enabled(ctx, level) {
				return nil
			}
			attrs := []slog.Attr{
				slog.String("method", v.Method),
				slog.String("route", routeOf(c)),
				slog.String("path", v.URIPath),
				slog.Int("status", v.Status),
				slog.String("took", v.Latency.String()),
				slog.Int64("bytes", v.ResponseSize),
				slog.String("request_id", c.Response().Header().Get(echo.HeaderXRequestID)),
			}
			if level == slog.LevelError {
				attrs = append(attrs, slog.Any("err", failure))
			}
			log.LogAttrs(ctx, level, msg, attrs...)
			return nil
		},
	})
}
