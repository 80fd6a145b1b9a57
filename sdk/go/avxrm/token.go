package avxrm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"golang.org/x/oauth2"
)

// TokenSource gives the access token sent as `Authorization: Bearer`.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// StaticToken is a token that never changes, such as RM_JOB_TOKEN.
type StaticToken string

// Token returns the token.
func (t StaticToken) Token(context.Context) (string, error) { return string(t), nil }

// OIDC gets tokens from an OpenID Connect issuer's token endpoint (found
// through its discovery document) and refreshes them before they expire.
type OIDC struct {
	Issuer       string // e.g. https://keycloak.example/realms/rm
	ClientID     string
	ClientSecret string // empty for a public client
	Scopes       []string
	// HTTPClient, if set, is used to reach the issuer; else DefaultHTTPClient.
	HTTPClient *http.Client
}

// Discovery is what the SDK reads of an issuer's discovery document.
type Discovery struct {
	TokenEndpoint               string `json:"token_endpoint"`
	DeviceAuthorizationEndpoint string `json:"device_authorization_endpoint"`
}

// Discover reads the issuer's /.well-known/openid-configuration. An
// Issuer that is not an http or https URL without a query is refused
// before anything is sent.
func (o OIDC) Discover(ctx context.Context) (Discovery, error) {
	var d Discovery
	if u, err := url.Parse(o.Issuer); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		strings.ContainsAny(o.Issuer, "?#") {
		// The discovery document's path is appended to it.
		return d, fmt.Errorf("OIDC Issuer %q: want the issuer's URL, such as https://keycloak.example/realms/rm", o.Issuer)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		strings.TrimSuffix(o.Issuer, "/")+"/.well-known/openid-configuration", nil)
	if err != nil {
		return d, err
	}
	resp, err := o.client().Do(req)
	if err != nil {
		return d, fmt.Errorf("discover issuer %s: %w", o.Issuer, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return d, fmt.Errorf("discover issuer %s: %s", o.Issuer, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil || d.TokenEndpoint == "" {
		return d, fmt.Errorf("discover issuer %s: no token_endpoint (%v)", o.Issuer, err)
	}
	return d, nil
}

// ErrAuthOff is ServerIssuer's error for a server that takes requests
// without a token: it names no issuer.
var ErrAuthOff = errors.New("auth is off there, no token or login is needed")

// ServerIssuer asks the server at root (its root URL) which issuer's tokens
// it takes: the first authorization server of its OAuth 2.0 Protected
// Resource Metadata (RFC 9728, /.well-known/oauth-protected-resource). A
// server with auth off answers ErrAuthOff. hc nil: DefaultHTTPClient. A
// root that is not an http or https URL is refused before anything is sent.
func ServerIssuer(ctx context.Context, hc *http.Client, root string) (string, error) {
	if err := checkRoot(root); err != nil {
		return "", err
	}
	if hc == nil {
		hc = DefaultHTTPClient
	}
	u := strings.TrimRight(root, "/") + "/.well-known/oauth-protected-resource"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("ask %s for its issuer: %w", root, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("GET %s: read answer: %w", u, err)
	}
	var m struct {
		AuthorizationServers []string `json:"authorization_servers"`
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		if e := problemError(resp, raw); e.NotAPI() {
			return "", e // another web server's page says nothing of auth
		}
		return "", fmt.Errorf("the server at %s names no issuer: %w", root, ErrAuthOff)
	case resp.StatusCode >= 400:
		return "", problemError(resp, raw)
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("GET %s: %s", u, resp.Status)
	case json.Unmarshal(raw, &m) != nil || len(m.AuthorizationServers) == 0 || m.AuthorizationServers[0] == "":
		if err := notAPIAnswer(resp); err != nil {
			return "", err
		}
		return "", fmt.Errorf("GET %s named no authorization server", u)
	}
	return m.AuthorizationServers[0], nil
}

func (o OIDC) client() *http.Client {
	if o.HTTPClient != nil {
		return o.HTTPClient
	}
	return DefaultHTTPClient
}

// login is Discover for a token source: it refuses an OIDC that names no
// client, which every grant needs, before anything is sent.
func (o OIDC) login(ctx context.Context) (Discovery, error) {
	if o.ClientID == "" {
		return Discovery{}, errors.New("OIDC ClientID: empty; want the client id the issuer knows this program by")
	}
	return o.Discover(ctx)
}

func (o OIDC) config(d Discovery) *oauth2.Config {
	style := oauth2.AuthStyleAutoDetect
	if o.ClientSecret == "" {
		style = oauth2.AuthStyleInParams // a public client names itself in the form
	}
	return &oauth2.Config{ClientID: o.ClientID, ClientSecret: o.ClientSecret, Scopes: o.Scopes,
		Endpoint: oauth2.Endpoint{TokenURL: d.TokenEndpoint, DeviceAuthURL: d.DeviceAuthorizationEndpoint, AuthStyle: style}}
}

// Password logs in with the resource-owner password grant and returns a
// source that refreshes the token with its refresh token.
func (o OIDC) Password(ctx context.Context, username, password string) (*OAuth2Source, error) {
	d, err := o.login(ctx)
	if err != nil {
		return nil, err
	}
	cfg := o.config(d)
	tok, err := cfg.PasswordCredentialsToken(o.ctx(ctx), username, password)
	if err != nil {
		return nil, fmt.Errorf("log in to %s as %s: %w", o.Issuer, username, err)
	}
	return o.source(cfg, tok), nil
}

// Device logs in with the device authorization grant: show is told the URL
// and code the user must enter; it returns once the user has done so.
func (o OIDC) Device(ctx context.Context, show func(verificationURI, userCode string)) (*OAuth2Source, error) {
	d, err := o.login(ctx)
	if err != nil {
		return nil, err
	}
	if d.DeviceAuthorizationEndpoint == "" {
		return nil, fmt.Errorf("issuer %s offers no device authorization", o.Issuer)
	}
	cfg := o.config(d)
	da, err := cfg.DeviceAuth(o.ctx(ctx))
	if err != nil {
		return nil, fmt.Errorf("device authorization at %s: %w", o.Issuer, err)
	}
	uri := da.VerificationURIComplete
	if uri == "" {
		uri = da.VerificationURI
	}
	show(uri, da.UserCode)
	tok, err := cfg.DeviceAccessToken(o.ctx(ctx), da)
	if err != nil {
		return nil, fmt.Errorf("device login at %s: %w", o.Issuer, err)
	}
	return o.source(cfg, tok), nil
}

// Refresh returns a source that starts from a stored token (at least its
// refresh token) and refreshes it when needed.
func (o OIDC) Refresh(ctx context.Context, tok *oauth2.Token) (*OAuth2Source, error) {
	d, err := o.login(ctx)
	if err != nil {
		return nil, err
	}
	return o.source(o.config(d), tok), nil
}

func (o OIDC) ctx(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, o.client())
}

func (o OIDC) source(cfg *oauth2.Config, tok *oauth2.Token) *OAuth2Source {
	return &OAuth2Source{cfg: cfg, oidc: o, last: tok}
}

// OAuth2Source is a TokenSource over an OAuth 2 token that refreshes itself.
type OAuth2Source struct {
	cfg  *oauth2.Config
	oidc OIDC // its Issuer names it in errors, its HTTPClient refreshes

	// mu is held through a refresh too: one at a time, as an issuer may
	// rotate refresh tokens.
	mu   sync.Mutex
	last *oauth2.Token
	// OnRefresh, if set, is called with each new token (to store it).
	OnRefresh func(*oauth2.Token)
}

// Token returns a valid access token, refreshing it when it has expired;
// ctx bounds the refresh.
func (s *OAuth2Source) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	last := s.last
	if last.Valid() {
		s.mu.Unlock()
		return last.AccessToken, nil
	}
	tok, err := s.cfg.TokenSource(s.oidc.ctx(ctx), last).Token()
	if err != nil {
		s.mu.Unlock()
		return "", fmt.Errorf("refresh token at issuer %s: %w", s.oidc.Issuer, err)
	}
	s.last = tok
	cb := s.OnRefresh
	s.mu.Unlock()
	if cb != nil {
		cb(tok)
	}
	return tok.AccessToken, nil
}

// Current returns the latest token (for storing it).
func (s *OAuth2Source) Current() *oauth2.Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}
