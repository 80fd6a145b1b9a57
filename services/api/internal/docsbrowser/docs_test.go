// Package docsbrowser_test opens the Swagger UI page in headless Chromium. It
// is a package of its own so that only it pays for building chromedp.
package docsbrowser_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/api"
	"github.com/chromedp/chromedp"
)

// TestDocsPageListsQueueOperations serves a real API and checks, in a real
// browser, that Swagger UI renders the queue operations from the embedded
// assets and the served OpenAPI document, and offers the bearer Authorize
// button.
func TestDocsPageListsQueueOperations(t *testing.T) {
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("headless Chromium is needed for this test and was not found (%v); `make test` installs it (apt-get install -y chromium)", err)
	}

	uri, _ := mongotest.Start(t)
	db := mongotest.Client(t, uri).Database("rm")
	ob := outbox.New(events.NewPublisher(eventstest.Run(t)), nil)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svc, err := api.New(ctx, api.Config{}, api.Deps{DB: db, Outbox: ob, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	bctx, cancelTimeout := context.WithTimeout(bctx, 90*time.Second)
	defer cancelTimeout()

	// Operations render once the UI has fetched and parsed openapi.json.
	err = chromedp.Do(bctx,
		chromedp.Navigate(srv.URL+"/api/resources/docs"),
		chromedp.WaitVisible(chromedp.CSS(`#operations-Queues-create-queue`)),
	)
	if err != nil {
		t.Fatalf("Swagger UI did not render the queue operations: %v", err)
	}
	text, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(`#swagger-ui`)))
	if err != nil {
		t.Fatal(err)
	}
	authorize, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(`.btn.authorize`)))
	if err != nil {
		t.Fatalf("no Authorize button (bearer scheme): %v", err)
	}
	// Paths are relative to the document's servers entry (/api/resources/v1),
	// which the page shows; placeholders in descriptions survive Markdown.
	for _, want := range []string{"/queues", "/queues/{queue_id}", "/api/resources/v1", "create-queue", "Resource Manager API", `ETag: "<version>"`} {
		if !strings.Contains(text, want) {
			t.Errorf("the rendered page lacks %q", want)
		}
	}
	if !strings.Contains(authorize, "Authorize") {
		t.Errorf("no Authorize button (bearer scheme): %q", authorize)
	}

	// "Try it out" requests the server root + servers entry + path.
	const op = `#operations-Queues-list-queues`
	err = chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS(op+` .opblock-summary`)),
		chromedp.WaitVisible(chromedp.CSS(op+` .execute`)),
		chromedp.Click(chromedp.CSS(op+` .execute`)),
		chromedp.WaitVisible(chromedp.CSS(op+` .live-responses-table tbody .response-col_status`)),
	)
	if err != nil {
		t.Fatalf("Try it out on list-queues: %v", err)
	}
	status, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(op+` .live-responses-table tbody .response-col_status`)))
	if err != nil {
		t.Fatal(err)
	}
	requestURL, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(op+` .request-url`)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(status, "200") || !strings.Contains(requestURL, srv.URL+"/api/resources/v1/queues") {
		t.Errorf("Try it out: status %q, request URL %q; want 200 from %s/api/resources/v1/queues", status, requestURL, srv.URL)
	}
}
