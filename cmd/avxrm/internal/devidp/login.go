package devidp

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// The authorization code flow (with PKCE), for the web view's sign-in: the
// OP sends the browser to the login page below with the sign-in's id; a
// right username and password finish it and send the browser back through
// the OP's callback, which redirects to the client with a code.

// authRequest is one sign-in under way.
type authRequest struct {
	id       string
	req      oidc.AuthRequest
	subject  string // set when the user has signed in
	authTime time.Time
	created  time.Time
}

var _ op.AuthRequest = (*authRequest)(nil)

func (a *authRequest) GetID() string                      { return a.id }
func (a *authRequest) GetACR() string                     { return "" }
func (a *authRequest) GetAMR() []string                   { return []string{"pwd"} }
func (a *authRequest) GetAudience() []string              { return []string{a.req.ClientID} }
func (a *authRequest) GetAuthTime() time.Time             { return a.authTime }
func (a *authRequest) GetClientID() string                { return a.req.ClientID }
func (a *authRequest) GetNonce() string                   { return a.req.Nonce }
func (a *authRequest) GetRedirectURI() string             { return a.req.RedirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType { return a.req.ResponseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode { return a.req.ResponseMode }
func (a *authRequest) GetScopes() []string                { return a.req.Scopes }
func (a *authRequest) GetState() string                   { return a.req.State }
func (a *authRequest) GetSubject() string                 { return a.subject }
func (a *authRequest) Done() bool                         { return a.subject != "" }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge {
	if a.req.CodeChallenge == "" {
		return nil
	}
	return &oidc.CodeChallenge{Challenge: a.req.CodeChallenge, Method: a.req.CodeChallengeMethod}
}

// tokenRequest is what the code grants, for refresh tokens to carry on.
func (a *authRequest) tokenRequest() *tokenRequest {
	return &tokenRequest{subject: a.subject, clientID: a.req.ClientID, scopes: a.req.Scopes, audience: a.GetAudience(), authTime: a.authTime}
}

// signInTTL bounds how long a sign-in may take, from start to code exchange.
const signInTTL = 10 * time.Minute

var errUnknownSignIn = errors.New("unknown or expired sign-in")

func (s *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	a := &authRequest{id: randomID(), req: *req, created: time.Now()}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, old := range s.authReqs { // forget abandoned sign-ins
		if time.Since(old.created) > signInTTL {
			delete(s.authReqs, id)
		}
	}
	s.authReqs[a.id] = a
	return a, nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.authReqs[id]
	if !ok {
		return nil, errUnknownSignIn
	}
	return a, nil
}

func (s *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.authReqs[s.codes[code]]
	if !ok || time.Since(a.created) > signInTTL {
		return nil, errUnknownSignIn
	}
	return a, nil
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.authReqs[id]; !ok {
		return errUnknownSignIn
	}
	s.codes[code] = id
	return nil
}

// DeleteAuthRequest ends a sign-in once its code is exchanged: a code is good once.
func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.authReqs, id)
	for code, rid := range s.codes {
		if rid == id {
			delete(s.codes, code)
		}
	}
	return nil
}

// signIn checks a user's password for the sign-in id and marks it done.
func (p *IdP) signIn(id, username, password string) bool {
	user := p.check(username, password)
	if user == nil {
		return false
	}
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	a, ok := p.st.authReqs[id]
	if !ok {
		return false
	}
	a.subject, a.authTime = user.Subject, time.Now()
	return true
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in: avxrm development identity provider</title>
<style>body{font:16px system-ui,sans-serif;max-width:24rem;margin:4rem auto;color:#111}label{display:block;margin:.8rem 0 .2rem}
input{width:100%;padding:.4rem;font:inherit}button{margin-top:1rem;padding:.4rem 1rem;font:inherit}.err{color:#a00}</style></head>
<body><main><h1>Sign in</h1><p>Development identity provider: users <code>admin</code>, <code>user</code>, <code>viewer</code>; <code>avxrm up</code> printed their passwords.</p>
{{if .Error}}<p class="err" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="login"><input type="hidden" name="id" value="{{.ID}}">
<label for="username">Username</label><input id="username" name="username" autocomplete="username" value="{{.Username}}" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit" id="submit">Sign in</button></form></main></body></html>`))

// login serves the login page (GET) and checks its form (POST).
func (p *IdP) login(provider *op.Provider) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.FormValue("id")
		if _, err := p.st.AuthRequestByID(r.Context(), id); err != nil {
			http.Error(w, "this sign-in is unknown or has expired: start again from the application", http.StatusBadRequest)
			return
		}
		data := struct{ ID, Username, Error string }{ID: id, Username: r.FormValue("username")}
		if r.Method == http.MethodPost {
			if p.signIn(id, r.FormValue("username"), r.FormValue("password")) {
				ctx := op.ContextWithIssuer(r.Context(), p.Issuer)
				http.Redirect(w, r, op.AuthCallbackURL(provider)(ctx, id), http.StatusFound)
				return
			}
			w.WriteHeader(http.StatusUnauthorized)
			data.Error = "Invalid username or password."
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = loginPage.Execute(w, data)
	}
}
