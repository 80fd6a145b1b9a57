package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// asymmetricAlgs are the signature algorithms accepted on access tokens:
// never "none", never HMAC (whose key would be the public key, which anyone
// can read from the JWKS).
var asymmetricAlgs = []string{
	oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512, oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA,
}

// Authenticator turns an Authorization header into a Principal.
type Authenticator struct {
	cfg      Config
	tokenURL string
	verifier *oidc.IDTokenVerifier
	jobs     *JobTokens
}

// New discovers the issuer (retrying for up to discoveryWait while it
// starts) and returns an Authenticator whose key set is fetched on first use
// and refetched when a token names a kid it does not hold (keySet). jobs, if not
// nil, verifies the API's own job tokens.
func New(ctx context.Context, cfg Config, jobs *JobTokens) (*Authenticator, error) {
	cfg = cfg.withDefaults()
	if !cfg.Enabled() {
		return nil, errors.New("auth: no issuer configured")
	}
	var prov *oidc.Provider
	var err, why error // why: the last failure before ctx ended, if it did
	start := time.Now()
	for {
		prov, err = oidc.NewProvider(oidc.ClientContext(ctx, cfg.HTTPClient), cfg.Issuer)
		if err != nil && ctx.Err() == nil {
			if why == nil { // else the start says nothing for up to discoveryWait
				cfg.Logger.Warn("waiting for the OIDC issuer to answer", "issuer", cfg.Issuer, "for_at_most", discoveryWait.String(), "err", err)
			}
			why = err
		}
		if err == nil || time.Since(start) > discoveryWait || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	if err != nil {
		if why == nil {
			why = err
		}
		// %v, not %w: the error is the issuer's, and callers that tell
		// network errors apart (avxrm's error line) must not take it for
		// their own server's.
		return nil, fmt.Errorf("auth: cannot discover the OIDC issuer (RM_OIDC_ISSUER %s) in %s: %v",
			cfg.Issuer, time.Since(start).Round(time.Second), why)
	}
	var meta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := prov.Claims(&meta); err != nil || meta.JWKSURI == "" {
		return nil, fmt.Errorf("auth: OIDC issuer %s names no jwks_uri (%v)", cfg.Issuer, err)
	}
	skew := cfg.ClockSkew
	v := oidc.NewVerifier(cfg.Issuer, newKeySet(meta.JWKSURI, cfg.HTTPClient, cfg.Now), &oidc.Config{
		SkipClientIDCheck:    true, // aud or azp, checked below
		SupportedSigningAlgs: asymmetricAlgs,
		Now:                  func() time.Time { return cfg.Now().Add(-skew) },
	})
	return &Authenticator{cfg: cfg, verifier: v, jobs: jobs, tokenURL: prov.Endpoint().TokenURL}, nil
}

// discoveryWait bounds how long New waits for the issuer to answer.
const discoveryWait = 30 * time.Second

// TokenURL is the issuer's token endpoint, from its discovery document.
func (a *Authenticator) TokenURL() string { return a.tokenURL }

// Config is the configuration in effect, defaults filled in.
func (a *Authenticator) Config() Config { return a.cfg }

// Until is when a stops accepting the token p came with: its exp plus the
// clock skew allowed. It is zero while auth is off (a nil a) and for a
// principal without an exp.
func (a *Authenticator) Until(p *Principal) time.Time {
	if a == nil || p == nil || p.ExpiresAt.IsZero() {
		return time.Time{}
	}
	return p.ExpiresAt.Add(a.cfg.ClockSkew)
}

// Authenticate checks header (the Authorization header's value) and returns
// who sent it, or a 401 Error saying which check failed.
func (a *Authenticator) Authenticate(ctx context.Context, header string) (*Principal, *Error) {
	if strings.TrimSpace(header) == "" {
		e := Unauthorized("no bearer token: send Authorization: Bearer <access token>")
		e.NoToken = true
		return nil, e
	}
	scheme, raw, _ := strings.Cut(strings.TrimSpace(header), " ")
	raw = strings.TrimSpace(raw)
	if !strings.EqualFold(scheme, "Bearer") {
		e := Unauthorized("malformed Authorization header: it must be \"Bearer <access token>\", not %s credentials", quoted(scheme))
		e.NoToken = true
		return nil, e
	}
	if raw == "" {
		return nil, Unauthorized("malformed Authorization header: it must be \"Bearer <access token>\"")
	}
	hdr, claims, err := peek(raw)
	if err != nil {
		return nil, Unauthorized("malformed token: %v", err)
	}
	switch alg := hdr.Alg; {
	case strings.EqualFold(alg, "none") || alg == "":
		return nil, Unauthorized("unsigned token (alg %s): tokens must be signed by the issuer", quoted(alg))
	case strings.HasPrefix(alg, "HS"):
		return nil, Unauthorized("alg %s: HMAC-signed tokens are not accepted, only the issuer's asymmetric keys", quoted(alg))
	case !slices.Contains(asymmetricAlgs, alg):
		return nil, Unauthorized("alg %s is not accepted", quoted(alg))
	}
	if a.jobs != nil && claims.Iss == JobIssuer {
		return a.jobs.verify(ctx, raw)
	}
	if claims.Iss != a.cfg.Issuer {
		return nil, Unauthorized("wrong issuer: the token's iss %s is not %q", quoted(claims.Iss), a.cfg.Issuer)
	}
	tok, err := a.verifier.Verify(ctx, raw)
	if err != nil {
		return nil, describe(err, hdr.Kid)
	}
	var all map[string]any
	if err := tok.Claims(&all); err != nil {
		return nil, Unauthorized("malformed token claims: %v", err)
	}
	if !slices.Contains(tok.Audience, a.cfg.Audience) && claims.Azp != a.cfg.Audience {
		return nil, Unauthorized("wrong audience: aud %q and azp %q do not name %q", tok.Audience, claims.Azp, a.cfg.Audience)
	}
	if idToken(all) {
		// Its audience is the client, which is RM's audience when the CLI
		// logs in: it would pass as an access token, with none of its roles.
		return nil, Unauthorized("an ID token is not an access token: send the access_token of the token response")
	}
	p := a.principal(tok.Subject, all)
	p.ExpiresAt = tok.Expiry
	return p, nil
}

// idToken says whether verified claims are an OpenID Connect ID token's:
// Keycloak marks them typ "ID", and an ID token issued with an access token
// carries that token's hash (at_hash), which no access token can carry.
func idToken(claims map[string]any) bool {
	typ, _ := claims["typ"].(string)
	_, atHash := claims["at_hash"]
	return strings.EqualFold(typ, "ID") || atHash
}

// quoted is v, a value an unverified token says of itself, quoted for a
// message and cut to 100 bytes: anyone can send any token.
func quoted(v string) string {
	const max = 100
	if len(v) <= max {
		return strconv.Quote(v)
	}
	return strconv.Quote(strings.ToValidUTF8(v[:max], "")) + "…"
}

// describe names the failed check of a go-oidc verification error.
func describe(err error, kid string) *Error {
	var exp *oidc.TokenExpiredError
	msg := err.Error()
	switch {
	case strings.Contains(msg, errKeysUnavailable.Error()):
		return &Error{Status: http.StatusServiceUnavailable, Detail: "cannot check the token now: " + strings.TrimPrefix(msg, "failed to verify signature: ")}
	case errors.As(err, &exp):
		return Unauthorized("token expired at %s", exp.Expiry.UTC().Format(time.RFC3339))
	case strings.Contains(msg, "nbf"):
		return Unauthorized("token not valid yet (nbf): %v", err)
	case strings.Contains(msg, "failed to verify signature"):
		return Unauthorized("bad signature: the token does not verify with the issuer's key %s (%v)", quoted(kid), err)
	case strings.Contains(msg, "malformed"):
		return Unauthorized("malformed token: %v", err)
	}
	return Unauthorized("invalid token: %v", err)
}

// principal reads who and which roles from verified claims.
func (a *Authenticator) principal(sub string, claims map[string]any) *Principal {
	p := &Principal{Subject: sub, Username: sub, roleNames: [3]string{a.cfg.ViewerRole, a.cfg.UserRole, a.cfg.AdminRole}}
	if u, ok := claims["preferred_username"].(string); ok && u != "" {
		p.Username = u
	}
	for _, path := range a.cfg.RolesClaims {
		p.Roles = append(p.Roles, stringList(lookup(claims, path))...)
	}
	p.Groups = stringList(lookup(claims, a.cfg.GroupsClaim))
	switch {
	case slices.Contains(p.Roles, a.cfg.AdminRole):
		p.Level = LevelAdmin
	case slices.Contains(p.Roles, a.cfg.UserRole):
		p.Level = LevelUser
	case slices.Contains(p.Roles, a.cfg.ViewerRole):
		p.Level = LevelViewer
	}
	return p
}

// lookup follows a dotted path through nested objects.
func lookup(m map[string]any, path string) any {
	var v any = m
	for _, k := range strings.Split(path, ".") {
		o, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = o[k]
	}
	return v
}

// stringList is v as a list of strings: a JSON array of strings, or one
// space- or comma-separated string.
func stringList(v any) []string {
	switch t := v.(type) {
	case []any:
		var out []string
		for _, e := range t {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	case string:
		return strings.FieldsFunc(t, func(r rune) bool { return r == ' ' || r == ',' })
	}
	return nil
}

type jwtHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

type peekClaims struct {
	Iss string `json:"iss"`
	Azp string `json:"azp"`
}

// peek decodes a JWT's header and a few claims without verifying anything,
// to say precisely what is wrong and to route job tokens.
func peek(raw string) (jwtHeader, peekClaims, error) {
	var h jwtHeader
	var c peekClaims
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return h, c, fmt.Errorf("not a JWT: %d dot-separated parts, want 3", len(parts))
	}
	for i, dst := range []any{&h, &c} {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[i], "="))
		if err != nil {
			return h, c, fmt.Errorf("part %d is not base64url: %v", i+1, err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			return h, c, fmt.Errorf("part %d is not a JSON object: %v", i+1, err)
		}
	}
	return h, c, nil
}
