package devidp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/devidp"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestDocumentFlow is the product documents' flow against the dev IdP: a
// password-grant token, POST /queues with it → 201; the refresh token gives
// a new access token; once that expires → 401.
func TestDocumentFlow(t *testing.T) {
	e := start(t, devidp.Config{AccessTTL: 3 * time.Second})
	admin, _ := e.idp.User("admin")
	code, tk := e.grant(url.Values{"grant_type": {"password"}, "client_id": {"avxrm"},
		"username": {"admin"}, "password": {admin.Password}, "scope": {"offline_access"}})
	if code != http.StatusOK || tk.AccessToken == "" || tk.RefreshToken == "" || tk.TokenType != "Bearer" || tk.ExpiresIn < 1 || tk.ExpiresIn > 3 {
		t.Fatalf("password grant = %d %+v, want a bearer access token, a refresh token and expires_in ≤ 3", code, tk)
	}
	if code, bad := e.grant(url.Values{"grant_type": {"password"}, "client_id": {"avxrm"}, "username": {"admin"}, "password": {"wrong"}}); code != http.StatusUnauthorized || bad.Error != "invalid_grant" {
		t.Errorf("wrong password = %d %+v, want 401 invalid_grant", code, bad)
	}
	e.must(http.StatusCreated, bearer(tk), http.MethodPost, v1+"/queues", map[string]any{"name": "from-the-docs"})

	code, next := e.grant(url.Values{"grant_type": {"refresh_token"}, "client_id": {"avxrm"}, "refresh_token": {tk.RefreshToken}})
	if code != http.StatusOK || next.AccessToken == "" || next.AccessToken == tk.AccessToken {
		t.Fatalf("refresh grant = %d %+v, want a new access token", code, next)
	}
	e.must(http.StatusOK, bearer(next), http.MethodGet, v1+"/queues/from-the-docs", nil)
	if code, _ := e.grant(url.Values{"grant_type": {"refresh_token"}, "client_id": {"avxrm"}, "refresh_token": {tk.RefreshToken}}); code == http.StatusOK {
		t.Errorf("a used refresh token gave tokens again")
	}

	time.Sleep(time.Duration(next.ExpiresIn+1) * time.Second) // the token's life, not a timed assertion
	r := e.must(http.StatusUnauthorized, bearer(next), http.MethodGet, v1+"/queues", nil)
	if !strings.Contains(string(r.Body), "expired") || !strings.Contains(r.Header.Get("WWW-Authenticate"), "expired") {
		t.Errorf("expired token: %s (WWW-Authenticate %q), want it to say expired", r.Body, r.Header.Get("WWW-Authenticate"))
	}

	// Where to log in, without a token (RFC 9728): the challenge points at
	// the metadata, which names the issuer.
	metadata := e.base + "/.well-known/oauth-protected-resource"
	if c := r.Header.Get("WWW-Authenticate"); !strings.HasSuffix(c, `, resource_metadata="`+metadata+`"`) {
		t.Errorf("WWW-Authenticate %q does not point at %s", c, metadata)
	}
	var m struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
	}
	if err := json.Unmarshal(e.must(http.StatusOK, "", http.MethodGet, "/.well-known/oauth-protected-resource", nil).Body, &m); err != nil ||
		m.Resource != e.base+v1 || len(m.AuthorizationServers) != 1 || m.AuthorizationServers[0] != e.idp.Issuer {
		t.Errorf("protected resource metadata %+v (%v), want resource %s and the issuer %s", m, err, e.base+v1, e.idp.Issuer)
	}
}

// TestQueueAccessAndOwnership: access.submit and access.read of a queue,
// ownership of jobs, and the SSE stream filtered to what the caller may read.
func TestQueueAccessAndOwnership(t *testing.T) {
	e := start(t, devidp.Config{})
	admin, user, viewer := bearer(e.login("admin")), bearer(e.login("user")), bearer(e.login("viewer"))
	e.must(http.StatusCreated, admin, http.MethodPost, v1+"/queues", map[string]any{"name": "open"})
	e.must(http.StatusCreated, admin, http.MethodPost, v1+"/queues", map[string]any{"name": "restricted",
		"access": map[string]any{"submit": []string{"user:admin"}, "read": []string{"role:rm-admin"}}})
	e.must(http.StatusCreated, admin, http.MethodPost, v1+"/queues", map[string]any{"name": "adas",
		"access": map[string]any{"submit": []string{"group:adas"}}})
	r := e.must(http.StatusUnprocessableEntity, admin, http.MethodPost, v1+"/queues", map[string]any{"name": "bad",
		"access": map[string]any{"submit": []string{"team:x"}}})
	if !strings.Contains(string(r.Body), "access.submit[0]") {
		t.Errorf("a bad access entry: %s, want the field named", r.Body)
	}
	app := e.must(http.StatusCreated, admin, http.MethodPost, v1+"/applications", map[string]any{"name": "sim", "version": "1", "image": "sim:1"}).obj(t)
	submit := func(token, queue string, want int) string {
		t.Helper()
		r := e.must(want, token, http.MethodPost, v1+"/jobs", map[string]any{"queue_id": queue, "application": map[string]any{"id": app["id"]}, "worker_instances": 1})
		if want != http.StatusCreated {
			return string(r.Body)
		}
		return r.obj(t)["id"].(string)
	}
	if body := submit(user, "restricted", http.StatusForbidden); !strings.Contains(body, "access.submit") {
		t.Errorf("user on restricted: %s, want the queue permission named", body)
	}
	if body := submit(viewer, "open", http.StatusForbidden); !strings.Contains(body, "rm-user") {
		t.Errorf("viewer submitting: %s, want rm-user named", body)
	}
	userJob := submit(user, "adas", http.StatusCreated) // the user is in group adas
	adminOpen := submit(admin, "open", http.StatusCreated)
	adminRestricted := submit(admin, "restricted", http.StatusCreated)

	ids := func(token, path string) map[string]bool {
		t.Helper()
		got := map[string]bool{}
		for _, it := range e.must(http.StatusOK, token, http.MethodGet, path, nil).obj(t)["items"].([]any) {
			got[it.(map[string]any)["id"].(string)] = true
		}
		return got
	}
	if got := ids(user, v1+"/jobs"); !got[userJob] || !got[adminOpen] || got[adminRestricted] {
		t.Errorf("user's GET /jobs = %v, want its own and the open queue's job, not the restricted one", got)
	}
	if got := ids(user, v1+"/queues/restricted/jobs"); len(got) != 0 {
		t.Errorf("user's GET /queues/restricted/jobs = %v, want none", got)
	}
	if got := ids(admin, v1+"/jobs"); len(got) != 3 {
		t.Errorf("admin's GET /jobs = %v, want all three", got)
	}
	e.must(http.StatusForbidden, user, http.MethodGet, v1+"/jobs/"+adminRestricted, nil)
	e.must(http.StatusForbidden, user, http.MethodGet, v1+"/jobs/"+adminRestricted+"/artifacts", nil)
	exp := e.must(http.StatusAccepted, admin, http.MethodPost, v1+"/jobs/"+adminRestricted+"/scenario-exports", map[string]any{}).obj(t)["id"].(string)
	e.must(http.StatusForbidden, user, http.MethodGet, v1+"/scenario-exports/"+exp, nil)
	e.must(http.StatusOK, admin, http.MethodGet, v1+"/scenario-exports/"+exp, nil)
	e.must(http.StatusOK, viewer, http.MethodGet, v1+"/jobs/"+adminOpen, nil)

	r = e.must(http.StatusForbidden, user, http.MethodPost, v1+"/jobs/"+adminOpen+"/cancel", nil)
	if !strings.Contains(string(r.Body), "belongs to admin") {
		t.Errorf("user cancelling admin's job: %s", r.Body)
	}
	e.must(http.StatusForbidden, viewer, http.MethodPost, v1+"/jobs/"+userJob+"/cancel", nil)
	// A job the user may not read: its owner is not told.
	for _, m := range []string{http.MethodPost + " /cancel", http.MethodDelete + " "} {
		method, suffix, _ := strings.Cut(m, " ")
		r = e.must(http.StatusForbidden, user, method, v1+"/jobs/"+adminRestricted+suffix, nil)
		if strings.Contains(string(r.Body), "belongs to") || !strings.Contains(string(r.Body), "access.read") {
			t.Errorf("user on a job of a queue it may not read, %s: %s, want access.read named, not the owner", m, r.Body)
		}
	}
	e.must(http.StatusAccepted, admin, http.MethodPost, v1+"/jobs/"+userJob+"/cancel", nil)
	marker := submit(admin, "open", http.StatusCreated)

	// The stream replays every stored event (Last-Event-ID 0) up to the marker.
	seen := func(token string) map[string]bool { return e.replayed(token, "type=rm.job.submitted", marker) }
	if got := seen(user); !got[userJob] || !got[adminOpen] || got[adminRestricted] {
		t.Errorf("user's stream saw %v, want its job and the open queue's, not the restricted one", got)
	}
	if got := seen(admin); !got[adminRestricted] {
		t.Errorf("admin's stream saw %v, want the restricted queue's job too", got)
	}
}

// TestJobToken: the job token minted at submission lets a worker upload
// its job's artifacts, nothing else, and only until the job is final.
func TestJobToken(t *testing.T) {
	e := start(t, devidp.Config{})
	admin, user := bearer(e.login("admin")), bearer(e.login("user"))
	e.must(http.StatusCreated, admin, http.MethodPost, v1+"/queues", map[string]any{"name": "open"})
	app := e.must(http.StatusCreated, admin, http.MethodPost, v1+"/applications", map[string]any{"name": "sim", "version": "1", "image": "sim:1"}).obj(t)
	job := func() string {
		return e.must(http.StatusCreated, user, http.MethodPost, v1+"/jobs", map[string]any{"queue_id": "open", "application": map[string]any{"id": app["id"]}, "worker_instances": 1}).obj(t)["id"].(string)
	}
	id, other := job(), job()
	r := e.must(http.StatusOK, user, http.MethodGet, v1+"/jobs/"+id, nil)
	if strings.Contains(string(r.Body), "job_token") || strings.Contains(string(r.Body), "eyJ") {
		t.Fatalf("the job token is in the job's representation: %s", r.Body)
	}
	tok := e.jobToken(id)
	e.must(http.StatusCreated, tok, http.MethodPut, v1+"/jobs/"+id+"/artifacts/scenarios/s-1/road.xodr", "<road/>")
	e.must(http.StatusCreated, tok, http.MethodPut, v1+"/jobs/"+id+"/artifacts/assets/net.bin?declaration=road-network", "bin")
	e.must(http.StatusForbidden, tok, http.MethodPut, v1+"/jobs/"+other+"/artifacts/assets/x.bin", "bin")
	if r := e.do(tok, http.MethodGet, v1+"/jobs/"+id+"/instances/worker/0/logs", nil); r.Status == http.StatusUnauthorized || r.Status == http.StatusForbidden {
		t.Errorf("log read with the job token = %d %s", r.Status, r.Body)
	}
	refused := 0
	for _, rr := range e.svc.Rules() {
		if rr.Open || rr.JobToken || rr.Self {
			continue
		}
		path := echoParam.ReplaceAllStringFunc(rr.Path, func(m string) string {
			if m == ":id" {
				return id
			}
			return "x"
		})
		if r := e.do(tok, rr.Method, strings.Replace(path, "*", "f", 1), nil); r.Status != http.StatusForbidden {
			t.Errorf("%s %s with a job token = %d %s, want 403", rr.Method, rr.Path, r.Status, r.Body)
		}
		refused++
	}
	if refused < 40 {
		t.Errorf("only %d routes tried", refused)
	}
	// The launcher records the end of the job; from then on the token is dead.
	e.succeeded(id)
	r = e.must(http.StatusUnauthorized, tok, http.MethodPut, v1+"/jobs/"+id+"/artifacts/assets/late.bin", "bin")
	if !strings.Contains(string(r.Body), "succeeded") {
		t.Errorf("upload after the end: %s", r.Body)
	}
}

// TestKeycloakShapedToken: a token as Keycloak issues it (aud "account",
// azp the client, roles under resource_access.<client>.roles, groups with a
// leading slash) is accepted with the roles it carries.
func TestKeycloakShapedToken(t *testing.T) {
	e := start(t, devidp.Config{})
	now := time.Now()
	sign := func(roles ...string) string {
		tok, err := e.idp.Sign(map[string]any{
			"iss": e.idp.Issuer, "sub": "kc-1", "aud": "account", "azp": "avxrm", "typ": "Bearer",
			"exp": now.Add(time.Minute).Unix(), "iat": now.Unix(), "preferred_username": "carol",
			"resource_access": map[string]any{"avxrm": map[string]any{"roles": roles}, "account": map[string]any{"roles": []string{"rm-admin"}}},
			"groups":          []string{"/adas"},
		})
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + tok
	}
	e.must(http.StatusCreated, sign("rm-admin"), http.MethodPost, v1+"/queues", map[string]any{"name": "kc",
		"access": map[string]any{"submit": []string{"group:adas"}}})
	// Roles of another client do not count.
	r := e.must(http.StatusForbidden, sign(), http.MethodGet, v1+"/queues", nil)
	if !strings.Contains(string(r.Body), "rm-viewer") {
		t.Errorf("no role: %s", r.Body)
	}
	app := e.must(http.StatusCreated, sign("rm-admin"), http.MethodPost, v1+"/applications", map[string]any{"name": "sim", "version": "1", "image": "sim:1"}).obj(t)
	job := e.must(http.StatusCreated, sign("rm-user"), http.MethodPost, v1+"/jobs", map[string]any{"queue_id": "kc", "application": map[string]any{"id": app["id"]}, "worker_instances": 1}).obj(t)
	if o, _ := job["owner"].(map[string]any); o["subject"] != "kc-1" || o["username"] != "carol" {
		t.Errorf("owner = %v, want kc-1/carol", job["owner"])
	}
}

// TestIDTokenIsNoAccessToken: the ID token of a login names the client
// (RM's audience) as its audience, so it passed as an access token with none
// of the user's roles; it is refused saying what to send, as is a Keycloak
// one (typ "ID"), while the access token of the same response is taken.
func TestIDTokenIsNoAccessToken(t *testing.T) {
	e := start(t, devidp.Config{})
	u, _ := e.idp.User("user")
	code, tk := e.grant(url.Values{"grant_type": {"password"}, "client_id": {"avxrm"},
		"username": {u.Username}, "password": {u.Password}, "scope": {"openid offline_access"}})
	if code != http.StatusOK || tk.IDToken == "" {
		t.Fatalf("password grant with openid = %d %+v, want an ID token", code, tk)
	}
	now := time.Now()
	keycloak, err := e.idp.Sign(map[string]any{"iss": e.idp.Issuer, "sub": "kc-1", "aud": "avxrm", "azp": "avxrm", "typ": "ID",
		"exp": now.Add(time.Minute).Unix(), "iat": now.Unix(), "preferred_username": "carol"})
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"the dev IdP's": tk.IDToken, "a Keycloak": keycloak} {
		r := e.must(http.StatusUnauthorized, "Bearer "+tok, http.MethodGet, v1+"/whoami", nil)
		if !strings.Contains(string(r.Body), "an ID token is not an access token") {
			t.Errorf("%s ID token: %s", name, r.Body)
		}
	}
	e.must(http.StatusOK, bearer(tk), http.MethodGet, v1+"/whoami", nil)
}

// TestIdempotencyKeysArePerCaller: the same Idempotency-Key and body from
// another user creates that user's own job instead of replaying the first.
func TestIdempotencyKeysArePerCaller(t *testing.T) {
	e := start(t, devidp.Config{})
	admin := bearer(e.login("admin"))
	e.must(http.StatusCreated, admin, http.MethodPost, v1+"/queues", map[string]any{"name": "open"})
	app := e.must(http.StatusCreated, admin, http.MethodPost, v1+"/applications", map[string]any{"name": "sim", "version": "1", "image": "sim:1"}).obj(t)
	body := map[string]any{"queue_id": "open", "application": map[string]any{"id": app["id"]}, "worker_instances": 1}
	submit := func(token string) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, e.base+v1+"/jobs", strings.NewReader(mustJSON(t, body)))
		req.Header.Set("Authorization", token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "same-key")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var j map[string]any
		_ = json.NewDecoder(res.Body).Decode(&j)
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("submit = %d %v", res.StatusCode, j)
		}
		return j
	}
	a, again, u := submit(admin), submit(admin), submit(bearer(e.login("user")))
	if a["id"] != again["id"] {
		t.Errorf("the same caller's retry made a new job: %v, %v", a["id"], again["id"])
	}
	if u["id"] == a["id"] || u["owner"].(map[string]any)["username"] != "user" {
		t.Errorf("another caller's request with the same key got %v (owner %v), want its own job", u["id"], u["owner"])
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// jobToken is the job token the API stored for job id's instances, as a
// bearer header.
func (e *env) jobToken(id string) string {
	e.t.Helper()
	var doc struct {
		Runtime struct {
			JobToken string `bson:"job_token"`
		} `bson:"runtime"`
	}
	if err := e.db.Collection("jobs").FindOne(context.Background(), bson.D{{Key: "_id", Value: id}}).Decode(&doc); err != nil {
		e.t.Fatal(err)
	}
	if doc.Runtime.JobToken == "" {
		e.t.Fatalf("no job token stored for job %s's instances", id)
	}
	return "Bearer " + doc.Runtime.JobToken
}

// succeeded records job id as succeeded, as the launcher would.
func (e *env) succeeded(id string) {
	e.t.Helper()
	if _, err := e.db.Collection("jobs").UpdateOne(context.Background(), bson.D{{Key: "_id", Value: id}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: "succeeded"}}}}); err != nil {
		e.t.Fatal(err)
	}
}

// TestTwoAuthorizationHeaders: a request with two Authorization headers is
// refused whichever comes first: a proxy in front may read the other one.
func TestTwoAuthorizationHeaders(t *testing.T) {
	e := start(t, devidp.Config{})
	admin, viewer := bearer(e.login("admin")), bearer(e.login("viewer"))
	for _, pair := range [][]string{{viewer, admin}, {admin, viewer}, {admin, admin}} {
		req, _ := http.NewRequest(http.MethodPost, e.base+v1+"/queues", strings.NewReader(`{"name":"two-headers"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header["Authorization"] = pair
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var p struct{ Detail string }
		_ = json.NewDecoder(res.Body).Decode(&p)
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized || !strings.Contains(p.Detail, "2 Authorization headers") ||
			!strings.Contains(res.Header.Get("WWW-Authenticate"), "2 Authorization headers") {
			t.Errorf("two Authorization headers = %d %q (%q), want 401 saying so", res.StatusCode, p.Detail, res.Header.Get("WWW-Authenticate"))
		}
	}
	e.must(http.StatusNotFound, admin, http.MethodGet, v1+"/queues/two-headers", nil)
}
