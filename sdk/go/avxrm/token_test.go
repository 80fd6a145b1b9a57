package avxrm_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/oidctest"
	"golang.org/x/oauth2"
)

// The password grant logs in; a token about to expire is refreshed with the
// refresh grant, announced to OnRefresh, and sent as the bearer token.
func TestOIDCPasswordThenRefresh(t *testing.T) {
	ctx := context.Background()
	// Tokens valid for 5s: within oauth2's 10s early-expiry margin, so each
	// use refreshes.
	is := oidctest.NewIssuer(t, 5)
	o := avxrm.OIDC{Issuer: is.URL, ClientID: "avxrm"}
	if _, err := o.Password(ctx, "alice", "wrong"); err == nil {
		t.Fatal("a wrong password logged in")
	}
	src, err := o.Password(ctx, "alice", "secret")
	if err != nil {
		t.Fatal(err)
	}
	if got := src.Current().AccessToken; got != "at-1" {
		t.Fatalf("after login: %q", got)
	}
	var stored []*oauth2.Token
	src.OnRefresh = func(tok *oauth2.Token) { stored = append(stored, tok) }

	var auth []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = append(auth, r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"job-1","name":"j","queue_id":"q","application":{},"worker_instances":1,"priority":0}`))
	}))
	defer api.Close()
	c, err := avxrm.New(api.URL, avxrm.WithTokenSource(src))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := c.GetJob(ctx, "job-1"); err != nil {
			t.Fatal(err)
		}
	}
	if len(auth) != 2 || auth[0] != "Bearer at-2" || auth[1] != "Bearer at-3" {
		t.Errorf("Authorization headers %q, want Bearer at-2 then at-3", auth)
	}
	if len(stored) != 2 || stored[1].RefreshToken != "rt-3" {
		t.Errorf("OnRefresh got %d tokens", len(stored))
	}
	if want := []string{"password", "password", "refresh_token", "refresh_token"}; fmt.Sprint(is.Grants()) != fmt.Sprint(want) {
		t.Errorf("grants %v, want %v", is.Grants(), want)
	}

	// A stored token is used until it expires, then refreshed.
	is2 := oidctest.NewIssuer(t, 3600)
	o2 := avxrm.OIDC{Issuer: is2.URL, ClientID: "avxrm"}
	first, err := o2.Password(ctx, "alice", "secret")
	if err != nil {
		t.Fatal(err)
	}
	again, err := o2.Refresh(ctx, first.Current())
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := again.Token(ctx); err != nil || tok != "at-1" {
		t.Errorf("valid stored token: %q %v", tok, err)
	}
	expired := &oauth2.Token{RefreshToken: "rt-1"}
	src3, err := o2.Refresh(ctx, expired)
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := src3.Token(ctx); err != nil || tok != "at-2" {
		t.Errorf("refresh of a stored refresh token: %q %v", tok, err)
	}
	bad, _ := o2.Refresh(ctx, &oauth2.Token{RefreshToken: "rt-unknown"})
	if _, err := bad.Token(ctx); err == nil {
		t.Error("an unknown refresh token was accepted")
	}
}

// A static token goes out as it is; the server's 401 comes back typed.
func TestStaticTokenAndUnauthorized(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"type":"about:blank","title":"Unauthorized","status":401,"detail":"no bearer token"}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"items":[]}`))
	}))
	defer srv.Close()
	ctx := context.Background()
	c, _ := avxrm.New(srv.URL, avxrm.WithTokenSource(avxrm.StaticToken("s3cret")))
	for _, err := range c.Queues(ctx) {
		t.Fatalf("with the token: %v", err)
	}
	anon, _ := avxrm.New(srv.URL)
	_, err := anon.GetQueue(ctx, "Default")
	var pe *avxrm.Error
	if !errors.Is(err, avxrm.ErrUnauthorized) || !errors.As(err, &pe) || pe.Error() != "401 no bearer token" {
		t.Errorf("without a token: %v", err)
	}
}

// ServerIssuer reads the issuer from the server's protected resource
// metadata, and tells a server with auth off apart.
func TestServerIssuer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/oauth-protected-resource" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"resource":"x","authorization_servers":["https://sso.example/realms/rm"]}`))
	}))
	defer srv.Close()
	if iss, err := avxrm.ServerIssuer(context.Background(), nil, srv.URL+"/"); err != nil || iss != "https://sso.example/realms/rm" {
		t.Errorf("ServerIssuer = %q, %v", iss, err)
	}
	off := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json") // as the API answers with auth off
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"title":"Not Found","status":404,"detail":"auth is off: this server takes requests without a token"}`))
	}))
	defer off.Close()
	if _, err := avxrm.ServerIssuer(context.Background(), nil, off.URL); !errors.Is(err, avxrm.ErrAuthOff) {
		t.Errorf("a server without auth: %v, want ErrAuthOff", err)
	}
	for status, page := range map[int]string{http.StatusNotFound: "<html>404</html>", http.StatusOK: "<html>welcome</html>"} {
		other := htmlServer(t, status, page)
		var pe *avxrm.Error
		_, err := avxrm.ServerIssuer(context.Background(), nil, other.URL)
		if !errors.As(err, &pe) || !pe.NotAPI() || errors.Is(err, avxrm.ErrAuthOff) ||
			err.Error() != fmt.Sprintf("the server at %s answered %d with text/html, not the Resource Manager's API", other.URL, status) {
			t.Errorf("another web server's %d page: %v, want it named not the API", status, err)
		}
	}
}

// htmlServer answers every request with status and an HTML page, as a
// web server that is not the API does.
func htmlServer(t *testing.T, status int, page string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(page))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// A refresh that fails (the refresh token expired or revoked, the issuer
// down) names the issuer, as the logins do: a client's error line then
// says where to log in again.
func TestRefreshFailureNamesTheIssuer(t *testing.T) {
	ctx := context.Background()
	is := oidctest.NewIssuer(t, 3600)
	o := avxrm.OIDC{Issuer: is.URL, ClientID: oidctest.ClientID}
	src, err := o.Refresh(ctx, &oauth2.Token{RefreshToken: "rt-revoked"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.Token(ctx)
	if err == nil || !strings.Contains(err.Error(), "issuer "+is.URL) || !strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("a revoked refresh token: %v, want the issuer's URL and its error", err)
	}
	is.Close()
	if _, err = src.Token(ctx); err == nil || !strings.Contains(err.Error(), "issuer "+is.URL) {
		t.Errorf("the issuer down: %v, want its URL", err)
	}
}

// A refresh ends with the caller's context: a token endpoint that does not
// answer held Token (and so every request, WaitJob's too) until the HTTP
// client's own timeout, whatever the caller's deadline.
func TestRefreshEndsWithItsContext(t *testing.T) {
	release := make(chan struct{})
	is := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/.well-known/openid-configuration" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = fmt.Fprintf(w, `{"token_endpoint":"http://%s/token"}`, r.Host)
			return
		}
		select { // the token endpoint never answers
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer is.Close()
	defer close(release)
	src, err := avxrm.OIDC{Issuer: is.URL, ClientID: "avxrm"}.Refresh(context.Background(), &oauth2.Token{RefreshToken: "rt-1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = src.Token(ctx)
	if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > 5*time.Second {
		t.Errorf("refresh past the caller's deadline: %v after %v", err, took)
	}
}

// An OIDC whose Issuer is not an issuer's URL, or that names no client, is
// refused by each of its constructors, naming the field: an empty Issuer
// failed on the discovery request with "unsupported protocol scheme".
func TestOIDCRefusesAMissingIssuerOrClient(t *testing.T) {
	ctx := context.Background()
	bad := map[string]avxrm.OIDC{
		`Issuer "": want`: {ClientID: "avxrm"},
		`Issuer "keycloak.example/realms/rm": want`: {Issuer: "keycloak.example/realms/rm", ClientID: "avxrm"},
		`Issuer "ftp://keycloak.example": want`:     {Issuer: "ftp://keycloak.example", ClientID: "avxrm"},
		`Issuer "https://keycloak.example/realms/rm?x=1": want`: {Issuer: "https://keycloak.example/realms/rm?x=1",
			ClientID: "avxrm"},
		"ClientID: empty": {Issuer: "https://keycloak.example/realms/rm"},
	}
	for want, o := range bad {
		calls := map[string]func() error{
			"Password": func() error { _, err := o.Password(ctx, "alice", "secret"); return err },
			"Device": func() error {
				_, err := o.Device(ctx, func(string, string) { t.Error("Device showed a code") })
				return err
			},
			"Refresh": func() error { _, err := o.Refresh(ctx, &oauth2.Token{RefreshToken: "rt"}); return err },
		}
		if o.ClientID != "" { // discovery needs no client
			calls["Discover"] = func() error { _, err := o.Discover(ctx); return err }
		}
		for name, call := range calls {
			if err := call(); err == nil || !strings.Contains(err.Error(), "OIDC "+want) {
				t.Errorf("%s of %+v: %v, want an error naming OIDC %s", name, o, err, want)
			}
		}
	}
}

// ServerIssuer refuses a root URL that New would refuse, with New's
// words, before anything is sent: an empty one failed with "unsupported
// protocol scheme".
func TestServerIssuerRefusesABadRoot(t *testing.T) {
	for root, want := range map[string]string{
		"":                           `server "": want a URL such as`,
		"127.0.0.1:8080":             `server "127.0.0.1:8080": want a URL such as`,
		"http://127.0.0.1:8080/?x=1": "a root URL has no query",
	} {
		if _, err := avxrm.ServerIssuer(context.Background(), nil, root); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ServerIssuer(%q): %v, want %q", root, err, want)
		}
	}
}
