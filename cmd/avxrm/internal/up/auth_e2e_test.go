package up_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/up"
	"github.com/nats-io/nats.go"
)

// uploaderScript: each worker uploads an artifact with its RM_JOB_TOKEN,
// checks that the token is refused elsewhere, and leaves the token for the
// test to try once the job has ended.
const uploaderScript = `[ "$RM_ROLE" = worker ] || exit 0
curl -sf -X PUT -H "Authorization: Bearer $RM_JOB_TOKEN" --data-binary "from worker $RM_INSTANCE_INDEX" \
  "$RM_API_URL/api/resources/v1/jobs/$RM_JOB_ID/artifacts/assets/w$RM_INSTANCE_INDEX.txt" || exit 3
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $RM_JOB_TOKEN" "$RM_API_URL/api/resources/v1/queues")
[ "$code" = 403 ] || exit 4
printf %s "$RM_JOB_TOKEN" > "$TOKEN_DIR/token"`

// TestAuthEndToEnd runs `avxrm up --dev-idp`: the documents' token flow,
// a worker (a local process) uploading with its job token, the token dead
// once the job ends, and the embedded NATS closed to anonymous clients.
func TestAuthEndToEnd(t *testing.T) {
	sys := startSystemWith(t, "--dev-idp", "--dev-idp-addr", "127.0.0.1:0")
	if sys.DevIdP == nil {
		t.Fatal("no dev IdP")
	}

	// NATS: an anonymous client can neither publish to nor read RM_EVENTS.
	if nc, err := nats.Connect(sys.NATSURL); err == nil {
		nc.Close()
		t.Fatal("an anonymous client connected to the embedded NATS while auth is on")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Errorf("anonymous NATS connect: %v, want an authorization error", err)
	}

	token := func(username string) string {
		t.Helper()
		u, _ := sys.DevIdP.User(username)
		res, err := http.PostForm(sys.DevIdP.TokenURL, url.Values{"grant_type": {"password"}, "client_id": {"avxrm"},
			"username": {u.Username}, "password": {u.Password}, "scope": {"offline_access"}})
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var tk struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.NewDecoder(res.Body).Decode(&tk); err != nil || tk.AccessToken == "" {
			t.Fatalf("token for %s: %d %v", username, res.StatusCode, err)
		}
		return "Bearer " + tk.AccessToken
	}
	base := "http://" + sys.HTTPAddr + "/api/resources/v1"
	call := func(auth, method, path string, body any, want int) map[string]any {
		t.Helper()
		var rd io.Reader
		switch b := body.(type) {
		case string:
			rd = strings.NewReader(b)
		case nil:
		default:
			raw, _ := json.Marshal(b)
			rd = strings.NewReader(string(raw))
		}
		req, _ := http.NewRequest(method, base+path, rd)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if rd != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		if res.StatusCode != want {
			t.Fatalf("%s %s = %d %s, want %d", method, path, res.StatusCode, raw, want)
		}
		var out map[string]any
		_ = json.Unmarshal(raw, &out)
		return out
	}
	admin, user := token("admin"), token("user")
	call("", http.MethodGet, "/queues", nil, http.StatusUnauthorized)
	// The build is open, as /healthz is: clients check it before they log in.
	if res, err := http.Get("http://" + sys.HTTPAddr + "/version"); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /version without a token: %v %v, want 200", res, err)
	} else {
		res.Body.Close()
	}
	call(admin, http.MethodPost, "/queues", map[string]any{"name": "work"}, http.StatusCreated)
	app := call(admin, http.MethodPost, "/applications", map[string]any{"name": "uploader", "version": "1", "image": "local",
		"command": []string{"/bin/sh", "-c", uploaderScript}}, http.StatusCreated)
	dir := t.TempDir()
	job := call(user, http.MethodPost, "/jobs", map[string]any{"queue_id": "work", "application": map[string]any{"id": app["id"]},
		"worker_instances": 2, "environment_variables": map[string]string{"TOKEN_DIR": dir}}, http.StatusCreated)
	id := job["id"].(string)
	deadline := time.Now().Add(60 * time.Second)
	for {
		j := call(user, http.MethodGet, "/jobs/"+id, nil, http.StatusOK)
		if j["status"] == "succeeded" {
			break
		}
		if j["status"] == "failed" || j["status"] == "cancelled" || time.Now().After(deadline) {
			t.Fatalf("job %s: %v %v", id, j["status"], j["conditions"])
		}
		time.Sleep(100 * time.Millisecond)
	}
	arts := call(user, http.MethodGet, "/jobs/"+id+"/artifacts", nil, http.StatusOK)["items"].([]any)
	if len(arts) != 2 {
		t.Fatalf("artifacts = %v, want one per worker", arts)
	}
	jobToken, err := os.ReadFile(filepath.Join(dir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	out := call("Bearer "+string(jobToken), http.MethodPut, "/jobs/"+id+"/artifacts/assets/late.txt", "late", http.StatusUnauthorized)
	if !strings.Contains(out["detail"].(string), "succeeded") {
		t.Errorf("upload after the end: %v", out)
	}

	// Job arrays: submitting one needs what submitting its job to the queue
	// needs; only its owner (or rm-admin) may cancel it.
	call(admin, http.MethodPost, "/queues", map[string]any{"name": "closed", "access": map[string]any{"submit": []string{"user:admin"}}}, http.StatusCreated)
	array := func(queue string) map[string]any {
		return map[string]any{"job": map[string]any{"queue_id": queue, "application": map[string]any{"id": app["id"]}, "worker_instances": 1,
			"environment_variables": map[string]string{"TOKEN_DIR": t.TempDir()}}, "count": 3, "max_parallel": 1}
	}
	viewer := token("viewer")
	call(viewer, http.MethodPost, "/job-arrays", array("work"), http.StatusForbidden)
	call(user, http.MethodPost, "/job-arrays", array("closed"), http.StatusForbidden)
	created := call(user, http.MethodPost, "/job-arrays", array("work"), http.StatusCreated)
	if owner, _ := created["owner"].(map[string]any); owner["username"] != "user" {
		t.Errorf("array owner %v, want user", created["owner"])
	}
	arrID := created["id"].(string)
	call(viewer, http.MethodPost, "/job-arrays/"+arrID+"/cancel", nil, http.StatusForbidden)
	call(viewer, http.MethodGet, "/job-arrays/"+arrID, nil, http.StatusOK)
	call(user, http.MethodPost, "/job-arrays/"+arrID+"/cancel", nil, http.StatusAccepted)
}

// TestRefusesOpenAPIWithoutAuth: without an issuer, the API listens on
// loopback only, unless RM_AUTH=off says that is meant.
func TestRefusesOpenAPIWithoutAuth(t *testing.T) {
	cfg, err := up.Load([]string{"--data-dir", t.TempDir(), "--http-addr", "0.0.0.0:0"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	_, err = up.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "RM_AUTH=off") {
		t.Fatalf("Start on 0.0.0.0 without auth = %v, want a refusal naming RM_AUTH=off", err)
	}
	cfg, err = up.Load([]string{"--data-dir", t.TempDir(), "--http-addr", "0.0.0.0:0"}, func(k string) string {
		return map[string]string{"RM_AUTH": "off"}[k]
	})
	if err != nil || !cfg.AuthOff {
		t.Fatalf("RM_AUTH=off: %v %+v", err, cfg.AuthOff)
	}
}

// Without auth the all-in-one says so once, with the address it serves
// on, not once more from the API inside it.
func TestAuthOffSaidOnce(t *testing.T) {
	dir := t.TempDir()
	cfg, err := up.Load([]string{"--data-dir", filepath.Join(dir, "data"), "--http-addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:0",
		"--mongo-addr", "127.0.0.1:0"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	logs, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	sys, err := up.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	sys.Stop()
	if err := sys.Wait(); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(logs.Name())
	if n := strings.Count(string(raw), "AUTH IS OFF"); n != 1 || !strings.Contains(string(raw), "http_addr=127.0.0.1:") {
		t.Errorf("said auth is off %d times (want once, with the address):\n%s", n, raw)
	}
}
