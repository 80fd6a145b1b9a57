package devidp_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/devidp"
	"github.com/avxrm/rm/services/api"
)

// badToken is one way a token can be wrong, and a word the 401 must say.
type badToken struct {
	name, header, says string
}

// badTokens builds every rejected token against e's IdP. rotated is a token
// that was valid before the IdP rotated its key.
func badTokens(t *testing.T, e *env, good tokens, rotated string) []badToken {
	t.Helper()
	parts := strings.Split(good.AccessToken, ".")
	var claims map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	var hdr map[string]any
	raw, _ = base64.RawURLEncoding.DecodeString(parts[0])
	_ = json.Unmarshal(raw, &hdr)
	signed := func(change map[string]any) string {
		c := map[string]any{}
		for k, v := range claims {
			c[k] = v
		}
		for k, v := range change {
			c[k] = v
		}
		tok, err := e.idp.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + tok
	}
	b64 := func(v any) string {
		raw, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(raw)
	}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[len(sig)/2] ^= 0x01
	der, err := e.idp.PublicKeyDER()
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	hsInput := b64(map[string]any{"alg": "HS256", "typ": "JWT", "kid": hdr["kid"]}) + "." + parts[1]
	mac := hmac.New(sha256.New, pubPEM)
	mac.Write([]byte(hsInput))
	now := time.Now()
	return []badToken{
		{"no header", "", "no bearer token"},
		{"malformed", "Bearer not-a-jwt", "malformed"},
		{"not bearer", "Basic YWRtaW46YWRtaW4=", "malformed"},
		{"bad signature", "Bearer " + parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig), "bad signature"},
		{"alg none", "Bearer " + b64(map[string]any{"alg": "none", "typ": "JWT"}) + "." + parts[1] + ".", "unsigned"},
		{"HS256 with the public key", "Bearer " + hsInput + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), "HMAC"},
		{"expired", signed(map[string]any{"exp": now.Add(-time.Minute).Unix(), "iat": now.Add(-time.Hour).Unix(), "nbf": now.Add(-time.Hour).Unix()}), "expired"},
		{"wrong issuer", signed(map[string]any{"iss": "http://127.0.0.1:1/auth/realms/other"}), "wrong issuer"},
		{"wrong audience", signed(map[string]any{"aud": []string{"someone-else"}, "azp": "someone-else", "client_id": "someone-else"}), "wrong audience"},
		{"unknown kid after key rotation", "Bearer " + rotated, "bad signature"},
	}
}

// openAPIResponses maps "METHOD /path/{param}" to the documented statuses.
func openAPIResponses(t *testing.T, e *env) map[string][]string {
	t.Helper()
	r := e.must(http.StatusOK, "", http.MethodGet, v1+"/openapi.json", nil)
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for path, ops := range doc.Paths {
		for method, raw := range ops {
			var op struct {
				Responses map[string]json.RawMessage `json:"responses"`
			}
			if json.Unmarshal(raw, &op) != nil {
				continue
			}
			if !strings.HasPrefix(path, v1) {
				path = v1 + path
			}
			key := strings.ToUpper(method) + " " + path
			for code := range op.Responses {
				out[key] = append(out[key], code)
			}
		}
	}
	return out
}

var echoParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

// documentedKey is the document's key of an echo route.
func documentedKey(method, path string, docs map[string][]string) string {
	k := method + " " + echoParam.ReplaceAllString(path, "{$1}")
	if strings.HasSuffix(k, "/*") {
		last := regexp.MustCompile(`\{[^}]+\}$`)
		for d := range docs {
			if last.ReplaceAllString(d, "*") == k {
				return d
			}
		}
	}
	return k
}

// TestEveryRouteNeedsAValidToken: every route the router has (so none
// escapes), with every kind of bad token, answers 401 with an RFC 6750
// challenge and a problem naming the failed check; with the dev IdP's
// viewer, user and admin it answers 403 naming the missing role where the
// role does not suffice, and a documented status otherwise.
func TestEveryRouteNeedsAValidToken(t *testing.T) {
	e := start(t, devidp.Config{})
	oldAdmin := e.login("admin")
	e.must(http.StatusOK, bearer(oldAdmin), http.MethodGet, v1+"/queues", nil) // the API caches this key
	if err := e.idp.Rotate(); err != nil {
		t.Fatal(err)
	}
	admin, user, viewer := e.login("admin"), e.login("user"), e.login("viewer")
	// A token of the new key: the API fetches the key set again (unknown kid).
	e.must(http.StatusOK, bearer(admin), http.MethodGet, v1+"/queues", nil)

	// Fixtures: a queue, an application, a deployment and a job the user owns.
	e.must(http.StatusCreated, bearer(admin), http.MethodPost, v1+"/plugins", map[string]any{"name": "p1", "type": "simulated", "config": map[string]any{"run_seconds": 1}})
	e.must(http.StatusCreated, bearer(admin), http.MethodPost, v1+"/queues", map[string]any{"name": "q1"})
	app := e.must(http.StatusCreated, bearer(admin), http.MethodPost, v1+"/applications", map[string]any{"name": "sim", "version": "1", "image": "sim:1"}).obj(t)
	dep := e.must(http.StatusCreated, bearer(admin), http.MethodPost, v1+"/deployments", map[string]any{"name": "d1", "application_id": app["id"], "queue_id": "q1", "replicas": 1}).obj(t)
	job := e.must(http.StatusCreated, bearer(user), http.MethodPost, v1+"/jobs", map[string]any{"queue_id": "q1", "application": map[string]any{"id": app["id"]}, "worker_instances": 1}).obj(t)
	if o, _ := job["owner"].(map[string]any); o["username"] != "user" {
		t.Fatalf("job owner = %v, want the user", job["owner"])
	}
	params := map[string]string{
		"queue_id": "q1", "app_id": app["id"].(string), "plugin_id": "p1", "deployment_id": dep["id"].(string),
		"role": "worker", "index": "0", "sample_id": "s1",
	}
	concrete := func(path string) string {
		p := echoParam.ReplaceAllStringFunc(path, func(m string) string {
			name := m[1:]
			if name == "id" {
				if strings.HasPrefix(path, v1+"/jobs/") {
					return job["id"].(string)
				}
				return "none-1"
			}
			if v, ok := params[name]; ok {
				return v
			}
			return "x"
		})
		return strings.Replace(p, "*", "f.txt", 1)
	}
	body := func(method, path string) any {
		switch {
		case strings.Contains(path, "/artifacts/") && method == http.MethodPut:
			return "data"
		case method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch:
			return map[string]any{}
		}
		return nil
	}

	docs := openAPIResponses(t, e)
	bad := badTokens(t, e, admin, oldAdmin.AccessToken)
	rules := e.svc.Rules()
	// Deletes last, so that the fixtures stay for the other routes.
	slices.SortStableFunc(rules, func(a, b api.RouteRule) int {
		return boolInt(a.Method == http.MethodDelete) - boolInt(b.Method == http.MethodDelete)
	})
	checked := 0
	for _, r := range rules {
		if r.Open {
			continue
		}
		checked++
		path := concrete(r.Path)
		for _, b := range bad {
			got := e.do(b.header, r.Method, path, body(r.Method, r.Path))
			challenge := got.Header.Get("WWW-Authenticate")
			// No bearer token: no error code in the challenge (RFC 6750 3.1).
			noToken := !strings.HasPrefix(b.header, "Bearer ")
			if got.Status != http.StatusUnauthorized || !strings.HasPrefix(challenge, `Bearer realm="avxrm", `) ||
				strings.Contains(challenge, `error="invalid_token"`) == noToken || !strings.Contains(challenge, "resource_metadata=") {
				t.Errorf("%s %s with %s = %d (WWW-Authenticate %q) %s, want 401 with a Bearer challenge, error=\"invalid_token\" only for a token",
					r.Method, r.Path, b.name, got.Status, challenge, got.Body)
				continue
			}
			if ct := got.Header.Get("Content-Type"); ct != "application/problem+json" || !strings.Contains(string(got.Body), b.says) {
				t.Errorf("%s %s with %s: problem %s %s does not say %q", r.Method, r.Path, b.name, ct, got.Body, b.says)
			}
		}
		key := documentedKey(r.Method, r.Path, docs)
		documented, ok := docs[key]
		if !ok {
			t.Errorf("%s is routed but not in the OpenAPI document", key)
		}
		if !slices.Contains(documented, "401") || !slices.Contains(documented, "403") {
			t.Errorf("%s does not document 401 and 403: %v", key, documented)
		}
		for _, who := range []struct {
			name  string
			tk    tokens
			level int
		}{{"viewer", viewer, 1}, {"user", user, 2}, {"admin", admin, 3}} {
			got := e.do(bearer(who.tk), r.Method, path, body(r.Method, r.Path))
			if int(r.Level) > who.level {
				role := map[int]string{2: "rm-user", 3: "rm-admin"}[int(r.Level)]
				if got.Status != http.StatusForbidden || !strings.Contains(string(got.Body), role) {
					t.Errorf("%s %s as %s = %d %s, want 403 naming %s", r.Method, r.Path, who.name, got.Status, got.Body, role)
				}
				continue
			}
			if got.Status == http.StatusUnauthorized || got.Status == http.StatusForbidden ||
				!slices.Contains(documented, strconv.Itoa(got.Status)) {
				t.Errorf("%s %s as %s = %d %s, want one of the documented %v", r.Method, r.Path, who.name, got.Status, got.Body, documented)
			}
		}
	}
	if checked < 40 {
		t.Fatalf("only %d routes checked: the route list is not the router's", checked)
	}
	t.Logf("%d routes × %d bad tokens and 3 roles", checked, len(bad))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
