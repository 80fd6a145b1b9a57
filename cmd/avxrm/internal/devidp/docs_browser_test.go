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
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("headless Chromium is needed for this test and was not found (%v); `make test` installs it (apt-get install -y chromium)", err)
	}
	e := start(t, devidp.Config{})
	token := e.login("viewer").AccessToken

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.Headless, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	bctx, cancelTimeout := context.WithTimeout(bctx, 4*time.Minute)
	defer cancelTimeout()

	const op = `#operations-Queues-list-queues`
	status := func(want string) {
		t.Helper()
		err := chromedp.Do(bctx,
			chromedp.Click(chromedp.CSS(op+` button.execute`)),
			chromedp.WaitVisible(chromedp.CSS(op+` .live-responses-table tr.response .response-col_status`)),
		)
		if err != nil {
			t.Fatalf("execute GET /queues: %v", err)
		}
		var got string
		for deadline := time.Now().Add(10 * time.Second); ; {
			got, err = chromedp.Run(bctx, chromedp.Text(chromedp.CSS(op+` .live-responses-table tr.response .response-col_status`)))
			if err == nil && strings.Contains(got, want) || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !strings.Contains(got, want) {
			t.Fatalf("Try it out on GET /queues answered %q, want %s", got, want)
		}
	}
	err = chromedp.Do(bctx,
		chromedp.Navigate(e.base+"/api/resources/docs"),
		chromedp.WaitVisible(chromedp.CSS(op)),
		chromedp.Click(chromedp.CSS(op+` .opblock-summary`)),
		chromedp.WaitVisible(chromedp.CSS(op+` button.execute`)),
	)
	if err != nil {
		t.Fatalf("the docs page did not offer GET /queues: %v", err)
	}
	status("401")

	steps := func(phase string, list []step) {
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
	steps("Authorize with a token", []step{
		{"open Authorize", chromedp.Click(chromedp.CSS(`.auth-wrapper .btn.authorize`))},
		{"paste the token", chromedp.SendKeys(chromedp.ID(`auth-bearer-value`), token)},
		{"apply it", chromedp.Click(chromedp.CSS(`.modal-ux .auth-btn-wrapper button.authorize`))},
		{"see it applied", chromedp.WaitVisible(chromedp.CSS(`.modal-ux .auth-container h6`))},
		{"close the dialog", chromedp.Click(chromedp.CSS(`.modal-ux .auth-btn-wrapper .btn-done`))},
		{"see it closed", chromedp.WaitNotPresent(chromedp.CSS(`.modal-ux`))},
	})
	status("200")
}

type step struct {
	what string
	do   chromedp.Action[chromedp.Void]
}
