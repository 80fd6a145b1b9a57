package devidp_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/devidp"
)

type whoami struct {
	AuthenticatedBy string     `json:"authenticated_by"`
	Subject         string     `json:"subject"`
	Username        string     `json:"username"`
	Roles           []string   `json:"roles"`
	Groups          []string   `json:"groups"`
	Access          string     `json:"access"`
	JobID           string     `json:"job_id"`
	ExpiresAt       *time.Time `json:"expires_at"`
	Queues          []struct {
		ID, Name     string
		Read, Submit bool
	} `json:"queues"`
}

// may is what w says of queue name: "read", "submit", both joined by "+",
// "-" for neither, "" if w does not list it.
func (w whoami) may(name string) string {
	for _, q := range w.Queues {
		if q.Name == name {
			switch {
			case q.Read && q.Submit:
				return "read+submit"
			case q.Read:
				return "read"
			case q.Submit:
				return "submit"
			}
			return "-"
		}
	}
	return ""
}

// TestWhoami: GET /whoami says who each kind of token stands for, its
// access, when it ends, and per queue what it may do, by the same checks
// the reads and submissions make (some rows are also tried for real).
func TestWhoami(t *testing.T) {
	e := start(t, devidp.Config{})
	adminTk, userTk := e.login("admin"), e.login("user")
	admin, user, viewer := bearer(adminTk), bearer(userTk), bearer(e.login("viewer"))
	e.must(http.StatusCreated, admin, http.MethodPost, v1+"/queues", map[string]any{"name": "open"})
	e.must(http.StatusCreated, admin, http.MethodPost, v1+"/queues", map[string]any{"name": "restricted",
		"access": map[string]any{"submit": []string{"user:admin"}, "read": []string{"role:rm-admin"}}})
	e.must(http.StatusCreated, admin, http.MethodPost, v1+"/queues", map[string]any{"name": "adas",
		"access": map[string]any{"submit": []string{"group:adas"}}})
	now := time.Now()
	noRole, err := e.idp.Sign(map[string]any{"iss": e.idp.Issuer, "sub": "nr-1", "aud": "avxrm", "typ": "Bearer",
		"exp": now.Add(time.Minute).Unix(), "iat": now.Unix(), "preferred_username": "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	ask := func(token, query string) whoami {
		t.Helper()
		var w whoami
		if err := json.Unmarshal(e.must(http.StatusOK, token, http.MethodGet, v1+"/whoami"+query, nil).Body, &w); err != nil {
			t.Fatal(err)
		}
		return w
	}

	u := ask(user, "")
	if u.AuthenticatedBy != "oidc" || u.Username != "user" || u.Access != "user" || !slices.Contains(u.Roles, "rm-user") ||
		!slices.Contains(u.Groups, "adas") || u.Subject == "" {
		t.Errorf("the user: %+v", u)
	}
	if u.ExpiresAt == nil || u.ExpiresAt.Sub(time.Unix(expOf(t, userTk.AccessToken), 0)).Abs() > time.Second {
		t.Errorf("the user's token ends at %v, want the token's exp %v", u.ExpiresAt, time.Unix(expOf(t, userTk.AccessToken), 0))
	}
	for who, want := range map[string]struct {
		w                      whoami
		access                 string
		open, restricted, adas string
	}{
		"admin":   {ask(admin, ""), "admin", "read+submit", "read+submit", "read+submit"},
		"user":    {u, "user", "read+submit", "-", "read+submit"},
		"viewer":  {ask(viewer, ""), "viewer", "read", "-", "read"},
		"no role": {ask("Bearer "+noRole, ""), "none", "-", "-", "-"},
	} {
		if got := [4]string{want.w.Access, want.w.may("open"), want.w.may("restricted"), want.w.may("adas")}; got != [4]string{want.access, want.open, want.restricted, want.adas} {
			t.Errorf("%s: access, open, restricted, adas = %q, want %q", who, got, [4]string{want.access, want.open, want.restricted, want.adas})
		}
	}
	// What it says holds: the user submits to adas, not to restricted, and
	// does not read restricted's jobs.
	app := e.must(http.StatusCreated, admin, http.MethodPost, v1+"/applications", map[string]any{"name": "sim", "version": "1", "image": "sim:1"}).obj(t)
	body := func(queue string) map[string]any {
		return map[string]any{"queue_id": queue, "application": map[string]any{"id": app["id"]}, "worker_instances": 1}
	}
	job := e.must(http.StatusCreated, user, http.MethodPost, v1+"/jobs", body("adas")).obj(t)["id"].(string)
	e.must(http.StatusForbidden, user, http.MethodPost, v1+"/jobs", body("restricted"))
	e.must(http.StatusForbidden, viewer, http.MethodPost, v1+"/jobs", body("open"))
	restrictedJob := e.must(http.StatusCreated, admin, http.MethodPost, v1+"/jobs", body("restricted")).obj(t)["id"].(string)
	e.must(http.StatusForbidden, user, http.MethodGet, v1+"/jobs/"+restrictedJob, nil)
	e.must(http.StatusForbidden, "Bearer "+noRole, http.MethodGet, v1+"/queues", nil)

	// One queue, by name or id; an unknown one is a 404.
	if w := ask(user, "?queue=restricted"); len(w.Queues) != 1 || w.may("restricted") != "-" {
		t.Errorf("?queue=restricted: %+v", w.Queues)
	}
	e.must(http.StatusNotFound, user, http.MethodGet, v1+"/whoami?queue=nothing", nil)

	// A job token: its job, no queues, and dead with the job.
	jt := e.jobToken(job)
	if w := ask(jt, ""); w.AuthenticatedBy != "job_token" || w.JobID != job || w.Access != "none" || len(w.Queues) != 0 || w.ExpiresAt == nil {
		t.Errorf("a job token: %+v", w)
	}
	if w := ask(jt, "?queue=open"); len(w.Queues) != 0 {
		t.Errorf("a job token asking about a queue: %+v", w.Queues)
	}
	e.succeeded(job)
	e.must(http.StatusUnauthorized, jt, http.MethodGet, v1+"/whoami", nil)
	e.must(http.StatusUnauthorized, "", http.MethodGet, v1+"/whoami", nil)
}

// expOf reads the exp claim of a JWT without verifying it.
func expOf(t *testing.T, jwt string) int64 {
	t.Helper()
	parts := strings.Split(jwt, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct {
		Exp int64 `json:"exp"`
	}
	if err == nil {
		err = json.Unmarshal(raw, &c)
	}
	if err != nil || c.Exp == 0 {
		t.Fatalf("no exp in %s: %v", raw, err)
	}
	return c.Exp
}
