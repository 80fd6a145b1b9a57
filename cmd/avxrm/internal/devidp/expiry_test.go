package devidp_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/devidp"
	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
)

// openStream opens GET /events?type=rm.queue.created with token (a bearer
// header) after last ("" for none).
func (e *env) openStream(ctx context.Context, token, last string) *http.Response {
	e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.base+v1+"/events?type=rm.queue.created", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", token)
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// readMessages sends each message of an event stream (its lines) on the
// channel it returns, which closes at the stream's end.
func readMessages(body io.Reader) <-chan []string {
	out := make(chan []string, 16)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(body)
		var msg []string
		for sc.Scan() {
			if sc.Text() != "" {
				msg = append(msg, sc.Text())
				continue
			}
			out <- msg
			msg = nil
		}
		if msg != nil {
			out <- append(msg, "(cut off before its end)")
		}
	}()
	return out
}

// The API ends an event stream when its token is no longer accepted (exp,
// plus the clock skew allowed: 1 ms here), not before, after a whole
// message, with a message of event token-expired alone. The same token
// cannot open it again; a new one resumes it with Last-Event-ID, and the
// event that came in between is neither lost nor repeated.
func TestEventStreamEndsWhenItsTokenExpires(t *testing.T) {
	e := start(t, devidp.Config{AccessTTL: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tk := e.login("viewer")
	exp := time.Unix(expOf(t, tk.AccessToken), 0)
	res := e.openStream(ctx, bearer(tk), "")
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /events = %d", res.StatusCode)
	}
	msgs := readMessages(res.Body)
	var got [][]string
	for m := range msgs {
		got = append(got, m)
		if len(got) == 1 { // the position: the reader is subscribed
			e.must(http.StatusCreated, bearer(e.login("admin")), http.MethodPost, v1+"/queues", map[string]any{"name": "during"})
		}
	}
	ended := time.Now()
	if ended.Before(exp) {
		t.Errorf("the stream ended at %s, before its token's exp %s", ended.Format(time.StampMilli), exp.Format(time.StampMilli))
	}
	if len(got) != 3 || !strings.HasPrefix(got[0][0], "id: ") || len(got[0]) != 1 ||
		!strings.Contains(strings.Join(got[1], "\n"), `"name":"during"`) {
		t.Fatalf("messages %q, want the position, the queue's creation and the end", got)
	}
	end := got[2]
	if len(end) != 2 || !strings.HasPrefix(end[0], ": ") || end[1] != "event: token-expired" {
		t.Errorf("the last message %q, want a comment and event: token-expired alone (no id, no data)", end)
	}

	last := strings.TrimPrefix(got[1][0], "id: ")
	e.must(http.StatusCreated, bearer(e.login("admin")), http.MethodPost, v1+"/queues", map[string]any{"name": "between"})
	again := e.openStream(ctx, bearer(tk), last)
	body, _ := io.ReadAll(again.Body)
	again.Body.Close()
	if again.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "expired") {
		t.Errorf("the expired token again: %d %s, want 401 saying it expired", again.StatusCode, body)
	}
	resumed := e.openStream(ctx, bearer(e.login("viewer")), last)
	defer resumed.Body.Close()
	m, ok := <-readMessages(resumed.Body)
	if !ok || !strings.Contains(strings.Join(m, "\n"), `"name":"between"`) {
		t.Errorf("resumed with a new token after %s: %q, want the creation of the queue made in between", last, m)
	}
}

// authTap records the Authorization and Last-Event-ID of each request of
// the event stream.
type authTap struct {
	mu    sync.Mutex
	opens []string // "<token> after <Last-Event-ID>"
}

func (a *authTap) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/events") {
		a.mu.Lock()
		a.opens = append(a.opens, r.Header.Get("Authorization")+" after "+r.Header.Get("Last-Event-ID"))
		a.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(r)
}

func (a *authTap) seen() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.opens...)
}

// The SDK's Watch with an OIDC token source goes on across its tokens'
// expiries: each time the API ends the stream it reopens it with a token
// refreshed from the source and Last-Event-ID, quietly (no OnDisconnect),
// and gets every event once, in order, while they keep coming.
func TestWatchAcrossTokenExpiries(t *testing.T) {
	e := start(t, devidp.Config{AccessTTL: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	u, _ := e.idp.User("admin")
	src, err := avxrm.OIDC{Issuer: e.idp.Issuer, ClientID: e.idp.ClientID, Scopes: []string{"offline_access"}}.Password(ctx, u.Username, u.Password)
	if err != nil {
		t.Fatal(err)
	}
	tap := &authTap{}
	c, err := avxrm.New(e.base, avxrm.WithTokenSource(src), avxrm.WithHTTPClient(&http.Client{Transport: tap}),
		avxrm.WithOnDisconnect(func(err error, _ int) { t.Errorf("Watch told of a lost connection: %v", err) }))
	if err != nil {
		t.Fatal(err)
	}

	// Queues are created one after another until the stream has been
	// reopened twice, then one named "last".
	var made []string
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			for i := 0; ; i++ {
				name := fmt.Sprintf("q%d", i)
				if len(tap.seen()) >= 3 {
					name = "last"
				}
				if _, err := c.CreateQueue(ctx, api.QueueBody{Name: name}); err != nil {
					return err
				}
				made = append(made, name)
				if name == "last" {
					return nil
				}
				time.Sleep(100 * time.Millisecond) // a pace, so that they keep coming across the expiries
			}
		}()
	}()
	var got []string
	for ev, err := range c.Watch(ctx, avxrm.WatchOptions{Types: []string{"rm.queue.created"}}) {
		if err != nil {
			t.Fatalf("Watch: %v after %q", err, got)
		}
		var name struct{ Name string }
		if err := json.Unmarshal(ev.CloudEvent.Data, &name); err != nil {
			t.Fatal(err)
		}
		got = append(got, name.Name)
		if name.Name == "last" {
			break
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(made) {
		t.Errorf("Watch got %q, want each queue made once, in order: %q", got, made)
	}
	opens := tap.seen()
	tokens := map[string]bool{}
	for i, o := range opens {
		tok, after, _ := strings.Cut(o, " after ")
		tokens[tok] = true
		if i > 0 && after == "" {
			t.Errorf("reconnect %d sent no Last-Event-ID: %q", i, opens)
		}
	}
	if len(opens) < 3 || len(tokens) != len(opens) {
		t.Errorf("the stream was opened %d times with %d tokens, want at least 3 with a new token each: %q", len(opens), len(tokens), opens)
	}
}

// A token that cannot be renewed (a static one) ends Watch once the API
// ends its stream: reopening it is answered 401, which Watch returns.
func TestWatchWithAStaticTokenEndsAtItsExpiry(t *testing.T) {
	e := start(t, devidp.Config{AccessTTL: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := avxrm.New(e.base, avxrm.WithTokenSource(avxrm.StaticToken(e.login("viewer").AccessToken)),
		avxrm.WithOnDisconnect(func(err error, _ int) { t.Errorf("Watch told of a lost connection: %v", err) }))
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range c.Watch(ctx, avxrm.WatchOptions{}) {
		var ae *avxrm.Error
		if !errors.As(err, &ae) || ae.StatusCode != http.StatusUnauthorized || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("Watch with an expired static token: %v, want the 401 saying it expired", err)
		}
		return
	}
	t.Fatal("Watch ended without an error")
}
