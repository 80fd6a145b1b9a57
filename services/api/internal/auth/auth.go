// Package auth decides who a request comes from and what it may do: it
// verifies OIDC bearer tokens (go-oidc: discovery from the issuer, JWKS
// fetched and refetched on an unknown kid), reads roles and groups from their
// claims, matches queue access lists, and mints and verifies the API's own
// job tokens (RM_JOB_TOKEN) signed with a key published on the API's JWKS
// endpoint. It knows nothing of routes or storage layouts: package httpapi
// maps operations to the level they need.
package auth

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Config of authentication. The zero value (no Issuer) means auth is off.
type Config struct {
	// Issuer is the OIDC issuer URL (RM_OIDC_ISSUER). If empty, auth is off
	// and every request acts as an administrator.
	Issuer string
	// Audience is the accepted "aud" (or "azp", for Keycloak tokens whose
	// aud is "account") (RM_OIDC_AUDIENCE). If empty, "avxrm".
	Audience string
	// RolesClaims are dotted claim paths holding role lists
	// (RM_OIDC_ROLES_CLAIM, comma-separated). If empty, Keycloak's
	// realm_access.roles and resource_access.<Audience>.roles.
	RolesClaims []string
	// GroupsClaim is the claim holding groups (RM_OIDC_GROUPS_CLAIM). If empty, "groups".
	GroupsClaim string
	// AdminRole, UserRole and ViewerRole name the three roles
	// (RM_OIDC_ADMIN_ROLE, RM_OIDC_USER_ROLE, RM_OIDC_VIEWER_ROLE). If empty,
	// rm-admin, rm-user and rm-viewer.
	AdminRole, UserRole, ViewerRole string
	// UIClientID is the public client the web view signs users in with
	// (authorization code with PKCE) (RM_OIDC_UI_CLIENT_ID). If empty,
	// Audience: its tokens then carry it as aud or azp.
	UIClientID string
	// UIScope is the scope the web view asks for (RM_OIDC_UI_SCOPE). If
	// empty, "openid profile", and offline_access when the issuer's
	// discovery document lists it (for a refresh token: zitadel and the
	// dev IdP give one only then; on Keycloak it makes an offline token,
	// which outlives the user's SSO session: set "openid profile" there to
	// keep the session's).
	UIScope string
	// ClockSkew is how far past "exp" a token is still accepted. If zero, 30s.
	ClockSkew time.Duration
	// JobTokenTTL bounds a job token's life; it also ends when the job is
	// final. If zero, 7 days.
	JobTokenTTL time.Duration
	// HTTPClient fetches discovery and keys. If nil, one with a 10s timeout.
	HTTPClient *http.Client
	// Logger is told once when New goes on waiting for an issuer that does
	// not answer (for up to 30 s). If nil, slog.Default().
	Logger *slog.Logger
	// Now is the clock of expiry checks. If nil, time.Now.
	Now func() time.Time
}

// Enabled reports whether requests must carry a token.
func (c Config) Enabled() bool { return c.Issuer != "" }

// ConfigFromEnv reads the RM_OIDC_* variables through getenv.
func ConfigFromEnv(getenv func(string) string) Config {
	c := Config{
		Issuer:      strings.TrimSpace(getenv("RM_OIDC_ISSUER")),
		Audience:    getenv("RM_OIDC_AUDIENCE"),
		GroupsClaim: getenv("RM_OIDC_GROUPS_CLAIM"),
		AdminRole:   getenv("RM_OIDC_ADMIN_ROLE"),
		UserRole:    getenv("RM_OIDC_USER_ROLE"),
		ViewerRole:  getenv("RM_OIDC_VIEWER_ROLE"),
		UIClientID:  getenv("RM_OIDC_UI_CLIENT_ID"),
		UIScope:     strings.Join(strings.Fields(getenv("RM_OIDC_UI_SCOPE")), " "),
	}
	for _, p := range strings.Split(getenv("RM_OIDC_ROLES_CLAIM"), ",") {
		if p = strings.TrimSpace(p); p != "" {
			c.RolesClaims = append(c.RolesClaims, p)
		}
	}
	return c.withDefaults()
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Audience == "" {
		c.Audience = "avxrm"
	}
	if len(c.RolesClaims) == 0 {
		c.RolesClaims = []string{"realm_access.roles", "resource_access." + c.Audience + ".roles"}
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = "groups"
	}
	if c.UIClientID == "" {
		c.UIClientID = c.Audience
	}
	if c.AdminRole == "" {
		c.AdminRole = "rm-admin"
	}
	if c.UserRole == "" {
		c.UserRole = "rm-user"
	}
	if c.ViewerRole == "" {
		c.ViewerRole = "rm-viewer"
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = 30 * time.Second
	}
	if c.JobTokenTTL == 0 {
		c.JobTokenTTL = 7 * 24 * time.Hour
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Level is what a caller may do in general; queue access lists and
// ownership narrow it per resource.
type Level int

const (
	LevelNone   Level = iota // a valid token without any of the three roles
	LevelViewer              // reads
	LevelUser                // reads, submits, acts on its own jobs
	LevelAdmin               // everything
)

func (l Level) String() string {
	return [...]string{"none", "viewer", "user", "admin"}[l]
}

// Principal is who a request comes from.
type Principal struct {
	Subject  string   // "sub"
	Username string   // "preferred_username", else the subject
	Roles    []string // every role found in the roles claims
	Groups   []string
	Level    Level
	// JobID is set for a job token: it may upload that job's artifacts and
	// read its logs, nothing else.
	JobID string
	// ExpiresAt is when the token ends ("exp"); zero while auth is off.
	ExpiresAt time.Time
	// roleNames are the configured names, for messages.
	roleNames [3]string
}

// Admin is the principal of every request while auth is off.
var Admin = &Principal{Subject: "anonymous", Username: "anonymous", Level: LevelAdmin}

// RoleFor names the role that grants l, for 403 messages.
func (p *Principal) RoleFor(l Level) string {
	if l < LevelViewer || p.roleNames[0] == "" {
		return [...]string{"", "rm-viewer", "rm-user", "rm-admin"}[l]
	}
	return p.roleNames[l-1]
}

// Matches reports whether an access list names p: "role:<name>",
// "group:<name>" or "user:<preferred_username or subject>". Administrators
// match every list.
func (p *Principal) Matches(list []string) bool {
	if p.Level == LevelAdmin {
		return true
	}
	for _, e := range list {
		kind, name, _ := strings.Cut(e, ":")
		switch kind {
		case "role":
			if slices.Contains(p.Roles, name) {
				return true
			}
		case "group":
			if slices.Contains(p.Groups, name) || slices.Contains(p.Groups, "/"+name) {
				return true
			}
		case "user":
			if name == p.Username || name == p.Subject {
				return true
			}
		}
	}
	return false
}

// ValidEntry reports why an access list entry is malformed, or "" if it is not.
func ValidEntry(e string) string {
	kind, name, ok := strings.Cut(e, ":")
	if !ok || name == "" || len(e) > 256 {
		return fmt.Sprintf("%q is not role:<name>, group:<name> or user:<name>", e)
	}
	switch kind {
	case "role", "group", "user":
		return ""
	}
	return fmt.Sprintf("%q: the kind is role, group or user, not %q", e, kind)
}

type ctxKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// From returns the principal of ctx; without one (auth off, or a call from
// inside the process) it is Admin.
func From(ctx context.Context) *Principal {
	if p, ok := ctx.Value(ctxKey{}).(*Principal); ok {
		return p
	}
	return Admin
}

// Error is a refused request: 401 (the token), 403 (the permission) or 503
// (the issuer's keys cannot be fetched, so no token can be checked).
type Error struct {
	Status int
	// Detail says which check failed; it is the problem's detail and, for a
	// 401, the error_description of WWW-Authenticate.
	Detail string
	// NoToken marks a 401 of a request that sent no bearer token (none, or
	// another scheme's credentials): its challenge names no error.
	NoToken bool
}

func (e *Error) Error() string { return e.Detail }

// Challenge is the WWW-Authenticate value of a 401 (RFC 6750 section 3).
// A request without a bearer token gets no error code or description, as
// section 3.1 asks: it did not present a token that could be invalid.
func (e *Error) Challenge() string {
	if e.NoToken {
		return `Bearer realm="avxrm"`
	}
	return `Bearer realm="avxrm", error="invalid_token", error_description="` + description(e.Detail) + `"`
}

// description is detail in the characters RFC 6750 allows in
// error_description (printable ASCII but " and \): a double quote becomes
// a single one, anything else outside them '?'.
func description(detail string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '"':
			return '\''
		case r < 0x20 || r > 0x7e || r == '\\':
			return '?'
		}
		return r
	}, detail)
}

// Unauthorized is a 401 with detail.
func Unauthorized(format string, args ...any) *Error {
	return &Error{Status: http.StatusUnauthorized, Detail: fmt.Sprintf(format, args...)}
}

// Forbidden is a 403 with detail.
func Forbidden(format string, args ...any) *Error {
	return &Error{Status: http.StatusForbidden, Detail: fmt.Sprintf(format, args...)}
}

// UIClient is the web view's client id, defaults applied.
func (c Config) UIClient() string { return c.withDefaults().UIClientID }
