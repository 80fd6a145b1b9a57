package cli

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// whoami prints the caller as the server describes it: the user, access
// and token for an OIDC token, the job for a job token, and the queues.
func TestWhoamiPrints(t *testing.T) {
	answers := map[string]string{
		"user": `{"authenticated_by":"oidc","subject":"s-1","username":"alice","roles":["rm-user"],"groups":["adas"],"access":"user",
			"expires_at":"2099-12-05T05:00:00Z","queues":[{"id":"q-1","name":"Default","read":true,"submit":true},{"id":"q-2","name":"restricted","read":false,"submit":false}]}`,
		"job": `{"authenticated_by":"job_token","subject":"job:job-1","username":"job:job-1","roles":[],"groups":[],"access":"none",
			"job_id":"job-1","expires_at":"2020-01-01T00:00:00Z","queues":[]}`,
	}
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r.URL.RequestURI())
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(answers[r.Header.Get("Authorization")[len("Bearer "):]]))
	}))
	defer srv.Close()
	run := func(token string, args ...string) string {
		t.Helper()
		root := Root()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs(append([]string{"whoami", "--server", srv.URL, "--token", token}, args...))
		if err := root.Execute(); err != nil {
			t.Fatalf("whoami %v: %v", args, err)
		}
		return out.String()
	}
	got := run("user", "--queue", "Default")
	for _, want := range []string{
		"User:    alice (subject s-1)\n", "Access:  user (roles rm-user; groups adas)\n", "Token:   ends 2099-12-05T05:00:00Z (in ",
		"QUEUE       READ JOBS  SUBMIT\nDefault     yes        yes\nrestricted  no         no\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("whoami as a user printed:\n%s\nwant it to contain %q", got, want)
		}
	}
	if got := run("job"); got != "Job:     job-1 (its RM_JOB_TOKEN: its artifacts and logs only)\nToken:   ends 2020-01-01T00:00:00Z (ended)\n" {
		t.Errorf("whoami with a job token printed:\n%s", got)
	}
	if len(asked) != 2 || asked[0] != "/api/resources/v1/whoami?queue=Default" || asked[1] != "/api/resources/v1/whoami" {
		t.Errorf("requests %q", asked)
	}
}

// A 401 says how to log in; a 403 points at whoami.
func TestAuthErrorsSayWhatToDo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		if r.Header.Get("Authorization") == "" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"status":401,"title":"Unauthorized","detail":"no bearer token: send Authorization: Bearer <access token>"}`))
			return
		}
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"status":403,"title":"Forbidden","detail":"POST /api/resources/v1/queues needs role rm-admin; the token's roles are [\"rm-user\"]"}`))
	}))
	defer srv.Close()
	for token, want := range map[string]string{
		"":   "avxrm: 401 no bearer token: send Authorization: Bearer <access token> (log in with 'avxrm login', or give a token with --token or $RM_TOKEN)\n",
		"tk": "avxrm: 403 POST /api/resources/v1/queues needs role rm-admin; the token's roles are [\"rm-user\"] ('avxrm whoami' shows your roles and what you may do on each queue)\n",
	} {
		t.Setenv("RM_TOKEN", token)
		t.Setenv("HOME", t.TempDir())
		t.Setenv("XDG_CONFIG_HOME", t.TempDir())
		root := Root()
		root.SetOut(&bytes.Buffer{})
		root.SetErr(&bytes.Buffer{})
		root.SetArgs([]string{"queues", "create", "x", "--server", srv.URL})
		err := root.Execute()
		var msg bytes.Buffer
		if code := ExitCode(err, &msg); code != ExitFailed || msg.String() != want {
			t.Errorf("token %q: exit %d, %q; want 1, %q", token, code, msg.String(), want)
		}
	}
}
