package ui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// recorder collects the API's answer to an in-process call.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) Flush()                      {}
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

// call sends an in-process request to the API on behalf of the caller of r:
// its Authorization header goes along, so the API decides what it may read,
// and its X-Request-Id, so the API's log lines of the page's calls carry
// the page's.
// It answers the raw body of a 2xx, or a *pageError carrying the API's
// problem for anything else.
func (u *UI) call(r *http.Request, method, path string, q url.Values) ([]byte, error) {
	target := path
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(r.Context(), method, target, nil)
	if err != nil {
		return nil, fmt.Errorf("ui request %s: %w", target, err)
	}
	req.RemoteAddr = r.RemoteAddr
	req.Host = r.Host
	if a := r.Header.Get("Authorization"); a != "" {
		req.Header.Set("Authorization", a)
	}
	if id := r.Header.Get("X-Request-Id"); id != "" {
		req.Header.Set("X-Request-Id", id)
	}
	req.Header.Set("Accept", "application/json")
	rec := &recorder{header: http.Header{}}
	u.opts.API.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if rec.status/100 == 2 {
		return rec.body.Bytes(), nil
	}
	return nil, apiProblem(rec.status, rec.body.Bytes(), path)
}

// get calls a GET route and decodes its JSON into out.
func (u *UI) get(r *http.Request, path string, q url.Values, out any) error {
	raw, err := u.call(r, http.MethodGet, path, q)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// apiProblem turns the API's problem JSON into a page error with its status.
func apiProblem(status int, body []byte, path string) error {
	var p struct {
		Title  string       `json:"title"`
		Detail string       `json:"detail"`
		Errors []fieldError `json:"errors"`
	}
	_ = json.Unmarshal(body, &p)
	title := p.Title
	if title == "" {
		title = http.StatusText(status)
	}
	detail := p.Detail
	if detail == "" {
		detail = strings.TrimSpace(string(body))
	}
	if detail == "" {
		detail = path
	}
	if status >= 500 {
		// The API's trouble, not the caller's: shown as a bad gateway.
		return &pageError{Status: http.StatusBadGateway, Title: "The API answered " + http.StatusText(status), Detail: detail}
	}
	return &pageError{Status: status, Title: title, Detail: detail, Fields: p.Errors}
}

// listAll reads every page of a list route (at most max items).
func listAll[T any](u *UI, r *http.Request, path string, q url.Values, max int) ([]T, error) {
	var out []T
	if q == nil {
		q = url.Values{}
	}
	q.Set("limit", "1000")
	for {
		var page struct {
			Items      []T    `json:"items"`
			NextCursor string `json:"next_cursor"`
		}
		if err := u.get(r, path, q, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Items...)
		if page.NextCursor == "" || len(out) >= max {
			return out, nil
		}
		q.Set("cursor", page.NextCursor)
	}
}

// readAll drains a streamed body (the logs route) into a string, keeping the tail.
func tail(b []byte, n int) (string, bool) {
	if len(b) <= n {
		return string(b), false
	}
	b = b[len(b)-n:]
	if i := bytes.IndexByte(b, '\n'); i >= 0 && i < len(b)-1 {
		b = b[i+1:]
	}
	return string(b), true
}

var _ io.Writer = (*recorder)(nil)
