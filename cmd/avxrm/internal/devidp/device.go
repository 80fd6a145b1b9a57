package devidp

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"
)

// The device authorization grant (RFC 8628), which `avxrm login` uses
// unless given --username: the CLI asks the OP for a device code and a user
// code, tells the user to open the page below and enter the user code, and
// polls the token endpoint until the user has signed in there.

// DevicePath is the page where a user enters a device's user code and signs
// in, and DeviceAuthPath the device authorization endpoint (Keycloak's).
const (
	DevicePath     = RealmPath + "/device"
	DeviceAuthPath = RealmPath + "/protocol/openid-connect/auth/device"
)

// deviceAuth is one device authorization under way.
type deviceAuth struct {
	userCode string
	state    op.DeviceAuthorizationState
}

var _ op.DeviceAuthorizationStorage = (*storage)(nil)

// StoreDeviceAuthorization keeps a new device authorization, dropping the
// expired ones.
func (s *storage) StoreDeviceAuthorization(_ context.Context, clientID, deviceCode, userCode string, expires time.Time, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for code, d := range s.devices {
		if now.After(d.state.Expires) {
			delete(s.devices, code)
		}
	}
	for _, d := range s.devices {
		if d.userCode == userCode {
			return op.ErrDuplicateUserCode
		}
	}
	s.devices[deviceCode] = &deviceAuth{userCode: userCode, state: op.DeviceAuthorizationState{
		ClientID: clientID, Audience: []string{clientID}, Scopes: scopes, Expires: expires,
	}}
	return nil
}

// GetDeviceAuthorizatonState is the state of deviceCode's authorization,
// which the OP reads on each poll of the token endpoint.
func (s *storage) GetDeviceAuthorizatonState(_ context.Context, clientID, deviceCode string) (*op.DeviceAuthorizationState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[deviceCode]
	if !ok || d.state.ClientID != clientID {
		return nil, errors.New("no such device authorization")
	}
	state := d.state
	if state.Done || state.Denied {
		delete(s.devices, deviceCode) // its tokens are given once
	}
	return &state, nil
}

// approveDevice marks the authorization of userCode done by user.
func (s *storage) approveDevice(userCode string, user *User) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.devices {
		if d.userCode == userCode && !d.state.Done && time.Now().Before(d.state.Expires) {
			d.state.Done, d.state.Subject, d.state.AMR, d.state.AuthTime = true, user.Subject, []string{"pwd"}, time.Now()
			return true
		}
	}
	return false
}

var devicePage = template.Must(template.New("device").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in a device: avxrm development identity provider</title>
<style>body{font:16px system-ui,sans-serif;max-width:24rem;margin:4rem auto;color:#111}label{display:block;margin:.8rem 0 .2rem}
input{width:100%;padding:.4rem;font:inherit}button{margin-top:1rem;padding:.4rem 1rem;font:inherit}.err{color:#a00}</style></head>
<body><main>{{if .Done}}<h1>Signed in</h1><p role="status">The device is signed in as <code>{{.Username}}</code>. Return to it (the terminal); this page can be closed.</p>
{{else}}<h1>Sign in a device</h1><p>Development identity provider: enter the code the device (<code>avxrm login</code>) showed, and sign in as <code>admin</code>, <code>user</code> or <code>viewer</code>; <code>avxrm up</code> printed their passwords.</p>
{{if .Error}}<p class="err" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="device">
<label for="user_code">Code</label><input id="user_code" name="user_code" value="{{.UserCode}}" autocomplete="off" required{{if not .UserCode}} autofocus{{end}}>
<label for="username">Username</label><input id="username" name="username" autocomplete="username" value="{{.Username}}" required{{if .UserCode}} autofocus{{end}}>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit" id="submit">Sign in</button></form>{{end}}</main></body></html>`))

// device serves the page where a user approves a device (GET) and checks
// its form (POST).
func (p *IdP) device(w http.ResponseWriter, r *http.Request) {
	data := struct {
		UserCode, Username, Error string
		Done                      bool
	}{UserCode: strings.ToUpper(strings.TrimSpace(r.FormValue("user_code"))), Username: r.FormValue("username")}
	if r.Method == http.MethodPost {
		user := p.check(data.Username, r.FormValue("password"))
		switch {
		case user == nil:
			w.WriteHeader(http.StatusUnauthorized)
			data.Error = "Invalid username or password."
		case !p.st.approveDevice(data.UserCode, user):
			w.WriteHeader(http.StatusBadRequest)
			data.Error = "No device waits with this code, or it has expired: run avxrm login again and enter the code it shows."
		default:
			data.Done = true
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = devicePage.Execute(w, data)
}
