package avxrm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm/api"
)

// BasePath is where the API lives below the server's root URL.
const BasePath = "/api/resources/v1"

// DefaultServer is the local all-in-one (`avxrm up`).
const DefaultServer = "http://127.0.0.1:8080"

// Client talks to one Resource Manager. It is safe for concurrent use.
type Client struct {
	// API is the generated client, for the operations this package does not
	// wrap; it shares the retries, idempotency keys and tokens of Client.
	// Its …WithResponse methods return a 4xx or 5xx answer with a nil
	// error: CheckResponse(r.HTTPResponse, r.Body) makes it the *Error the
	// package's own calls give.
	// It escapes path parameters but then resolves an id of "." or ".."
	// away (GET /jobs/.. goes to the API's root): the wrappers, and Do
	// with PathSegment, send such an id as it is.
	API *api.ClientWithResponses

	root         string // the server's root URL, without a trailing slash
	hc           *http.Client
	doer         *doer
	backoff      Backoff
	pageSize     int
	onDisconnect func(err error, attempt int)
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sends the requests through hc (its Transport, Timeout,
// cookies). If not set, DefaultHTTPClient. The ResponseHeaderTimeout of an
// *http.Transport also limits how long an answer's body may stop coming.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// Timeouts of DefaultHTTPClient.
const (
	// DialTimeout is how long connecting to the server may take.
	DialTimeout = 10 * time.Second
	// ResponseHeaderTimeout is how long the server may take to begin its
	// answer once it has the whole request, and then how long its answer's
	// body may stop coming (the event stream's but for: Watch takes a
	// stream silent for 45s for dead). The API answers every request
	// within it: the event stream and a followed log send their headers
	// at once (a log after its first chunk, which the API waits at most
	// 10s for); a download's or upload's length is not limited.
	ResponseHeaderTimeout = 30 * time.Second
)

// arrayJobAnswerTime is what each job of an array may add to the time the
// API takes to answer its creation: ten times what it takes on the embedded
// store, so a store under load still answers within it.
const arrayJobAnswerTime = 5 * time.Millisecond

type headerTimeoutKey struct{}

// withHeaderTimeout gives a request that ctx carries a response-header
// timeout of d instead of ResponseHeaderTimeout, for a request the API
// takes longer to answer, when the client is DefaultHTTPClient.
func withHeaderTimeout(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, headerTimeoutKey{}, d)
}

// clientFor is the client that sends req: hc, or for a request whose context
// asks for a longer response-header timeout (withHeaderTimeout) a client of
// DefaultHTTPClient's transport with that timeout.
func clientFor(hc *http.Client, req *http.Request) *http.Client {
	d, ok := req.Context().Value(headerTimeoutKey{}).(time.Duration)
	if !ok || hc != DefaultHTTPClient || d <= ResponseHeaderTimeout {
		return hc
	}
	t := defaultTransport()
	t.ResponseHeaderTimeout = d
	return &http.Client{Transport: t}
}

// DefaultHTTPClient is http.DefaultTransport's client with DialTimeout
// and ResponseHeaderTimeout, so that a server that takes the connection
// but never answers, or stops in the middle of its answer, is not waited
// for forever. It has no overall timeout,
// since the event stream and downloads are long requests; use contexts for
// deadlines.
var DefaultHTTPClient = &http.Client{Transport: defaultTransport()}

func defaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: DialTimeout, KeepAlive: 30 * time.Second}).DialContext
	t.ResponseHeaderTimeout = ResponseHeaderTimeout
	return t
}

// WithTokenSource sends `Authorization: Bearer <token>` with every request.
func WithTokenSource(ts TokenSource) Option { return func(c *Client) { c.doer.tokens = ts } }

// DefaultRetries is how often a request is tried again if WithRetries
// does not say.
const DefaultRetries = 4

// WithRetries sets how often a request that failed to reach the server, or
// that it answered 503 (waiting at least its Retry-After, up to the backoff's
// Max), is tried again (GET, HEAD, PUT, and POST with an Idempotency-Key,
// which this client adds to every POST). If not set, DefaultRetries.
func WithRetries(n int) Option { return func(c *Client) { c.doer.retries = n } }

// WithOnRetry tells fn of each request about to be tried again (see
// WithRetries), before the wait: err is the failure to reach the server, or
// the *Error of its 503; retry counts from 1 to the retries, and wait is
// the pause before it. A command line can say why it has not answered yet.
func WithOnRetry(fn func(err error, retry int, wait time.Duration)) Option {
	return func(c *Client) { c.doer.onRetry = fn }
}

// WithBackoff sets the waits between retries and between reconnects of
// the event stream.
func WithBackoff(b Backoff) Option {
	return func(c *Client) { c.backoff = b; c.doer.backoff = b }
}

// WithPageSize sets how many items the iterators ask for per page
// (1..1000). If not set, 200.
func WithPageSize(n int) Option { return func(c *Client) { c.pageSize = n } }

// WithOnDisconnect tells fn of each lost connection of an event stream
// (Watch, FollowJob, WaitJob, WaitExport) before it is opened again;
// WatchOptions' OnDisconnect wins.
func WithOnDisconnect(fn func(err error, attempt int)) Option {
	return func(c *Client) { c.onDisconnect = fn }
}

// Backoff is an exponential backoff: Initial, doubled per attempt up to Max,
// each wait shortened by a random part of up to a quarter.
type Backoff struct {
	Initial, Max time.Duration
}

// DefaultBackoff starts at 100ms and stays below 5s.
var DefaultBackoff = Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second}

// Wait returns the wait before attempt n (0-based).
func (b Backoff) Wait(n int) time.Duration {
	d := b.Initial
	for i := 0; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	var r [1]byte
	_, _ = rand.Read(r[:])
	return d - d/4*time.Duration(r[0])/255
}

// Sleep waits d or until ctx ends, whose error it then returns.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// New returns a client of the server at root, the server's root URL such as
// http://127.0.0.1:8080; the API's base path is appended.
func New(root string, opts ...Option) (*Client, error) {
	if root == "" {
		root = DefaultServer
	}
	if err := checkRoot(root); err != nil {
		return nil, err
	}
	c := &Client{root: strings.TrimSuffix(root, "/"), backoff: DefaultBackoff, pageSize: 200,
		doer: &doer{retries: DefaultRetries, backoff: DefaultBackoff}}
	for _, o := range opts {
		o(c)
	}
	switch {
	case c.pageSize < 1 || c.pageSize > 1000: // the API's range of limit
		return nil, fmt.Errorf("page size %d: want 1..1000", c.pageSize)
	case c.doer.retries < 0:
		return nil, fmt.Errorf("retries %d: want 0 or more", c.doer.retries)
	case c.backoff.Initial <= 0:
		// No wait between attempts would spin while the server is down.
		return nil, fmt.Errorf("backoff %+v: want an Initial wait above 0", c.backoff)
	case c.backoff.Max < c.backoff.Initial:
		return nil, fmt.Errorf("backoff Max %s: want at least Initial %s", c.backoff.Max, c.backoff.Initial)
	}
	if c.hc == nil {
		c.hc = DefaultHTTPClient
	}
	c.doer.hc = c.hc
	// The generated paths carry the base path as long as the document has no
	// servers entry; api.ServerPath follows the document on regeneration.
	var err error
	c.API, err = api.NewClientWithResponses(c.root+api.ServerPath, api.WithHTTPClient(c.doer))
	if err != nil {
		return nil, err
	}
	return c, nil
}

// checkRoot refuses what is not a server's root URL: an http or https
// URL without a query or fragment.
func checkRoot(root string) error {
	u, err := url.Parse(root)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("server %q: want a URL such as %s", root, DefaultServer)
	}
	if strings.ContainsAny(root, "?#") {
		// The API's paths are appended to it.
		return fmt.Errorf("server %q: a root URL has no query or fragment", root)
	}
	// The URLs a browser shows of the server are under its root, never it.
	for _, under := range []struct{ path, what string }{{"/ui", "web view"}, {"/api/resources", "API"}} {
		if i := strings.Index(u.Path+"/", under.path+"/"); i >= 0 {
			u.Path, u.RawPath = u.Path[:i], ""
			return fmt.Errorf("server %q: that is a URL of the server's %s, not its root; give %s", root, under.what, u.String())
		}
	}
	return nil
}

// Server returns the server's root URL.
func (c *Client) Server() string { return c.root }

// URL returns the absolute URL of an API path such as "/jobs".
func (c *Client) URL(path string) string { return c.root + BasePath + path }

// Do sends a request to an API path such as "/queues/Default" with body (nil,
// []byte/json.RawMessage sent as is, or a value encoded as JSON) and decodes a
// 2xx answer into out (nil discards it; *[]byte keeps it raw). A 4xx or 5xx
// answer is returned as *Error. PATCH bodies are sent as merge patches.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		raw, ok := body.([]byte)
		if m, isRaw := body.(json.RawMessage); isRaw {
			raw, ok = m, true
		}
		if !ok {
			var err error
			if raw, err = json.Marshal(body); err != nil {
				return nil, fmt.Errorf("encode %s %s: %w", method, path, err)
			}
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL(path), rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		ct := "application/json"
		if method == http.MethodPatch {
			ct = "application/merge-patch+json"
		}
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	resp, err := c.doer.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		return resp, problemError(resp, raw)
	}
	switch o := out.(type) {
	case nil:
	case *[]byte:
		*o = raw
	default:
		if err := json.Unmarshal(raw, out); err != nil {
			if err := notAPIAnswer(resp); err != nil {
				return resp, err
			}
			return resp, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return resp, nil
}

// doer sends the generated client's and Do's requests: it adds the bearer
// token and an Idempotency-Key to every POST, and tries again a request
// that did not reach the server, or that the server refused for now (503:
// its store cannot be reached), when doing so cannot apply it twice.
type doer struct {
	hc      *http.Client
	tokens  TokenSource
	retries int
	backoff Backoff
	onRetry func(err error, retry int, wait time.Duration)
}

func (d *doer) Do(req *http.Request) (*http.Response, error) { return d.do(req, true) }

// do is Do; with checkJSON, an answer labelled JSON, or of status 400 or
// above, is read before it is returned (its body kept for ResponseError),
// and is an error if it is labelled JSON and is not JSON (notJSON): not
// for Send, whose caller reads a download as it comes.
func (d *doer) do(req *http.Request, checkJSON bool) (*http.Response, error) {
	ctx := req.Context()
	if d.tokens != nil {
		tok, err := d.tokens.Token(ctx)
		if err != nil {
			return nil, fmt.Errorf("get a token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if req.Method == http.MethodPost && req.Header.Get("Idempotency-Key") == "" {
		req.Header.Set("Idempotency-Key", rand.Text())
	}
	retryable := req.Method == http.MethodGet || req.Method == http.MethodHead || req.Method == http.MethodPut ||
		req.Method == http.MethodPost
	hc := clientFor(d.hc, req)
	idle := headerTimeout(hc)
	for attempt := 0; ; attempt++ {
		resp, err := send(hc, req, idle)
		unavailable := err == nil && resp.StatusCode == http.StatusServiceUnavailable
		// A POST sent again after its answer was lost may find its first
		// attempt still holding the Idempotency-Key: a 409 to try again
		// (docs/API.md), not a conflict of the caller's.
		unavailable = unavailable || err == nil && attempt > 0 && req.Method == http.MethodPost && keyInProgress(resp)
		resendable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
		if !retryable || !resendable || attempt >= d.retries || ctx.Err() != nil || !(unavailable || err != nil && isConnError(err)) {
			if err == nil && checkJSON {
				if err := notJSON(resp); err != nil {
					return nil, err
				}
			}
			return resp, err
		}
		var body io.ReadCloser
		if req.GetBody != nil {
			var gerr error
			if body, gerr = req.GetBody(); gerr != nil {
				return resp, err // the answer or failure there is
			}
		}
		wait := d.backoff.Wait(attempt)
		why := err
		if unavailable {
			wait = max(wait, retryAfter(resp, d.backoff.Max))
			raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			why = problemError(resp, raw)
		}
		if d.onRetry != nil {
			d.onRetry(why, attempt+1, wait)
		}
		if err := Sleep(ctx, wait); err != nil {
			if body != nil {
				body.Close()
			}
			return nil, err
		}
		if body != nil {
			req = req.Clone(ctx)
			req.Body = body
		}
	}
}

// headerTimeout is the ResponseHeaderTimeout of hc's transport, if it is
// an *http.Transport; else 0.
func headerTimeout(hc *http.Client) time.Duration {
	if t, ok := hc.Transport.(*http.Transport); ok {
		return t.ResponseHeaderTimeout
	}
	return 0
}

// send sends req once through hc. The answer's body, but the event
// stream's (which Watch watches itself), may be silent for at most idle, as
// its headers may (0: no limit): a server that stops in the middle of its
// answer is not waited for forever.
func send(hc *http.Client, req *http.Request, idle time.Duration) (*http.Response, error) {
	if idle <= 0 {
		return hc.Do(req)
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	resp, err := hc.Do(req.WithContext(ctx))
	if err != nil {
		cancel(nil)
		return resp, err
	}
	b := &idleBody{body: resp.Body, cancel: cancel}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		r := resp.Request
		b.idle, b.err = idle, &url.Error{Op: r.Method[:1] + strings.ToLower(r.Method[1:]), URL: r.URL.Redacted(),
			Err: fmt.Errorf("the answer stopped coming for %s: %w", idle, os.ErrDeadlineExceeded)}
		b.timer = time.AfterFunc(idle, func() { b.fired.Store(true); cancel(b.err) })
		b.timer.Stop()
	}
	resp.Body = b
	return resp, nil
}

// idleBody is an answer's body whose request is cancelled when a Read
// waits longer than idle (no timer: no limit); closing it ends the request.
type idleBody struct {
	body   io.ReadCloser
	cancel context.CancelCauseFunc
	idle   time.Duration
	timer  *time.Timer
	fired  atomic.Bool
	err    error // what Read returns once the timer has fired
}

func (b *idleBody) Read(p []byte) (int, error) {
	if b.timer == nil {
		return b.body.Read(p)
	}
	b.timer.Reset(b.idle)
	n, err := b.body.Read(p)
	b.timer.Stop()
	if err != nil && b.fired.Load() {
		err = b.err
	}
	return n, err
}

func (b *idleBody) Close() error {
	if b.timer != nil {
		b.timer.Stop()
	}
	err := b.body.Close()
	b.cancel(nil)
	return err
}

// keyInProgress says whether resp is the API's 409 saying that another
// attempt of the request holds its Idempotency-Key (the problem names that
// field). It leaves resp's body to be read again.
func keyInProgress(resp *http.Response) bool {
	if resp.StatusCode != http.StatusConflict {
		return false
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	var p struct {
		Errors []struct{ Field string } `json:"errors"`
	}
	if json.Unmarshal(raw, &p) != nil {
		return false
	}
	for _, e := range p.Errors {
		if e.Field == "Idempotency-Key" {
			return true
		}
	}
	return false
}

// retryAfter is the wait a 503 asks for in seconds (Retry-After), at most
// limit; 0 when it asks for none or for a date.
func retryAfter(resp *http.Response, limit time.Duration) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After")))
	if err != nil || n <= 0 {
		return 0
	}
	return min(time.Duration(n)*time.Second, limit)
}

// isConnError says whether err means the request may not have been
// answered: the connection was refused, reset or closed.
func isConnError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "server closed")
}

// Send sends req with the client's token and retries, for requests Do does
// not fit (a Range download); the caller reads and closes the answer.
func (c *Client) Send(req *http.Request) (*http.Response, error) { return c.doer.do(req, false) }
