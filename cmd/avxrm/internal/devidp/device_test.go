package devidp_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/devidp"
	"github.com/avxrm/rm/sdk/go/avxrm"
)

// TestDeviceLogin: `avxrm login` without --username uses the device
// authorization grant (the SDK's OIDC.Device): the dev IdP gives a code,
// its device page signs the user in with it, and the device's token is
// that user's (the API's /whoami says so), with a refresh token. A wrong
// password or a code that no device waits with is refused on the page; a
// code is good for one sign-in.
func TestDeviceLogin(t *testing.T) {
	e := start(t, devidp.Config{})
	u, _ := e.idp.User("user")
	admin, _ := e.idp.User("admin")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	post := func(page string, form url.Values) (int, string) {
		t.Helper()
		res, err := http.PostForm(page, form)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	var shown, code string
	src, err := avxrm.OIDC{Issuer: e.idp.Issuer, ClientID: "avxrm", Scopes: []string{"offline_access"}}.Device(ctx, func(uri, userCode string) {
		shown, code = uri, userCode
		page := strings.SplitN(uri, "?", 2)[0]
		if st, body := post(page, url.Values{"user_code": {userCode}, "username": {"user"}, "password": {"wrong"}}); st != http.StatusUnauthorized || !strings.Contains(body, "Invalid username or password") {
			t.Errorf("a wrong password: %d %s", st, body)
		}
		if st, body := post(page, url.Values{"user_code": {"BCDF-GHJK"}, "username": {"user"}, "password": {u.Password}}); st != http.StatusBadRequest || !strings.Contains(body, "No device waits with this code") {
			t.Errorf("a code no device waits with: %d %s", st, body)
		}
		if st, body := post(page, url.Values{"user_code": {strings.ToLower(userCode)}, "username": {"user"}, "password": {u.Password}}); st != http.StatusOK || !strings.Contains(body, "Signed in") {
			t.Errorf("the right code and password: %d %s", st, body)
		}
		if st, _ := post(page, url.Values{"user_code": {userCode}, "username": {"admin"}, "password": {admin.Password}}); st != http.StatusBadRequest {
			t.Errorf("the same code again: %d, want 400", st)
		}
	})
	if err != nil {
		t.Fatalf("device login: %v", err)
	}
	if !strings.HasPrefix(shown, e.idp.Issuer+"/device?user_code=") || !strings.Contains(shown, code) {
		t.Errorf("the page shown is %q (code %q), want the dev IdP's device page with the code", shown, code)
	}
	tok := src.Current()
	if tok.RefreshToken == "" {
		t.Error("the device's token has no refresh token")
	}
	who := e.must(http.StatusOK, "Bearer "+tok.AccessToken, http.MethodGet, v1+"/whoami", nil).obj(t)
	if who["username"] != "user" || who["access"] != "user" {
		t.Errorf("the device's token is %v's, want user's", who)
	}
	// The discovery document names the endpoint where Keycloak has it.
	var d struct {
		Device string `json:"device_authorization_endpoint"`
	}
	res, err := http.Get(e.idp.Issuer + "/.well-known/openid-configuration")
	if err == nil {
		err = json.NewDecoder(res.Body).Decode(&d)
		res.Body.Close()
	}
	if err != nil || d.Device != e.idp.Issuer+"/protocol/openid-connect/auth/device" {
		t.Errorf("device_authorization_endpoint = %q (%v)", d.Device, err)
	}
}
