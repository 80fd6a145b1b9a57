// Package devidp is the development identity provider of `avxrm up
// --dev-idp`: an OpenID Connect provider (github.com/zitadel/oidc/v3's OP)
// on loopback that answers at the paths of the cluster's Keycloak, so the
// product documents' token flow works locally:
//
//	POST <base>/auth/realms/avx/protocol/openid-connect/token
//	     grant_type=password&client_id=avxrm&username=…&password=…&scope=offline_access
//
// It has three users, admin, user and viewer (roles rm-admin, rm-user,
// rm-viewer), whose passwords are random unless given and printed at start.
// It also serves the authorization code flow with PKCE, with a login page,
// for the web view's sign-in (redirect URI <loopback origin>/ui/callback),
// and the device authorization grant, with a page to enter the device's
// code and sign in, for `avxrm login` (device.go).
// It keeps everything in memory and is meant for nothing but development.
package devidp

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/rs/cors"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// RealmPath is the issuer's path, Keycloak's for the realm avx.
const RealmPath = "/auth/realms/avx"

// TokenPath is the token endpoint's path (Keycloak's).
const TokenPath = RealmPath + "/protocol/openid-connect/token"

const grantPassword oidc.GrantType = "password"

// User is one account of the dev IdP.
type User struct {
	Username string
	Password string
	Subject  string // if empty, a random id
	Roles    []string
	Groups   []string
}

// Config of the dev IdP. The zero value works.
type Config struct {
	// Addr is where to listen; it must be a loopback address. If empty, 127.0.0.1:0.
	Addr string
	// ClientID is the public client's id, and the tokens' audience. If empty, "avxrm".
	ClientID string
	// AccessTTL is an access token's life. If zero, 300s (Keycloak's default).
	AccessTTL time.Duration
	// RefreshTTL is a refresh token's life. If zero, 30 minutes.
	RefreshTTL time.Duration
	// Users are the accounts. If nil, admin, user and viewer with random passwords.
	Users []User
}

// IdP is a running dev identity provider.
type IdP struct {
	Issuer   string // <base>/auth/realms/avx
	TokenURL string // Issuer + /protocol/openid-connect/token
	Users    []User // with their passwords
	ClientID string

	st  *storage
	srv *http.Server
	ln  net.Listener
}

// DefaultUsers are admin, user and viewer with fresh random passwords; user
// is in the group "adas".
func DefaultUsers() []User {
	return []User{
		{Username: "admin", Password: password(), Roles: []string{"rm-admin"}},
		{Username: "user", Password: password(), Roles: []string{"rm-user"}, Groups: []string{"adas"}},
		{Username: "viewer", Password: password(), Roles: []string{"rm-viewer"}},
	}
}

func password() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Start listens on cfg.Addr and serves until ctx ends or Close is called.
func Start(ctx context.Context, cfg Config) (*IdP, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if host, _, err := net.SplitHostPort(cfg.Addr); err != nil || !isLoopback(host) {
		return nil, fmt.Errorf("dev IdP: %q is not a loopback address; the dev IdP must not be reachable from elsewhere", cfg.Addr)
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "avxrm"
	}
	if cfg.AccessTTL == 0 {
		cfg.AccessTTL = 300 * time.Second
	}
	if cfg.RefreshTTL == 0 {
		cfg.RefreshTTL = 30 * time.Minute
	}
	if cfg.Users == nil {
		cfg.Users = DefaultUsers()
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("dev IdP listen: %w", err)
	}
	key, err := newSigningKey()
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	p := &IdP{ClientID: cfg.ClientID, ln: ln}
	p.Issuer = "http://" + ln.Addr().String() + RealmPath
	p.TokenURL = p.Issuer + "/protocol/openid-connect/token"
	p.st = &storage{
		users: map[string]*User{}, client: &client{id: cfg.ClientID, accessTTL: cfg.AccessTTL, loginURL: p.Issuer + "/login"},
		key: key, refresh: map[string]*tokenRequest{}, authReqs: map[string]*authRequest{}, codes: map[string]string{}, devices: map[string]*deviceAuth{},
		accessTTL: cfg.AccessTTL, refreshTTL: cfg.RefreshTTL,
	}
	for _, u := range cfg.Users {
		if u.Subject == "" {
			u.Subject = randomID()
		}
		p.st.users[u.Subject] = &u
		p.Users = append(p.Users, u)
	}
	var cryptoKey [32]byte
	_, _ = rand.Read(cryptoKey[:])
	provider, err := op.NewProvider(&op.Config{
		CryptoKey: cryptoKey, GrantTypeRefreshToken: true, CodeMethodS256: true,
		SupportedScopes: []string{oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeOfflineAccess},
		DeviceAuthorization: op.DeviceAuthorizationConfig{Lifetime: 10 * time.Minute, PollInterval: time.Second,
			UserFormPath: DevicePath, UserCode: op.UserCodeBase20},
	}, p.st, op.StaticIssuer(p.Issuer),
		op.WithAllowInsecure(), op.WithCORSOptions(nil),
		op.WithCustomTokenEndpoint(op.NewEndpoint("protocol/openid-connect/token")),
		op.WithCustomDeviceAuthorizationEndpoint(op.NewEndpoint("protocol/openid-connect/auth/device")),
		op.WithCustomKeysEndpoint(op.NewEndpoint("protocol/openid-connect/certs")),
		op.WithCustomAuthEndpoint(op.NewEndpoint("protocol/openid-connect/auth")),
		op.WithCustomUserinfoEndpoint(op.NewEndpoint("protocol/openid-connect/userinfo")),
		op.WithCustomRevocationEndpoint(op.NewEndpoint("protocol/openid-connect/revoke")),
		op.WithCustomEndSessionEndpoint(op.NewEndpoint("protocol/openid-connect/logout")),
		op.WithCustomIntrospectionEndpoint(op.NewEndpoint("protocol/openid-connect/token/introspect")),
	)
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("dev IdP: %w", err)
	}
	mux := http.NewServeMux()
	opHandler := http.StripPrefix(RealmPath, provider)
	mux.Handle(RealmPath+"/", opHandler)
	mux.HandleFunc(RealmPath+"/login", p.login(provider))
	mux.HandleFunc(DevicePath, p.device)
	mux.HandleFunc("POST "+TokenPath, func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("grant_type") == string(grantPassword) {
			p.passwordGrant(w, r, provider)
			return
		}
		opHandler.ServeHTTP(w, r)
	})
	// The docs page (another origin) calls the token endpoint from the browser.
	h := cors.New(cors.Options{
		AllowOriginFunc: func(string) bool { return true },
		AllowedHeaders:  []string{"Authorization", "Content-Type", "Accept", "X-Requested-With"},
		AllowedMethods:  []string{http.MethodGet, http.MethodPost},
	}).Handler(mux)
	p.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	context.AfterFunc(ctx, p.Close)
	return p, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Close stops serving.
func (p *IdP) Close() { _ = p.srv.Close() }

// User returns the account named username.
func (p *IdP) User(username string) (User, bool) {
	i := slices.IndexFunc(p.Users, func(u User) bool { return u.Username == username })
	if i < 0 {
		return User{}, false
	}
	return p.Users[i], true
}

// passwordGrant serves grant_type=password (RFC 6749 section 4.3) as
// Keycloak does: a public client, the user's name and password, and an
// access token, refresh token and ID token in return.
func (p *IdP) passwordGrant(w http.ResponseWriter, r *http.Request, provider *op.Provider) {
	clientID := r.FormValue("client_id")
	if id, _, ok := r.BasicAuth(); ok {
		clientID = id
	}
	if clientID != p.ClientID {
		oauthError(w, http.StatusUnauthorized, "invalid_client", fmt.Sprintf("unknown client_id %q (the dev IdP's client is %q)", clientID, p.ClientID))
		return
	}
	user := p.check(r.FormValue("username"), r.FormValue("password"))
	if user == nil {
		oauthError(w, http.StatusUnauthorized, "invalid_grant", "Invalid user credentials")
		return
	}
	scopes := strings.Fields(r.FormValue("scope"))
	if !slices.Contains(scopes, oidc.ScopeOpenID) {
		scopes = append(scopes, oidc.ScopeOpenID)
	}
	req := &tokenRequest{subject: user.Subject, clientID: p.ClientID, scopes: scopes, audience: []string{p.ClientID}, authTime: time.Now()}
	ctx := op.ContextWithIssuer(r.Context(), p.Issuer)
	resp, err := op.CreateTokenResponse(ctx, req, p.st.client, provider, true, "", "")
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(resp)
}

// check returns the user whose name and password these are, or nil.
func (p *IdP) check(username, password string) *User {
	for _, u := range p.Users {
		if u.Username == username && u.Password == password && password != "" {
			return &u
		}
	}
	return nil
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

// Rotate replaces the signing key: tokens signed before no longer verify,
// and verifiers that cached the old key set must fetch the new one.
func (p *IdP) Rotate() error {
	k, err := newSigningKey()
	if err != nil {
		return err
	}
	p.st.mu.Lock()
	p.st.key = k
	p.st.mu.Unlock()
	return nil
}

// Sign signs claims with the current key, as the IdP signs its tokens; tests
// use it to make tokens that are well signed but wrong otherwise (expired,
// another issuer or audience).
func (p *IdP) Sign(claims map[string]any) (string, error) {
	p.st.mu.Lock()
	k := p.st.key
	p.st.mu.Unlock()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: k.key, KeyID: k.id}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	raw, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	sig, err := signer.Sign(raw)
	if err != nil {
		return "", err
	}
	return sig.CompactSerialize()
}

// PublicKeyDER is the current public key in PKIX DER, for tests of HMAC
// confusion (a token "signed" with HS256 using the public key as secret).
func (p *IdP) PublicKeyDER() ([]byte, error) {
	p.st.mu.Lock()
	k := p.st.key
	p.st.mu.Unlock()
	return x509.MarshalPKIXPublicKey(&k.key.PublicKey)
}
