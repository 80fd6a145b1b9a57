package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// httpMetrics counts requests and their latency per route template (not per
// URL, which would explode the label space with ids) and per method, of
// those HTTP defines (any other is "other": a client may send any token).
func httpMetrics(reg prometheus.Registerer) echo.MiddlewareFunc {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rm_api_requests_total", Help: "HTTP requests answered by the API.",
	}, []string{"method", "route", "code"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "rm_api_request_duration_seconds", Help: "Time to answer an HTTP request (streams excluded).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"method", "route"})
	if reg != nil {
		reg.MustRegister(requests, latency)
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			route := routeOf(c)
			// An error not answered yet is answered by the error handler
			// after this returns, with the problem's status.
			code := c.Response().Status
			if err != nil && !c.Response().Committed {
				code = asProblemOf(err).Status
			}
			method := metricMethod(c.Request().Method)
			requests.WithLabelValues(method, route, strconv.Itoa(code)).Inc()
			if route != BasePath+"/events" {
				latency.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
			}
			return err
		}
	}
}

// routeOf is the route template c was matched to
// (/api/resources/v1/jobs/:id), "unmatched" if none.
func routeOf(c echo.Context) string {
	if r := c.Path(); r != "" {
		return r
	}
	return "unmatched"
}

// metricMethod is method as the metrics' label: one of RFC 9110's methods
// (and PATCH), else "other".
func metricMethod(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	}
	return "other"
}
