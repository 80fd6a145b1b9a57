package ui_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/services/api/internal/ui"
	"github.com/chromedp/chromedp"
)

// issuer is an in-process OIDC issuer for a public client: discovery, an
// authorization endpoint that signs the user in at once, and a token endpoint
// that checks the PKCE verifier against the challenge (S256) before it gives
// an access token. Its token endpoint answers CORS, as an issuer must for a
// browser client.
type issuer struct {
	t      *testing.T
	srv    *httptest.Server
	client string

	mu        sync.Mutex
	challenge map[string]string // code → code_challenge
	redirect  map[string]string // code → redirect_uri
	token     string            // the access token it gave, "" before
}

func startIssuer(t *testing.T, client string) *issuer {
	is := &issuer{t: t, client: client, challenge: map[string]string{}, redirect: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": is.srv.URL, "authorization_endpoint": is.srv.URL + "/authorize", "token_endpoint": is.srv.URL + "/token",
			"code_challenge_methods_supported": []string{"S256"},
		})
	})
	mux.HandleFunc("/authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("response_type") != "code" || q.Get("client_id") != client || q.Get("code_challenge_method") != "S256" ||
			len(q.Get("code_challenge")) != 43 || q.Get("state") == "" || !strings.HasSuffix(q.Get("redirect_uri"), "/ui/callback") {
			t.Errorf("authorization request lacks what PKCE needs: %s", r.URL.RawQuery)
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		code := rand.Text()
		is.mu.Lock()
		is.challenge[code], is.redirect[code] = q.Get("code_challenge"), q.Get("redirect_uri")
		is.mu.Unlock()
		http.Redirect(w, r, q.Get("redirect_uri")+"?"+url.Values{"code": {code}, "state": {q.Get("state")}}.Encode(), http.StatusFound)
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Allow-Headers", "Content-Type")
		if r.Method == http.MethodOptions {
			return
		}
		_ = r.ParseForm()
		code := r.PostForm.Get("code")
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		is.mu.Lock()
		defer is.mu.Unlock()
		if r.PostForm.Get("grant_type") != "authorization_code" || r.PostForm.Get("client_id") != client ||
			is.challenge[code] == "" || base64.RawURLEncoding.EncodeToString(sum[:]) != is.challenge[code] ||
			r.PostForm.Get("redirect_uri") != is.redirect[code] {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant"})
			return
		}
		delete(is.challenge, code)
		// A JWT-shaped token whose claims the page reads for the name and roles.
		claims, _ := json.Marshal(map[string]any{"sub": "u-1", "preferred_username": "alice", "realm_access": map[string]any{"roles": []string{"rm-viewer"}}})
		is.token = "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString(claims) + "." + rand.Text()
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": is.token, "token_type": "Bearer", "expires_in": 300})
	})
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

// bearer answers 401 on the API's routes unless the request carries the
// token the issuer gave, as the API's auth does for a token it verifies.
func (is *issuer) bearer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		is.mu.Lock()
		tok := is.token
		is.mu.Unlock()
		if strings.HasPrefix(r.URL.Path, "/api/") && (tok == "" || r.Header.Get("Authorization") != "Bearer "+tok) {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"title":"Unauthorized","status":401,"detail":"a bearer token is required"}`))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// signIn serves e's view and API, the API behind the bearer check of an
// issuer of its own (each request to it shown to seen first, if not nil),
// and signs a new browser in there on the queues' page, once it is live.
func signIn(t *testing.T, e *env, seen func(*http.Request)) (context.Context, *httptest.Server, *issuer) {
	t.Helper()
	is := startIssuer(t, "avxrm-ui")
	api := is.bearer(e.svc.Handler())
	view := ui.New(ui.Options{API: api, DB: e.db, JS: e.js, OIDC: &ui.OIDC{Issuer: is.srv.URL, ClientID: "avxrm-ui"}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, ui.Path+"/") {
			view.ServeHTTP(w, r)
			return
		}
		if seen != nil {
			seen(r)
		}
		api.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	ctx := newBrowser(t)
	err := chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/ui/queues"),
		chromedp.WaitVisible(chromedp.CSS(`#signin`)),
		chromedp.Click(chromedp.CSS(`#signin`)),
		// issuer → /ui/callback → back to the queues, fetched with the token
		chromedp.WaitVisible(chromedp.CSS(`#queue-simulation-controller-queue`)),
		chromedp.WaitVisible(chromedp.CSS(`#live[data-state="on"]`)),
	)
	if err != nil {
		t.Fatalf("sign-in: %v", err)
	}
	return ctx, srv, is
}

// With auth on, the page signs the user in (authorization code with PKCE)
// and then sends the token on every call: the page itself, and the event
// stream that keeps it live.
func TestSignInWithPKCEThenLive(t *testing.T) {
	e := startEnv(t)
	ctx, srv, is := signIn(t, e, nil)
	who, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#who`)))
	if err != nil || who != "alice" {
		t.Errorf("signed in as %q (%v), want alice", who, err)
	}
	loc, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.pathname`))
	if loc != "/ui/queues" {
		t.Errorf("after sign-in the page is %s, want /ui/queues", loc)
	}
	// A viewer does not see the limit editor's form on a queue page; the
	// queue created now appears on the open page through the stream read
	// with the token.
	is.mu.Lock()
	tok := is.token
	is.mu.Unlock()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/resources/v1/queues", strings.NewReader(`{"name":"signed-in","maximum_allowed_worker_instances":4}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create queue: %v %v", resp, err)
	}
	resp.Body.Close()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#queue-signed-in [data-usage="0/4"]`))); err != nil {
		t.Errorf("the new queue did not appear on the open page: %v", err)
	}
	err = chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/ui/queues/signed-in"),
		chromedp.WaitVisible(chromedp.CSS(`.summary [data-usage="0/4"]`)),
	)
	if err != nil {
		t.Fatalf("queue page after sign-in: %v", err)
	}
	if hidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`getComputedStyle(document.getElementById('limit-form')).display === 'none'`)); err != nil || !hidden {
		t.Errorf("the limit editor shows for a viewer (hidden %v, %v)", hidden, err)
	}
}

// A job's page whose stream is refused for good (the job was deleted before
// the stream first opened: a 422) stops following, as EventSource does,
// rather than asking again and again for the same answer; the stream read
// with a token is read with fetch, which retried every refusal.
func TestJobPageStopsOnARefusedStream(t *testing.T) {
	e := startEnv(t)
	e.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "Gone", "maximum_allowed_worker_instances": 4}, http.StatusCreated)
	id := e.submit("gone", "Gone", 1, nil)
	var mu sync.Mutex
	streams := 0 // the page's requests of the job's stream
	ctx, srv, _ := signIn(t, e, func(r *http.Request) {
		if r.URL.Path != "/api/resources/v1/events" || r.URL.Query().Get("job_id") != id {
			return
		}
		mu.Lock()
		streams++
		first := streams == 1
		mu.Unlock()
		if !first {
			return
		}
		// Deleted between the page's rendering and its stream.
		if st, body, _ := e.do(http.MethodDelete, "/api/resources/v1/jobs/"+id, nil); st != http.StatusNoContent {
			t.Errorf("DELETE /jobs/%s = %d %s, want 204", id, st, body)
		}
	})
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/ui/jobs/"+id)); err != nil {
		t.Fatalf("the job's page: %v", err)
	}
	waitJS(t, ctx, "the job's page is not live", `document.getElementById('live').textContent === 'not live'`)
	time.Sleep(1500 * time.Millisecond) // fetch asked again after 0.5 s, 1 s, 2 s, …
	mu.Lock()
	defer mu.Unlock()
	if streams != 1 {
		t.Errorf("the page asked for its refused stream %d times, want once", streams)
	}
}
