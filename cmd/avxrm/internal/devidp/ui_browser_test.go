package devidp_test

import (
	"net/http"
	"os/exec"
	"testing"

	"github.com/avxrm/rm/cmd/avxrm/internal/devidp"
	"github.com/chromedp/chromedp"
)

// TestWebViewSignInWithDevIdP signs in to the web view of an API with auth
// on, as `avxrm up --dev-idp` wires it: /ui/ answers "sign in", the browser
// runs the authorization code flow with PKCE against the dev IdP (its login
// page, the user's password), comes back to the page it left and loads it
// and the other pages with the token; a wrong password stays on the login page.
func TestWebViewSignInWithDevIdP(t *testing.T) {
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("headless Chromium is needed for this test and was not found (%v); `make test` installs it (apt-get install -y chromium)", err)
	}
	e := start(t, devidp.Config{})
	u, _ := e.idp.User("user")
	if r := e.do(bearer(e.login("admin")), http.MethodPost, v1+"/queues", map[string]any{"name": "signed-in", "maximum_allowed_worker_instances": 4}); r.Status != http.StatusCreated {
		t.Fatalf("create queue: %d %s", r.Status, r.Body)
	}
	bctx := browserContext(t, browser)

	// The first action starts the browser, which lives as long as that action's context.
	if err := chromedp.Do(bctx, chromedp.Navigate(e.base+"/ui/queues")); err != nil {
		t.Fatal(err)
	}
	runSteps(t, bctx, "sign in", []step{
		{"see sign-in offered", chromedp.WaitVisible(chromedp.CSS(`#signin`))},
		{"click Sign in", chromedp.Click(chromedp.CSS(`#signin`))},
		{"see the dev IdP's login page", chromedp.WaitVisible(chromedp.ID(`username`))},
		{"type the username", chromedp.SendKeys(chromedp.ID(`username`), u.Username)},
		{"type a wrong password", chromedp.SendKeys(chromedp.ID(`password`), "wrong")},
		{"submit", chromedp.Submit(chromedp.ID(`password`))},
		{"see it refused", chromedp.WaitVisible(chromedp.CSS(`p.err`))},
		{"type the password", chromedp.SendKeys(chromedp.ID(`password`), u.Password)},
		{"submit", chromedp.Submit(chromedp.ID(`password`))},
		// dev IdP → /ui/callback (code exchange) → /ui/queues, fetched with the token
		{"see the queues", chromedp.WaitVisible(chromedp.CSS(`#queue-signed-in [data-usage="0/4"]`))},
		{"see it live", chromedp.WaitVisible(chromedp.CSS(`#live[data-state="on"]`))},
	})
	if who, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(`#who`))); err != nil || who != "user" {
		t.Errorf("signed in as %q (%v), want user", who, err)
	}
	if loc, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`location.pathname`)); loc != "/ui/queues" {
		t.Errorf("after sign-in the page is %s, want /ui/queues", loc)
	}
	runSteps(t, bctx, "pages with the token", []step{
		{"open a queue", chromedp.Navigate(e.base + "/ui/queues/signed-in")},
		{"see its usage", chromedp.WaitVisible(chromedp.CSS(`.summary [data-usage="0/4"]`))},
		{"open the jobs", chromedp.Navigate(e.base + "/ui/jobs")},
		{"see the table", chromedp.WaitVisible(chromedp.CSS(`main table`))},
	})
	// rm-user is no admin: the limit editor stays hidden (the API refuses either way).
	if err := chromedp.Do(bctx, chromedp.Navigate(e.base+"/ui/queues/signed-in"), chromedp.WaitVisible(chromedp.CSS(`.summary [data-usage="0/4"]`))); err != nil {
		t.Fatal(err)
	}
	if hidden, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.getElementById('limit-form').hidden`)); err != nil || !hidden {
		t.Errorf("the limit editor shows for rm-user (hidden %v, %v)", hidden, err)
	}
}
