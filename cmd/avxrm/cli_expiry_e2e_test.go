package main_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm/oidctest"
)

// expiringAPI is an API whose event stream ends, as the real one's does,
// once its token is no longer accepted: the events after Last-Event-ID
// (one a connection, from 1 on), then, a token's life later (1.2 s), a
// message of event token-expired alone; the token is refused (401) from
// then on. It names issuer as the one whose tokens it takes.
type expiringAPI struct {
	*httptest.Server
	mu    sync.Mutex
	opens []string // "<Authorization> after <Last-Event-ID>"
	dead  map[string]bool
}

func newExpiringAPI(t *testing.T, issuer string) *expiringAPI {
	a := &expiringAPI{dead: map[string]bool{}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/.well-known/oauth-protected-resource" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = fmt.Fprintf(w, `{"resource":"%s/api/resources/v1","authorization_servers":[%q]}`, "http://"+r.Host, issuer)
			return
		}
		tok, last := r.Header.Get("Authorization"), r.Header.Get("Last-Event-ID")
		a.mu.Lock()
		a.opens = append(a.opens, tok+" after "+last)
		dead := a.dead[tok]
		a.mu.Unlock()
		if dead {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"title":"Unauthorized","status":401,"detail":"token expired at …"}`))
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		n := 1
		if last == "" {
			_, _ = fmt.Fprint(w, "id: 0\n\n")
		} else {
			_, _ = fmt.Sscan(last, &n)
			n++
		}
		_, _ = fmt.Fprintf(w, "id: %d\nevent: rm.queue.created\ndata: {\"type\":\"rm.queue.created\",\"subject\":\"q-%d\",\"data\":{}}\n\n", n, n)
		w.(http.Flusher).Flush()
		select {
		case <-time.After(1200 * time.Millisecond): // the token's life
		case <-r.Context().Done():
			return
		}
		a.mu.Lock()
		a.dead[tok] = true
		a.mu.Unlock()
		_, _ = fmt.Fprint(w, ": the token is no longer accepted\nevent: token-expired\n\n")
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *expiringAPI) seen() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.opens...)
}

// `avxrm events` goes on, quietly, when the API ends the stream at its
// token's expiry: it reopens it with Last-Event-ID and the stored login's
// token refreshed (and stored again), and prints every event once.
func TestCLIEventsGoOnAcrossTokenExpiry(t *testing.T) {
	is := oidctest.NewIssuer(t, 5) // within oauth2's early-expiry margin: every use refreshes
	api := newExpiringAPI(t, is.URL)
	s := &server{url: api.URL, home: t.TempDir()}
	login := s.command(context.Background(), "login", "--client-id", oidctest.ClientID, "--username", oidctest.Username, "--password-stdin")
	login.Stdin = strings.NewReader(oidctest.Password + "\n")
	if out, err := login.CombinedOutput(); err != nil {
		t.Fatalf("login: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd, out := s.background(t, ctx, "events")
	waitFor(t, 30*time.Second, "three events", func() bool { return strings.Count(out.String(), "\n") >= 3 })
	_ = cmd.Process.Signal(os.Interrupt)
	_ = cmd.Wait()
	var ids []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		ids = append(ids, strings.Fields(l)[0])
	}
	if got := strings.Join(ids[:3], " "); got != "1 2 3" {
		t.Errorf("avxrm events printed\n%s\nwant events 1, 2 and 3 once each, and nothing else (no word of a lost connection)", out)
	}
	if got, want := strings.Join(api.seen()[:3], ", "), "Bearer at-2 after , Bearer at-3 after 1, Bearer at-4 after 2"; got != want {
		t.Errorf("the stream was opened with %s, want %s: a refreshed token each time", got, want)
	}
	raw, _ := os.ReadFile(filepath.Join(s.home, "avxrm", "token.json"))
	if !strings.Contains(string(raw), `"refresh_token": "rt-4"`) {
		t.Errorf("the refreshed token was not stored:\n%s", raw)
	}
}
