package devidp_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/devidp"
	"github.com/avxrm/rm/services/api"
	"github.com/chromedp/chromedp"
)

// TestWebViewSignInWithDevIdP signs in to the web view of an API with auth
// on, as `avxrm up --dev-idp` wires it: /ui/ answers "sign in", the browser
// runs the authorization code flow with PKCE against the dev IdP (its login
// page, the user's password), comes back to the page it left and loads it
// and the other pages with the token; a wrong password stays on the login page.
func TestWebViewSignInWithDevIdP(t *testing.T) {
	e := start(t, devidp.Config{})
	u, _ := e.idp.User("user")
	if r := e.do(bearer(e.login("admin")), http.MethodPost, v1+"/queues", map[string]any{"name": "signed-in", "maximum_allowed_worker_instances": 4}); r.Status != http.StatusCreated {
		t.Fatalf("create queue: %d %s", r.Status, r.Body)
	}
	bctx := browserContext(t)

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
	if hidden, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`getComputedStyle(document.getElementById('limit-form')).display === 'none'`)); err != nil || !hidden {
		t.Errorf("the limit editor shows for rm-user (hidden %v, %v)", hidden, err)
	}
}

// The web view's stream goes on when the API ends it at its token's expiry:
// it is opened again with the token the tab holds then (here put there
// meanwhile, as a new sign-in does), and once that one has expired too the
// API's 401 offers to sign in again.
func TestWebViewStreamAcrossTokenExpiry(t *testing.T) {
	e := start(t, devidp.Config{AccessTTL: 3 * time.Second})
	bctx := browserContext(t)
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
	// The streams read to their end, then the 401 (listed once its small
	// answer has come in, read or not): the second stream was opened after
	// the first token had expired, so with the second token.
	streams, err := chromedp.Run(bctx, chromedp.Evaluate[[]int](`performance.getEntriesByType('resource').filter((r) => r.name.includes('/events')).map((r) => r.responseStatus)`))
	if got := fmt.Sprint(streams); err != nil || got != "[200 200]" && got != "[200 200 401]" {
		t.Errorf("the page's streams answered %v (%v), want [200 200], then the 401: one with each token", streams, err)
	}
}

// tokenCalls counts the page's calls of the IdP's token endpoint (its
// renewals: the code exchange was the callback page's).
const tokenCalls = `performance.getEntriesByType('resource').filter((r) => r.name.endsWith('/protocol/openid-connect/token'))`

// TestWebViewStaysSignedIn: a tab signed in through the dev IdP with
// 3 s access tokens renews them with its refresh token before they expire,
// so the page stays live and its actions work across several expiries;
// requests refused together at once (an expired token) share one renewal
// and are sent again; a refresh token the issuer no longer accepts ends in
// the Sign in offer, and Sign out revokes the refresh token it held.
func TestWebViewStaysSignedIn(t *testing.T) {
	e := start(t, devidp.Config{AccessTTL: 3 * time.Second})
	expired := e.login("admin") // expired by the time it is used below
	e.must(http.StatusCreated, bearer(e.login("admin")), http.MethodPost, v1+"/queues", map[string]any{"name": "kept", "maximum_allowed_worker_instances": 4})
	bctx := browserContext(t)
	if err := chromedp.Do(bctx, chromedp.Navigate(e.base+"/ui/queues/kept"), chromedp.Click(chromedp.CSS(`#signin`))); err != nil {
		t.Fatal(err)
	}
	signIn(t, bctx, e, "admin")
	runSteps(t, bctx, "signed in", []step{
		{"see the queue", chromedp.WaitVisible(chromedp.CSS(`.summary [data-usage="0/4"]`))},
		{"see it live", chromedp.WaitVisible(chromedp.CSS(`#live[data-state="on"]`))},
	})
	first := evalJS[string](t, bctx, `(performance.setResourceTimingBufferSize(100000), sessionStorage.getItem('rm.token'))`)
	if evalJS[string](t, bctx, `sessionStorage.getItem('rm.refresh') || ''`) == "" {
		t.Fatal("the tab holds no refresh token: the sign-in did not get one")
	}

	// Several expiries go by without a 401: each token is renewed before it
	// expires, and the stream reopens with the new one.
	waitJS(t, bctx, "three renewals", tokenCalls+`.length >= 3`)
	if live := evalJS[string](t, bctx, `document.getElementById('live').dataset.state`); live != "on" {
		t.Errorf("after three renewals the live mark is %q, want on", live)
	}
	if refused := evalJS[int](t, bctx, `performance.getEntriesByType('resource').filter((r) => r.name.startsWith(location.origin) && r.responseStatus === 401).length`); refused != 0 {
		t.Errorf("%d calls of the page were refused with 401, want none: tokens are renewed before they expire", refused)
	}
	if now := evalJS[string](t, bctx, `sessionStorage.getItem('rm.token')`); now == first {
		t.Error("the tab still holds its first access token after three renewals")
	}
	e.must(http.StatusOK, bearer(e.login("admin")), http.MethodPatch, v1+"/queues/kept", map[string]any{"maximum_allowed_worker_instances": 7})
	runSteps(t, bctx, "live and acting", []step{
		{"see the limit set meanwhile", chromedp.WaitVisible(chromedp.CSS(`.summary [data-usage="0/7"]`))},
		{"type a limit", chromedp.SetValue(chromedp.CSS(`#limit-input`), "9")},
		{"save it", chromedp.Click(chromedp.CSS(`#limit-form button[type="submit"]`))},
		{"see it saved", chromedp.WaitVisible(chromedp.CSS(`.summary [data-usage="0/9"]`))},
	})

	// Three saves sent at once with an expired token: three 401s, one
	// renewal, then each sent again. It starts just after a renewal, so that
	// none is under way or due meanwhile.
	for deadline := time.Now().Add(time.Minute); expOf(t, expired.AccessToken) >= time.Now().Unix(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the old token did not expire")
		}
	}
	waitJS(t, bctx, "three saves sent with an expired token", `(() => {
		if (Number(sessionStorage.getItem('rm.renew')) - Date.now() < 1000) return false;
		window.t0 = performance.now();
		sessionStorage.setItem('rm.token', `+strconv.Quote(expired.AccessToken)+`);
		document.getElementById('limit-input').value = '11';
		const f = document.getElementById('limit-form');
		f.requestSubmit(); f.requestSubmit(); f.requestSubmit();
		return true;
	})()`)
	const patches = `performance.getEntriesByType('resource').filter((r) => r.startTime >= window.t0 && r.name.includes('/api/resources/v1/queues/'))`
	waitJS(t, bctx, "the saves sent twice", patches+`.length >= 6`)
	if n := evalJS[int](t, bctx, patches+`.filter((r) => r.responseStatus === 401).length`); n != 3 {
		t.Errorf("%d saves were refused with 401, want 3", n)
	}
	if n := evalJS[int](t, bctx, tokenCalls+`.filter((r) => r.startTime >= window.t0 && r.startTime <= Math.max(...`+patches+`.map((p) => p.startTime))).length`); n != 1 {
		t.Errorf("the three refused saves made %d renewals, want 1", n)
	}
	runSteps(t, bctx, "saved after the renewal", []step{
		{"see it saved", chromedp.WaitVisible(chromedp.CSS(`.summary [data-usage="0/11"]`))},
	})

	// The issuer is out of reach for a while (the token endpoint the tab
	// knows points at a closed port): the renewal fails and is tried again,
	// the token expires meanwhile and the stream's reconnection gets a 401;
	// the tab keeps its tokens and does not offer to sign in, and once the
	// issuer is back it renews and the stream goes on.
	waitJS(t, bctx, "a renewal", `Number(sessionStorage.getItem('rm.renew')) - Date.now() > 1000`)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String() + "/token"
	l.Close()
	evalJS[bool](t, bctx, `(() => {
		const i = JSON.parse(sessionStorage.getItem('rm.issuer'));
		window.tokenEndpoint = i.token;
		i.token = `+strconv.Quote(closed)+`;
		sessionStorage.setItem('rm.issuer', JSON.stringify(i));
		window.heldWhileAway = sessionStorage.getItem('rm.token');
		return true;
	})()`)
	// Past the held token's expiry (the API's clock skew here is 1 ms), the
	// stream has ended and its reconnection been refused.
	awayToken := evalJS[string](t, bctx, `window.heldWhileAway`)
	time.Sleep(time.Until(time.Unix(expOf(t, awayToken), 0).Add(time.Second)))
	waitJS(t, bctx, "the stream not live once the token expired", `document.getElementById('live').dataset.state === 'off'`)
	time.Sleep(2 * time.Second) // renewals tried again meanwhile
	if state := evalJS[string](t, bctx, `[sessionStorage.getItem('rm.token') === window.heldWhileAway, !!sessionStorage.getItem('rm.refresh'),
		document.getElementById('signin').hidden, document.getElementById('live').textContent].join(' ')`); state != "true true true reconnecting…" {
		t.Errorf("while the issuer is away: token kept, refresh token kept, sign-in hidden, live mark = %q, want %q", state, "true true true reconnecting…")
	}
	evalJS[bool](t, bctx, `(() => {
		const i = JSON.parse(sessionStorage.getItem('rm.issuer'));
		i.token = window.tokenEndpoint;
		sessionStorage.setItem('rm.issuer', JSON.stringify(i));
		return true;
	})()`)
	waitJS(t, bctx, "renewed and live again once the issuer is back",
		`sessionStorage.getItem('rm.token') !== window.heldWhileAway && document.getElementById('live').dataset.state === 'on'`)
	if hidden := evalJS[bool](t, bctx, `document.getElementById('signin').hidden`); !hidden {
		t.Error("sign-in is offered after the issuer came back")
	}

	// The issuer stops accepting the refresh token (taken just after a
	// renewal, so that the tab does not trade it meanwhile): the next renewal
	// is refused, the tab drops both tokens and offers to sign in.
	var rt string
	waitJS(t, bctx, "a renewal", `Number(sessionStorage.getItem('rm.renew')) - Date.now() > 1000`)
	rt = evalJS[string](t, bctx, `sessionStorage.getItem('rm.refresh')`)
	revoke(t, e, rt)
	runSteps(t, bctx, "refused renewal", []step{
		{"see sign-in offered", chromedp.WaitVisible(chromedp.CSS(`#signin`))},
	})
	waitJS(t, bctx, "the stream signed out at the token's expiry", `document.getElementById('live').textContent === 'signed out'`)
	if held := evalJS[string](t, bctx, `(sessionStorage.getItem('rm.token') || '') + (sessionStorage.getItem('rm.refresh') || '')`); held != "" {
		t.Errorf("after a refused renewal the tab still holds %q", held)
	}
	if bar := evalJS[string](t, bctx, `document.getElementById('who').textContent + (document.getElementById('signout').hidden ? '' : ' [Sign out]')`); bar != "" {
		t.Errorf("after a refused renewal the header still shows %q", bar)
	}

	// Sign out revokes the refresh token the tab held.
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`#signin`))); err != nil {
		t.Fatal(err)
	}
	signIn(t, bctx, e, "admin")
	runSteps(t, bctx, "signed in again", []step{
		{"see it live", chromedp.WaitVisible(chromedp.CSS(`#live[data-state="on"]`))},
	})
	held := evalJS[string](t, bctx, `(() => { const rt = sessionStorage.getItem('rm.refresh'); document.getElementById('signout').click(); return rt; })()`)
	runSteps(t, bctx, "signed out", []step{
		{"see sign-in offered", chromedp.WaitVisible(chromedp.CSS(`#signin`))},
	})
	if code, tk := e.grant(url.Values{"grant_type": {"refresh_token"}, "client_id": {"avxrm"}, "refresh_token": {held}}); code == http.StatusOK {
		t.Errorf("the refresh token held at sign-out still works: %d %+v", code, tk)
	}
	if left := evalJS[int](t, bctx, `sessionStorage.length`); left != 0 {
		t.Errorf("after sign-out the tab still holds %d items", left)
	}
}

// TestDuplicatedTabsStaySignedIn: a tab duplicated from another starts with
// its sessionStorage, so both hold one refresh token, which the dev IdP
// (like zitadel) accepts once. Both stay signed in and live across several
// renewals: the second to renew takes the first's answer. Before, the
// second was refused and signed out.
func TestDuplicatedTabsStaySignedIn(t *testing.T) {
	e := start(t, devidp.Config{AccessTTL: 3 * time.Second})
	first := browserContext(t)
	if err := chromedp.Do(first, chromedp.Navigate(e.base+"/ui/queues"), chromedp.Click(chromedp.CSS(`#signin`))); err != nil {
		t.Fatal(err)
	}
	signIn(t, first, e, "admin")
	runSteps(t, first, "signed in", []step{{"see it live", chromedp.WaitVisible(chromedp.CSS(`#live[data-state="on"]`))}})
	// Duplicate the tab as the browser does: a second tab of the same
	// origin with a copy of the first's sessionStorage, taken just after a
	// renewal.
	waitJS(t, first, "a renewal", `Number(sessionStorage.getItem('rm.renew')) - Date.now() > 1000`)
	held := evalJS[string](t, first, `JSON.stringify(Object.fromEntries(Object.entries(sessionStorage)))`)
	heldRefresh := evalJS[string](t, first, `sessionStorage.getItem('rm.refresh')`)
	second, cancel := chromedp.NewContext(first)
	t.Cleanup(cancel)
	if err := chromedp.Do(second, chromedp.Navigate(e.base+"/ui/queues")); err != nil {
		t.Fatal(err)
	}
	evalJS[bool](t, second, `(() => { for (const [k, v] of Object.entries(`+held+`)) sessionStorage.setItem(k, v); return true; })()`)
	if err := chromedp.Do(second, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	runSteps(t, second, "the duplicate signed in", []step{{"see it live", chromedp.WaitVisible(chromedp.CSS(`#live[data-state="on"]`))}})
	// One token, unless the first renewed while the second loaded (a slow
	// machine: renewals come every few seconds here); the second then
	// still holds the copy, which its own renewal trades for the first's
	// answer (below).
	if a, b := evalJS[string](t, first, `sessionStorage.getItem('rm.refresh')`), evalJS[string](t, second, `sessionStorage.getItem('rm.refresh')`); a == "" || (a != b && b != heldRefresh) {
		t.Fatalf("the tabs hold refresh tokens %q and %q, want one (or the second the one copied, %q)", a, b, heldRefresh)
	}
	// Several renewals of each: the issuer is called once per shared token.
	renewals := func(tab context.Context) int {
		return evalJS[int](t, tab, tokenCalls+`.length`)
	}
	for deadline := time.Now().Add(time.Minute); renewals(first)+renewals(second) < 6; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			for name, tab := range map[string]context.Context{"first": first, "second": second} {
				t.Logf("%s tab: %d calls of the token endpoint; %s", name, renewals(tab), evalJS[string](t, tab,
					`JSON.stringify({refresh: (sessionStorage.getItem('rm.refresh') || '').slice(0, 12), renew: Number(sessionStorage.getItem('rm.renew')) - Date.now(),
					live: document.getElementById('live').textContent, signin: !document.getElementById('signin').hidden})`))
			}
			t.Fatal("the two tabs did not renew six times in a minute")
		}
	}
	for name, tab := range map[string]context.Context{"first": first, "second": second} {
		if state := evalJS[string](t, tab, `[!!sessionStorage.getItem('rm.refresh'), document.getElementById('signin').hidden, document.getElementById('live').dataset.state].join(' ')`); state != "true true on" {
			t.Errorf("%s tab: holds a refresh token, sign-in hidden, live = %q, want %q", name, state, "true true on")

		}
	}
}

// TestWebViewAsksForTheScopeSet: with RM_OIDC_UI_SCOPE (AuthConfig.UIScope)
// the web view asks for that scope instead of its default, which adds
// offline_access when the issuer lists it: here "openid profile", so the
// dev IdP, which gives a refresh token only for offline_access, gives none
// and the tab holds none.
func TestWebViewAsksForTheScopeSet(t *testing.T) {
	e := start(t, devidp.Config{}, func(c *api.AuthConfig) { c.UIScope = "openid profile" })
	bctx := browserContext(t)
	if err := chromedp.Do(bctx, chromedp.Navigate(e.base+"/ui/queues"), chromedp.Click(chromedp.CSS(`#signin`))); err != nil {
		t.Fatal(err)
	}
	signIn(t, bctx, e, "admin")
	runSteps(t, bctx, "signed in", []step{
		{"see it live", chromedp.WaitVisible(chromedp.CSS(`#live[data-state="on"]`))},
	})
	if got := evalJS[string](t, bctx, `document.body.dataset.oidcScope + ' | ' + (sessionStorage.getItem('rm.refresh') || 'no refresh token')`); got != "openid profile | no refresh token" {
		t.Errorf("scope and refresh token: %q, want %q", got, "openid profile | no refresh token")
	}
}

// signIn fills the dev IdP's login page the browser is on as username and
// waits for the way back.
func signIn(t *testing.T, bctx context.Context, e *env, username string) {
	t.Helper()
	u, _ := e.idp.User(username)
	runSteps(t, bctx, "sign in as "+username, []step{
		{"see the dev IdP's login page", chromedp.WaitVisible(chromedp.ID(`username`))},
		{"type the username", chromedp.SendKeys(chromedp.ID(`username`), u.Username)},
		{"type the password", chromedp.SendKeys(chromedp.ID(`password`), u.Password)},
		{"submit", chromedp.Submit(chromedp.ID(`password`))},
		{"see the way back", chromedp.WaitVisible(chromedp.CSS(`#signout`))},
	})
}

// revoke asks the dev IdP to revoke refresh token rt.
func revoke(t *testing.T, e *env, rt string) {
	t.Helper()
	res, err := http.PostForm(e.idp.Issuer+"/protocol/openid-connect/revoke", url.Values{"token": {rt}, "token_type_hint": {"refresh_token"}, "client_id": {"avxrm"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("revoke = %d", res.StatusCode)
	}
}

func evalJS[T any](t *testing.T, bctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(bctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}

// waitJS waits until js is true in the page.
func waitJS(t *testing.T, bctx context.Context, what, js string) {
	t.Helper()
	for deadline := time.Now().Add(45 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ok, err := chromedp.Run(bctx, chromedp.Evaluate[bool](js))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 45 s for %s (%v)", what, err)
		}
	}
}
