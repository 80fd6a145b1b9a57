package cli

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// version asks GET /version without a token: it is open, and a token that
// has expired must not keep a user from learning the server's build.
func TestVersionSendsNoToken(t *testing.T) {
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = append(auth, r.URL.Path+" "+r.Header.Get("Authorization"))
		_, _ = w.Write([]byte(`{"version":"v1.2.0","go_version":"go1.26.8","platform":"linux/amd64"}`))
	}))
	defer srv.Close()
	root := Root()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"version", "--server", srv.URL, "--token", "expired"})
	if err := root.Execute(); err != nil || len(auth) != 1 || auth[0] != "/version " {
		t.Fatalf("version: %v; requests %q, want one GET /version without Authorization", err, auth)
	}
	if !strings.HasSuffix(out.String(), "Server: v1.2.0 (go1.26.8, linux/amd64) at "+srv.URL+"\n") {
		t.Errorf("version printed %q", out.String())
	}
}

// A server given as host:port, as typed, is taken as http://host:port.
func TestServerWithoutSchemeIsHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"version":"v1.2.0","go_version":"go1.26.8","platform":"linux/amd64"}`))
	}))
	defer srv.Close()
	root := Root()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"version", "--server", strings.TrimPrefix(srv.URL, "http://")})
	if err := root.Execute(); err != nil || !strings.HasSuffix(out.String(), "Server: v1.2.0 (go1.26.8, linux/amd64) at "+srv.URL+"\n") {
		t.Errorf("version --server host:port: %v, printed %q", err, out.String())
	}
}
