package ui_test

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// newBrowser starts headless Debian Chromium at a laptop's screen size,
// stopped when t ends.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("headless Chromium is needed for this test and was not found (%v); `make test` installs it (apt-get install -y chromium)", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.Headless, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1366, 768))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	ctx, cancelTimeout := context.WithTimeout(ctx, time.Minute)
	t.Cleanup(cancelTimeout)
	if err := chromedp.Do(ctx); err != nil { // starts the browser outside any shorter wait
		t.Fatal(err)
	}
	return ctx
}

// waitJS waits until the expression is true in the page, at most 10 s.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(25 * time.Millisecond) {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			dbg, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('main').outerHTML.slice(0, 3000)`))
			t.Fatalf("%s: not so within 10 s (%s; %v)\n%s", what, expr, err, dbg)
		}
	}
}

// text is the text of the element with id, "" if there is none.
func text(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.getElementById('`+id+`') || {}).textContent || ''`))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// What a button or the limit editor did is still said after the live
// refresh that follows it, also when the refresh rebuilds the region the
// message is in (a button came or went); a limit saved over a change made
// meanwhile (stale If-Match) shows the queue's current limit and says so.
func TestActionResultsStayShown(t *testing.T) {
	e := startEnv(t)
	ctx := newBrowser(t)
	e.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "Acts", "maximum_allowed_worker_instances": 10}, http.StatusCreated)
	id := e.submit("act", "Acts", 2, nil)
	if st, raw, _ := e.do(http.MethodPut, "/api/resources/v1/jobs/"+id+"/artifacts/assets/map.xodr", []byte("<road/>"),
		"Content-Type", "application/octet-stream"); st/100 != 2 {
		t.Fatalf("upload an asset: %d %s", st, raw)
	}
	refreshed := func() int {
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`Number(document.getElementById('main').dataset.refreshed || 0)`))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	confirm := func(button string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(button)), chromedp.WaitVisible(chromedp.CSS(`#confirm-ok`)),
			chromedp.Click(chromedp.CSS(`#confirm-ok`))); err != nil {
			t.Fatalf("click %s and confirm: %v", button, err)
		}
	}

	if err := chromedp.Do(ctx, chromedp.Navigate(e.base+"/ui/jobs/"+id), chromedp.WaitVisible(chromedp.CSS(`#live[data-state="on"]`))); err != nil {
		t.Fatal(err)
	}
	before := refreshed()
	confirm(`.actions button.danger`)
	// The cancel's event refreshes the page: its button now says so.
	waitJS(t, ctx, "the page shows the cancel", `!document.querySelector('.actions button.danger:not([disabled])') && Number(document.getElementById('main').dataset.refreshed || 0) > `+strconv.Itoa(before))
	time.Sleep(300 * time.Millisecond) // any further refresh
	if got := text(t, ctx, "actions-msg"); got != "Requested: cancel job." {
		t.Errorf("after the cancel and the refresh, the actions say %q, want %q", got, "Requested: cancel job.")
	}
	confirm(`#art-h ~ p button[data-action]`)
	waitJS(t, ctx, "the export button answers", `document.getElementById('export-msg').textContent !== ''`)
	if got := text(t, ctx, "export-msg"); got != "Requested: build a zip of the assets." {
		t.Errorf("the export button says %q", got)
	}

	// The limit editor: 7 is typed while someone else sets 20.
	if err := chromedp.Do(ctx, chromedp.Navigate(e.base+"/ui/queues/Acts"), chromedp.WaitVisible(chromedp.CSS(`#live[data-state="on"]`)),
		chromedp.Focus(chromedp.CSS(`#limit-input`)), chromedp.SetValue(chromedp.CSS(`#limit-input`), "7")); err != nil {
		t.Fatal(err)
	}
	e.must(http.MethodPatch, "/api/resources/v1/queues/Acts", map[string]any{"maximum_allowed_worker_instances": 20}, http.StatusOK)
	waitJS(t, ctx, "the page shows the limit set meanwhile", `!!document.querySelector('.summary [data-usage="0/20"]')`)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#limit-form button[type="submit"]`))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the limit editor answers", `document.getElementById('limit-msg').textContent !== ''`)
	time.Sleep(300 * time.Millisecond)
	if got := text(t, ctx, "limit-msg"); !strings.Contains(got, "changed meanwhile") {
		t.Errorf("a save over a change made meanwhile says %q", got)
	}
	if v, _ := chromedp.Run(ctx, chromedp.Value(chromedp.CSS(`#limit-input`))); v != "20" {
		t.Errorf("after a stale save the limit editor shows %q, want the queue's current 20", v)
	}
	before = refreshed()
	if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS(`#limit-input`), "12"), chromedp.Click(chromedp.CSS(`#limit-form button[type="submit"]`))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the saved limit shows", `!!document.querySelector('.summary [data-usage="0/12"]') && Number(document.getElementById('main').dataset.refreshed || 0) > `+strconv.Itoa(before))
	time.Sleep(300 * time.Millisecond)
	if got := text(t, ctx, "limit-msg"); got != "Saved: at most 12 workers." {
		t.Errorf("after saving and the refresh, the limit editor says %q", got)
	}
	if r := e.must(http.MethodGet, "/api/resources/v1/queues/Acts", nil, http.StatusOK); r["maximum_allowed_worker_instances"] != float64(12) {
		t.Errorf("the queue's limit is %v, want 12", r["maximum_allowed_worker_instances"])
	}
}

// The pages load without an error in the browser's console (a missing
// favicon.ico was one on every page).
func TestPagesLoadWithoutConsoleErrors(t *testing.T) {
	e := startEnv(t)
	ctx := newBrowser(t)
	e.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "Quiet", "maximum_allowed_worker_instances": 4}, http.StatusCreated)
	id := e.submit("quiet", "Quiet", 1, nil)
	var mu sync.Mutex
	var errs []string
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				mu.Lock()
				errs = append(errs, m.Text+" ("+m.URL+")")
				mu.Unlock()
			}
		}
	}()
	for _, path := range []string{"/ui/queues", "/ui/queues/Quiet", "/ui/jobs", "/ui/jobs/" + id, "/ui/events"} {
		if err := chromedp.Do(ctx, chromedp.Navigate(e.base+path), chromedp.WaitVisible(chromedp.CSS(`#live[data-state="on"]`))); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	time.Sleep(300 * time.Millisecond) // the last page's requests
	mu.Lock()
	defer mu.Unlock()
	for _, m := range errs {
		t.Errorf("console: %s", m)
	}
}

// A job's page shows a scenario export of the job as soon as it is asked
// for, without a reload: it follows the stream's job_id, which selects the
// job's exports' events too (it selected job events alone, so the page
// followed its whole queue).
func TestJobPageShowsItsExportsLive(t *testing.T) {
	e := startEnv(t)
	ctx := newBrowser(t)
	e.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "Zips", "maximum_allowed_worker_instances": 4}, http.StatusCreated)
	id := e.submit("zipped", "Zips", 1, nil)
	if err := chromedp.Do(ctx, chromedp.Navigate(e.base+"/ui/jobs/"+id), chromedp.WaitVisible(chromedp.CSS(`#live[data-state="on"]`))); err != nil {
		t.Fatal(err)
	}
	x := e.must(http.MethodPost, "/api/resources/v1/jobs/"+id+"/scenario-exports", map[string]any{"include": []string{"asset"}}, http.StatusAccepted)
	waitJS(t, ctx, "the export appears on the open page", `!!document.querySelector('#exports tr[data-key="`+x["id"].(string)+`"]')`)
	if live, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('main').dataset.live`)); err != nil || !strings.HasPrefix(live, "job_id="+id+"&") {
		t.Errorf("the job's page follows %q (%v), want the stream of job_id=%s", live, err, id)
	}
}

// The feed names a queue where an event gives its id alone (an export's, a
// deployment's): in the rows the server renders and in those added live, for
// a queue created while the page is open too; a plugin's row names none (it
// showed the id, and "_" for a resource without a queue).
func TestEventFeedNamesQueues(t *testing.T) {
	e := startEnv(t)
	ctx := newBrowser(t)
	e.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "Named", "maximum_allowed_worker_instances": 4}, http.StatusCreated)
	before := e.submit("before", "Named", 1, nil)
	e.must(http.MethodPost, "/api/resources/v1/jobs/"+before+"/scenario-exports", map[string]any{"include": []string{"asset"}}, http.StatusAccepted)
	if err := chromedp.Do(ctx, chromedp.Navigate(e.base+"/ui/events"), chromedp.WaitVisible(chromedp.CSS(`#live[data-state="on"]`))); err != nil {
		t.Fatal(err)
	}
	queueOf := func(typ string) string { // the queue cells of the rows of typ, oldest first
		return `[...document.querySelectorAll('#feed tbody tr')].filter((r) => r.cells[2].textContent === '` + typ +
			`').map((r) => r.cells[4].textContent).reverse().join(',')`
	}
	rendered, err := chromedp.Run(ctx, chromedp.Evaluate[string](queueOf("rm.export.requested")))
	if err != nil {
		t.Fatal(err)
	}
	if rendered != "Named" {
		t.Fatalf("the rendered export row names its queue %q, want Named", rendered)
	}

	e.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "Later", "maximum_allowed_worker_instances": 4}, http.StatusCreated)
	later := e.submit("later", "Later", 1, nil)
	e.must(http.MethodPost, "/api/resources/v1/jobs/"+later+"/scenario-exports", map[string]any{"include": []string{"asset"}}, http.StatusAccepted)
	e.must(http.MethodPost, "/api/resources/v1/plugins", map[string]any{"name": "sim2", "type": "simulated", "config": map[string]any{"run_seconds": 1}}, http.StatusCreated)
	// Events come in order: once the plugin's row is there, the export's is.
	waitJS(t, ctx, "the plugin's row is added", `[...document.querySelectorAll('#feed tbody tr')].some((r) => r.cells[2].textContent === 'rm.plugin.created')`)
	live, err := chromedp.Run(ctx, chromedp.Evaluate[string](queueOf("rm.export.requested")))
	if err != nil {
		t.Fatal(err)
	}
	plugin, err := chromedp.Run(ctx, chromedp.Evaluate[string](queueOf("rm.plugin.created")))
	if err != nil {
		t.Fatal(err)
	}
	if live != "Named,Later" || plugin != "" {
		t.Fatalf("export rows name their queues %q, want Named,Later; the plugin's row %q, want none", live, plugin)
	}
}
