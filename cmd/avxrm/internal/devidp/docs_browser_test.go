package devidp_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/devidp"
	"github.com/chromedp/chromedp"
)

// TestDocsPageAuthorize drives the Swagger UI page in headless Chromium
// against an API with auth on: "Try it out" on GET /queues answers 401
// without a token, and 200 after pasting a dev IdP token into Authorize.
func TestDocsPageAuthorize(t *testing.T) {
	e := start(t, devidp.Config{})
	token := e.login("viewer").AccessToken

	bctx := browserContext(t)

	openQueues(t, bctx, e.base)
	tryQueues(t, bctx, "401")

	runSteps(t, bctx, "Authorize with a token", []step{
		{"open Authorize", chromedp.Click(chromedp.CSS(`.auth-wrapper .btn.authorize`))},
		{"paste the token", chromedp.SendKeys(chromedp.ID(`auth-bearer-value`), token)},
		{"apply it", chromedp.Click(chromedp.CSS(`.modal-ux .auth-btn-wrapper button.authorize`))},
		{"see it applied", chromedp.WaitVisible(chromedp.CSS(`.modal-ux .auth-container h6`))},
		{"close the dialog", chromedp.Click(chromedp.CSS(`.modal-ux .auth-btn-wrapper .btn-done`))},
		{"see it closed", chromedp.WaitNotPresent(chromedp.CSS(`.modal-ux`))},
	})
	tryQueues(t, bctx, "200")
}

type step struct {
	what string
	do   chromedp.Action[chromedp.Void]
}

// TestDocsPagePasswordFlow drives the docs page's other way in: Authorize
// with the dev IdP's password flow (username, password, client_id avxrm),
// which the browser posts to the IdP's token endpoint, then "Try it out" on
// GET /queues answers 200 with the token it got.
func TestDocsPagePasswordFlow(t *testing.T) {
	e := start(t, devidp.Config{})
	u, _ := e.idp.User("viewer")
	bctx := browserContext(t)

	openQueues(t, bctx, e.base)
	tryQueues(t, bctx, "401")

	runSteps(t, bctx, "password flow", []step{
		{"open Authorize", chromedp.Click(chromedp.CSS(`.auth-wrapper .btn.authorize`))},
		{"type the username", chromedp.SendKeys(chromedp.ID(`oauth_username`), u.Username)},
		{"type the password", chromedp.SendKeys(chromedp.ID(`oauth_password`), u.Password)},
		{"type the client id", chromedp.SendKeys(chromedp.ID(`client_id_password`), "avxrm")},
		// A mouse click at the button's centre does not reach it in the
		// scrolled dialog under headless Chromium; the keyboard does, as it
		// would for a user.
		{"authorize", chromedp.Focus(chromedp.CSS(`.modal-ux button[aria-label="Apply given OAuth2 credentials"]`))},
		{"press Enter", chromedp.KeyEvent("\r")},
		{"see it authorized", chromedp.WaitVisible(chromedp.CSS(`.modal-ux button[aria-label="Remove authorization"]`))},
		{"close the dialog", chromedp.Focus(chromedp.CSS(`.modal-ux .close-modal`))},
		{"press Enter", chromedp.KeyEvent("\r")},
		{"see it closed", chromedp.WaitNotPresent(chromedp.CSS(`.modal-ux`))},
	})
	tryQueues(t, bctx, "200")
}

// browserContext is a headless Chromium tab that lives as long as t.
func browserContext(t *testing.T) context.Context {
	t.Helper()
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("headless Chromium is needed for this test and was not found (%v); `make test` installs it (apt-get install -y chromium)", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.Headless, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	bctx, cancelTimeout := context.WithTimeout(bctx, 4*time.Minute)
	t.Cleanup(cancelTimeout)
	return bctx
}

// tryQueues clicks "Execute" on the open GET /queues and waits for want in
// the answer's status.
func tryQueues(t *testing.T, bctx context.Context, want string) {
	t.Helper()
	err := chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS(queuesOp+` button.execute`)),
		chromedp.WaitVisible(chromedp.CSS(queuesOp+` .live-responses-table tr.response .response-col_status`)),
	)
	if err != nil {
		t.Fatalf("execute GET /queues: %v", err)
	}
	var got string
	for deadline := time.Now().Add(10 * time.Second); ; {
		got, err = chromedp.Run(bctx, chromedp.Text(chromedp.CSS(queuesOp+` .live-responses-table tr.response .response-col_status`)))
		if err == nil && strings.Contains(got, want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(got, want) {
		t.Fatalf("Try it out on GET /queues answered %q, want %s", got, want)
	}
}

// queuesOp is GET /queues on the docs page.
const queuesOp = `#operations-Queues-list-queues`

// openQueues opens the docs page and GET /queues on it.
func openQueues(t *testing.T, bctx context.Context, base string) {
	t.Helper()
	err := chromedp.Do(bctx,
		chromedp.Navigate(base+"/api/resources/docs"),
		chromedp.WaitVisible(chromedp.CSS(queuesOp)),
		chromedp.Click(chromedp.CSS(queuesOp+` .opblock-summary`)),
		chromedp.WaitVisible(chromedp.CSS(queuesOp+` button.execute`)),
	)
	if err != nil {
		t.Fatalf("the docs page did not offer GET /queues: %v", err)
	}
}

// runSteps runs each step with its own deadline and shows the dialog when one fails.
func runSteps(t *testing.T, bctx context.Context, phase string, list []step) {
	t.Helper()
	for _, st := range list {
		ctx, cancel := context.WithTimeout(bctx, 45*time.Second)
		err := chromedp.Do(ctx, st.do)
		cancel()
		if err != nil {
			html, _ := chromedp.Run(bctx, chromedp.OuterHTML(chromedp.CSS(`.modal-ux .modal-ux-content`)))
			t.Fatalf("%s: %s: %v\n%s", phase, st.what, err, html)
		}
	}
}
