package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{"RM_OIDC_ISSUER": " https://sso.example/auth/realms/avx ", "RM_OIDC_AUDIENCE": "rm", "RM_OIDC_ROLES_CLAIM": "roles, realm_access.roles",
		"RM_OIDC_UI_SCOPE": "  openid   profile "}
	c := ConfigFromEnv(func(k string) string { return env[k] })
	got := []string{c.Issuer, c.Audience, c.GroupsClaim, c.AdminRole, c.UserRole, c.ViewerRole, c.UIScope}
	want := []string{"https://sso.example/auth/realms/avx", "rm", "groups", "rm-admin", "rm-user", "rm-viewer", "openid profile"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ConfigFromEnv mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"roles", "realm_access.roles"}, c.RolesClaims); diff != "" {
		t.Errorf("roles claims (-want +got):\n%s", diff)
	}
	if d := ConfigFromEnv(func(string) string { return "" }); d.Enabled() || d.RolesClaims[1] != "resource_access.avxrm.roles" {
		t.Errorf("defaults: %+v", d)
	}
}

func TestMatches(t *testing.T) {
	p := &Principal{Subject: "s-1", Username: "alice", Roles: []string{"rm-user"}, Groups: []string{"/adas"}, Level: LevelUser}
	for list, want := range map[string]bool{
		"role:rm-user": true, "role:rm-admin": false, "group:adas": true, "group:other": false,
		"user:alice": true, "user:s-1": true, "user:bob": false, "alice": false,
	} {
		if got := p.Matches([]string{list}); got != want {
			t.Errorf("Matches(%q) = %v, want %v", list, got, want)
		}
	}
	admin := &Principal{Level: LevelAdmin}
	if !admin.Matches([]string{"user:nobody"}) {
		t.Error("an admin is not restricted by access lists")
	}
}

func TestValidEntry(t *testing.T) {
	for e, ok := range map[string]bool{"role:x": true, "group:a/b": true, "user:alice": true, "team:x": false, "role:": false, "alice": false} {
		if got := ValidEntry(e) == ""; got != ok {
			t.Errorf("ValidEntry(%q) valid = %v, want %v", e, got, ok)
		}
	}
}

func TestPeekRefusesWhatIsNotAJWT(t *testing.T) {
	for _, raw := range []string{"a.b", "a.b.c.d", "!!.e30.x", "e30.!!.x", "WzFd.e30.x"} {
		if _, _, err := peek(raw); err == nil {
			t.Errorf("peek(%q) accepted it", raw)
		}
	}
}

// TestChallengeOfAForgedIssuer: what a token says of itself (iss, alg) is
// quoted in the 401, but bounded, and the WWW-Authenticate header keeps to
// the characters RFC 6750 allows in error_description.
func TestChallengeOfAForgedIssuer(t *testing.T) {
	a := &Authenticator{cfg: Config{Issuer: "https://sso.example/realms/avx"}.withDefaults()}
	b64 := func(v any) string {
		raw, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(raw)
	}
	long := "https://evil.example/é\"\\\x01" + strings.Repeat("A", 20000)
	for name, tok := range map[string]string{
		"iss": b64(map[string]string{"alg": "RS256", "kid": "k"}) + "." + b64(map[string]string{"iss": long}) + ".c2ln",
		"alg": b64(map[string]string{"alg": long}) + "." + b64(map[string]string{"iss": "x"}) + ".c2ln",
	} {
		_, err := a.Authenticate(context.Background(), "Bearer "+tok)
		if err == nil || err.Status != http.StatusUnauthorized {
			t.Fatalf("%s: %+v, want 401", name, err)
		}
		if len(err.Detail) > 400 || !strings.Contains(err.Detail, "https://evil.example/") {
			t.Errorf("%s: detail of %d bytes, want the value quoted and cut: %.500s", name, len(err.Detail), err.Detail)
		}
		c := err.Challenge()
		desc := strings.TrimSuffix(strings.TrimPrefix(c[strings.Index(c, "error_description="):], `error_description="`), `"`)
		for _, r := range desc {
			if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
				t.Errorf("%s: error_description holds %q, outside RFC 6750's characters: %s", name, r, c)
				break
			}
		}
	}
}

// A request without a bearer token is challenged without an error code
// (RFC 6750 section 3.1): it presented no token that could be invalid. One
// with a bad token names invalid_token and why.
func TestChallengeWithoutAToken(t *testing.T) {
	a := &Authenticator{cfg: Config{Issuer: "https://sso.example/realms/avx"}.withDefaults()}
	for header, want := range map[string]string{
		"":                       `Bearer realm="avxrm"`,
		"Basic YWRtaW46YWRtaW4=": `Bearer realm="avxrm"`,
		"Bearer not-a-jwt":       `Bearer realm="avxrm", error="invalid_token", error_description="malformed token`,
		"Bearer ":                `Bearer realm="avxrm", error="invalid_token", error_description="malformed Authorization header`,
	} {
		_, err := a.Authenticate(context.Background(), header)
		if err == nil || err.Status != http.StatusUnauthorized {
			t.Fatalf("%q: %+v, want 401", header, err)
		}
		if c := err.Challenge(); !strings.HasPrefix(c, want) || want == `Bearer realm="avxrm"` && c != want {
			t.Errorf("%q: challenge %q, want %q…", header, c, want)
		}
	}
}
