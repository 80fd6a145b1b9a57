package auth

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{"RM_OIDC_ISSUER": " https://sso.example/auth/realms/avx ", "RM_OIDC_AUDIENCE": "rm", "RM_OIDC_ROLES_CLAIM": "roles, realm_access.roles"}
	c := ConfigFromEnv(func(k string) string { return env[k] })
	got := []string{c.Issuer, c.Audience, c.GroupsClaim, c.AdminRole, c.UserRole, c.ViewerRole}
	want := []string{"https://sso.example/auth/realms/avx", "rm", "groups", "rm-admin", "rm-user", "rm-viewer"}
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
