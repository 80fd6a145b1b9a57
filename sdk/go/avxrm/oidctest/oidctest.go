// Package oidctest runs an OpenID Connect issuer in-process for tests of
// clients: its discovery document and a token endpoint with the password and
// refresh grants for one user. It is not a general OIDC provider (no keys, no
// ID tokens): the tokens are opaque strings at-N and rt-N.
package oidctest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
)

// The one client and user the issuer knows.
const (
	ClientID = "avxrm"
	Username = "alice"
	Password = "secret"
)

// Issuer serves /.well-known/openid-configuration and /token.
type Issuer struct {
	*httptest.Server

	mu        sync.Mutex
	n         int
	expiresIn int
	grants    []string
}

// NewIssuer starts an issuer whose access tokens are valid for expiresIn
// seconds; it stops with the test.
func NewIssuer(t testing.TB, expiresIn int) *Issuer {
	is := &Issuer{expiresIn: expiresIn}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": is.URL, "token_endpoint": is.URL + "/token"})
	})
	mux.HandleFunc("POST /token", is.token)
	is.Server = httptest.NewServer(mux)
	t.Cleanup(is.Close)
	return is
}

func (is *Issuer) token(w http.ResponseWriter, r *http.Request) {
	is.mu.Lock()
	defer is.mu.Unlock()
	_ = r.ParseForm()
	ok := r.Form.Get("client_id") == ClientID
	switch r.Form.Get("grant_type") {
	case "password":
		ok = ok && r.Form.Get("username") == Username && r.Form.Get("password") == Password
	case "refresh_token":
		ok = ok && r.Form.Get("refresh_token") == fmt.Sprintf("rt-%d", is.n)
	default:
		ok = false
	}
	is.grants = append(is.grants, r.Form.Get("grant_type"))
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"invalid_grant"}`))
		return
	}
	is.n++
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": fmt.Sprintf("at-%d", is.n), "token_type": "Bearer",
		"refresh_token": fmt.Sprintf("rt-%d", is.n), "expires_in": is.expiresIn})
}

// Grants returns the grant types asked for so far, in order.
func (is *Issuer) Grants() []string {
	is.mu.Lock()
	defer is.mu.Unlock()
	return slices.Clone(is.grants)
}
