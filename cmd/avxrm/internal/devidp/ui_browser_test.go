package devidp_test

import (
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"testing"
	"time"

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

// The web view's stream goes on when the API ends it at its token's expiry:
// it is opened again with the token the tab holds then (here put there
// meanwhile, as a new sign-in does), and once that one has expired too the
// API's 401 offers to sign in again.
func TestWebViewStreamAcrossTokenExpiry(t *testing.T) {
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("headless Chromium is needed for this test and was not found (%v); `make test` installs it (apt-get install -y chromium)", err)
	}
	e := start(t, devidp.Config{AccessTTL: 3 * time.Second})
	bctx := browserContext(t, browser)
	if err := chromedp.Do(bctx, chromedp.Navigate(e.base+"/ui/queues"), chromedp.WaitVisible(chromedp.CSS(`#signin`))); err != nil {
		t.Fatal(err)
	}
	hold := func(tk tokens) {
		t.Helper()
		if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`(sessionStorage.setItem('rm.token', `+strconv.Quote(tk.AccessToken)+`), true)`)); err != nil {
			t.Fatal(err)
		}
	}
	first := e.login("viewer")
	hold(first)
	runSteps(t, bctx, "signed in", []step{
		{"reload", chromedp.Reload()},
		{"see it live", chromedp.WaitVisible(chromedp.CSS(`#live[data-state="on"]`))},
	})
	// A token that expires after the first one.
	second := e.login("viewer")
	for expOf(t, second.AccessToken) <= expOf(t, first.AccessToken) {
		time.Sleep(50 * time.Millisecond)
		second = e.login("viewer")
	}
	hold(second)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		live, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(`#live`)))
		if err == nil && live == "signed out" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the live mark says %q (%v) 30 s after the second token, want signed out once it expired", live, err)
		}
	}
	if hidden, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.getElementById('signin').hidden`)); err != nil || hidden {
		t.Errorf("signed out, but sign-in is not offered (hidden %v, %v)", hidden, err)
	}
	// The streams read to their end (the 401's answer, unread, is not
	// listed): the second was opened after the first token had expired, so
	// with the second token.
	streams, err := chromedp.Run(bctx, chromedp.Evaluate[[]int](`performance.getEntriesByType('resource').filter((r) => r.name.includes('/events')).map((r) => r.responseStatus)`))
	if err != nil || fmt.Sprint(streams) != "[200 200]" {
		t.Errorf("the page's streams answered %v (%v), want [200 200]: one with each token", streams, err)
	}
}
