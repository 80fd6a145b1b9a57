package devidp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"net/url"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// storage is the OP's state, in memory: users, the one client, refresh
// tokens, sign-ins under way (authorization code flow, login.go; devices,
// device.go) and the signing key. The password grant is served by passwordGrant in front of the
// OP, and every other grant by the OP itself.
type storage struct {
	mu         sync.Mutex
	users      map[string]*User // by subject
	client     *client
	key        *signingKey
	refresh    map[string]*tokenRequest // by refresh token
	authReqs   map[string]*authRequest  // by id
	codes      map[string]string        // authorization code → auth request id
	devices    map[string]*deviceAuth   // device authorizations under way, by device code (device.go)
	accessTTL  time.Duration
	refreshTTL time.Duration
}

var _ op.Storage = (*storage)(nil)

// tokenRequest is one grant: a password login or the refresh token it
// produced. It is an op.RefreshTokenRequest so that the OP's own refresh
// grant (and op.CreateTokenResponse for the password grant) can use it.
type tokenRequest struct {
	subject  string
	clientID string
	scopes   []string
	audience []string
	authTime time.Time
	expires  time.Time
}

func (r *tokenRequest) GetAMR() []string                 { return []string{"pwd"} }
func (r *tokenRequest) GetAudience() []string            { return r.audience }
func (r *tokenRequest) GetAuthTime() time.Time           { return r.authTime }
func (r *tokenRequest) GetClientID() string              { return r.clientID }
func (r *tokenRequest) GetScopes() []string              { return r.scopes }
func (r *tokenRequest) GetSubject() string               { return r.subject }
func (r *tokenRequest) SetCurrentScopes(scopes []string) { r.scopes = scopes }

type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func newSigningKey() (*signingKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return &signingKey{id: randomID(), key: k}, nil
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

type publicKey struct{ *signingKey }

func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return &k.key.PublicKey }

func randomID() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *storage) user(subject string) *User {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users[subject]
}

func (s *storage) CreateAccessToken(context.Context, op.TokenRequest) (string, time.Time, error) {
	return randomID(), time.Now().Add(s.accessTTL), nil
}

// CreateAccessAndRefreshTokens issues a new refresh token for request and
// retires current (refresh tokens rotate, as Keycloak's do by default).
func (s *storage) CreateAccessAndRefreshTokens(_ context.Context, request op.TokenRequest, current string) (string, string, time.Time, error) {
	var r *tokenRequest
	switch req := request.(type) {
	case *tokenRequest:
		r = req
	case *authRequest: // the code of an authorization code flow
		r = req.tokenRequest()
	case *op.DeviceAuthorizationState: // a device the user signed in (device.go)
		r = &tokenRequest{subject: req.Subject, clientID: req.ClientID, scopes: req.Scopes, audience: req.GetAudience(), authTime: req.AuthTime}
	default:
		return "", "", time.Time{}, errors.New("unexpected token request")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if current != "" {
		if _, ok := s.refresh[current]; !ok {
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh token unknown or used")
		}
		delete(s.refresh, current)
	}
	next := *r
	next.expires = time.Now().Add(s.refreshTTL)
	tok := randomID()
	s.refresh[tok] = &next
	return randomID(), tok, time.Now().Add(s.accessTTL), nil
}

func (s *storage) TokenRequestByRefreshToken(_ context.Context, token string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.refresh[token]
	if !ok || time.Now().After(r.expires) {
		return nil, oidc.ErrInvalidGrant().WithDescription("refresh token unknown, used or expired")
	}
	c := *r
	return &c, nil
}

func (s *storage) TerminateSession(context.Context, string, string) error { return nil }

func (s *storage) RevokeToken(_ context.Context, token, _, _ string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.refresh, token)
	return nil
}

func (s *storage) GetRefreshTokenInfo(_ context.Context, _ string, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.refresh[token]; ok {
		return r.subject, token, nil
	}
	return "", "", op.ErrInvalidRefreshToken
}

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.key, nil
}

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

// KeySet publishes the current key only: after a rotation, tokens signed
// with the old one no longer verify.
func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return []op.Key{publicKey{s.key}}, nil
}

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if id != s.client.id {
		return nil, errors.New("unknown client " + id)
	}
	return s.client, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, _ string) error {
	if id != s.client.id {
		return errors.New("unknown client " + id)
	}
	return nil // a public client, as a CLI or the docs page is
}

func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, r op.IDTokenRequest, _ []string) error {
	s.fillUserinfo(info, r.GetSubject())
	return nil
}

func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, _, subject, _ string) error {
	s.fillUserinfo(info, subject)
	return nil
}

func (s *storage) fillUserinfo(info *oidc.UserInfo, subject string) {
	info.Subject = subject
	if u := s.user(subject); u != nil {
		info.PreferredUsername = u.Username
		info.Name = u.Username
	}
}

func (s *storage) SetIntrospectionFromToken(_ context.Context, resp *oidc.IntrospectionResponse, _, subject, clientID string) error {
	resp.Subject, resp.ClientID, resp.Active = subject, clientID, true
	if u := s.user(subject); u != nil {
		resp.Username = u.Username
	}
	return nil
}

// GetPrivateClaimsFromScopes puts Keycloak's claims in access tokens:
// preferred_username, realm_access.roles and groups.
func (s *storage) GetPrivateClaimsFromScopes(_ context.Context, subject, _ string, _ []string) (map[string]any, error) {
	u := s.user(subject)
	if u == nil {
		return nil, errors.New("unknown user " + subject)
	}
	return map[string]any{
		"preferred_username": u.Username,
		"realm_access":       map[string]any{"roles": u.Roles},
		"groups":             u.Groups,
		"typ":                "Bearer",
	}, nil
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("JWT profile grants are not offered")
}

func (s *storage) ValidateJWTProfileScopes(_ context.Context, _ string, scopes []string) ([]string, error) {
	return scopes, nil
}

func (s *storage) Health(context.Context) error { return nil }

// client is the one public client (client_id RM's audience, no secret).
type client struct {
	id        string
	accessTTL time.Duration
	loginURL  string // the login page; ?id=<auth request> is appended
}

var _ op.Client = (*client)(nil)

func (c *client) GetID() string { return c.id }

// RedirectURIs are the web view's sign-in callback on loopback; for a
// native client the OP ignores the port of a loopback redirect (RFC 8252).
func (c *client) RedirectURIs() []string {
	return []string{"http://127.0.0.1/ui/callback", "http://localhost/ui/callback", "http://[::1]/ui/callback"}
}
func (c *client) PostLogoutRedirectURIs() []string    { return nil }
func (c *client) ApplicationType() op.ApplicationType { return op.ApplicationTypeNative }
func (c *client) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodNone }
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken, oidc.GrantTypeDeviceCode, grantPassword}
}
func (c *client) LoginURL(id string) string            { return c.loginURL + "?id=" + url.QueryEscape(id) }
func (c *client) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeJWT }
func (c *client) IDTokenLifetime() time.Duration       { return c.accessTTL }
func (c *client) DevMode() bool                        { return true }
func (c *client) IsScopeAllowed(string) bool           { return true }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *client) ClockSkew() time.Duration             { return 0 }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
