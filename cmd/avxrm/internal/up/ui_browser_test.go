package up_test

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/chromedp/chromedp"
)

// waiterScript is the command of the web view test's application: it prints
// a line, then runs until the file $UNTIL exists, so the test decides when a
// job ends.
const waiterScript = `echo "hello from $RM_ROLE $RM_INSTANCE_INDEX of $RM_JOB_ID"
while [ ! -e "$UNTIL" ]; do sleep 0.05; done`

// screenshotDir is where the web view test writes its screenshots:
// $RM_UI_SCREENSHOTS if set (kept for people to look at), else a temp dir.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("RM_UI_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// newBrowser starts headless Debian Chromium at a laptop's screen size.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("headless Chromium is needed for this test and was not found (%v); `make test` installs it (apt-get install -y chromium)", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.Headless, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1366, 768),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancelTimeout)
	if err := chromedp.Do(ctx); err != nil { // starts the browser outside any shorter timeout
		t.Fatal(err)
	}
	return ctx
}

// shoot writes a full-page PNG of what the browser shows.
func shoot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// The worked example of the product documents, watched in the web view:
// queue Default allows 10 workers, job 1 takes all 10, job 2 (8 workers)
// waits with its reason; when job 1 ends, the open queue page shows job 2
// running without being reloaded. The job page shows its timeline and a
// worker's log.
func TestWebViewShowsTheWorkedExampleLive(t *testing.T) {
	ctx := newBrowser(t)
	shots := screenshotDir(t)
	sys := startSystemIn(t, t.TempDir())
	c := newClient(t, sys.HTTPAddr)
	base := "http://" + sys.HTTPAddr
	var app struct {
		ID string `json:"id"`
	}
	c.must(http.MethodPost, "/api/resources/v1/applications", map[string]any{
		"name": "waiter", "version": "1", "image": "local", "command": []string{"/bin/sh", "-c", waiterScript},
	}, http.StatusCreated, &app)
	c.createQueue("Default", 10)
	end1, end2 := filepath.Join(t.TempDir(), "end-1"), filepath.Join(t.TempDir(), "end-2")
	t.Cleanup(func() { // whatever happens, let the instances end
		_ = os.WriteFile(end1, nil, 0o644)
		_ = os.WriteFile(end2, nil, 0o644)
	})

	// Job 1 says how long it may run, so job 2 gets a start estimate.
	var j1 events.Job
	c.must(http.MethodPost, jobsPath, map[string]any{
		"queue_id": "Default", "worker_instances": 10, "application": map[string]any{"id": app.ID},
		"environment_variables": map[string]string{"UNTIL": end1}, "max_run_seconds": 3600,
	}, http.StatusCreated, &j1)
	c.waitJobFor(j1.ID, "running", 30*time.Second, hasStatus(events.JobRunning))
	j2 := c.submitApp("Default", app.ID, 8, map[string]string{"UNTIL": end2})
	c.waitJobFor(j2.ID, "pending", 10*time.Second, hasStatus(events.JobPending))
	// The scheduler writes its estimates apart from the job's events.
	c.waitJobFor(j2.ID, "estimated", 10*time.Second, func(j events.Job) bool { return j.EstimatedStartAt.Known })

	// Queues: Default's bar is full, the built-in queues are there.
	err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/ui/queues"),
		chromedp.WaitVisible(chromedp.CSS(`#queue-Default .usage.full [data-usage="10/10"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#queue-simulation-controller-queue .badge`)),
		chromedp.WaitVisible(chromedp.CSS(`#queue-post-controller-queue .badge`)),
	)
	if err != nil {
		t.Fatalf("queues page: %v", err)
	}
	shoot(t, ctx, shots, "1-queues.png")

	// The queue: 10/10, job 1 running, job 2 pending with its reason and numbers.
	pendingRow := `#pending tr[data-job="` + j2.ID + `"]`
	err = chromedp.Do(ctx,
		chromedp.Navigate(base+"/ui/queues/Default"),
		chromedp.WaitVisible(chromedp.CSS(`.summary [data-usage="10/10"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#running tr[data-job="`+j1.ID+`"][data-status="running"]`)),
		chromedp.WaitVisible(chromedp.CSS(pendingRow)),
		chromedp.WaitVisible(chromedp.CSS(`#live[data-state="on"]`)), // following the event stream
	)
	if err != nil {
		t.Fatalf("queue page: %v", err)
	}
	reason, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(pendingRow+` td.reason`)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"InsufficientWorkerCapacity", "queue Default allows 10 worker instances, 10 in use, job needs 8", "needs 8 workers, 0 free of 10"} {
		if !strings.Contains(reason, want) {
			t.Errorf("job 2's reason reads %q, want it to say %q", reason, want)
		}
	}
	// Its place and estimated start, from the scheduler's snapshot.
	place, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('`+pendingRow+` td.position, `+pendingRow+` td.estimate')].map(td => td.innerText.trim())`))
	if err != nil {
		t.Fatal(err)
	}
	if len(place) != 2 || place[0] != "1" || !strings.HasSuffix(place[1], "(max_run_seconds)") || strings.HasPrefix(place[1], "unknown") {
		t.Errorf("job 2's position and estimate read %q, want 1 and a time (max_run_seconds)", place)
	}
	// A mark that a reload would wipe.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.rmTestMark = true`)); err != nil {
		t.Fatal(err)
	}
	shoot(t, ctx, shots, "2-queue-full-job2-pending.png")

	// Job 1 ends; on the open page job 2 must move from the pending list to
	// the running one (admitted, then running) within 2 s.
	if err := os.WriteFile(end1, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c.waitJobFor(j1.ID, "final", 30*time.Second, isFinal)
	moved := `document.querySelector('#running tr[data-job="` + j2.ID + `"]') !== null && !document.querySelector('` + pendingRow + `')`
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](moved, chromedp.WithPollingTimeout(2*time.Second))); err != nil {
		j, one := c.job(j2.ID), c.job(j1.ID)
		shown, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#running').innerText + ' | ' + document.querySelector('#pending').innerText + ' | live: ' + document.getElementById('live').textContent + ' | refreshed ' + document.getElementById('main').dataset.refreshed`))
		t.Fatalf("job 2 was not shown running within 2 s of job 1 ending: %v\njob 1 finished %v; job 2 %s, admitted %v, started %v\nthe page shows: %s",
			err, one.FinishedAt, j.Status, j.AdmittedAt, j.StartedAt, shown)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector('#running tr[data-job="`+j2.ID+`"][data-status="running"]') !== null`,
		chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("job 2 was not shown with status running: %v", err)
	}
	if mark, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.rmTestMark === true`)); err != nil || !mark {
		t.Errorf("the queue page was reloaded (mark %v, %v); it should have been patched in place", mark, err)
	}
	usage, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`.summary .usage-text`)))
	if err != nil || strings.TrimSpace(usage) != "8 / 10" {
		t.Errorf("usage after the hand-over reads %q (%v), want 8 / 10", usage, err)
	}
	shoot(t, ctx, shots, "3-queue-job2-running.png")

	// The limit editor PATCHes the queue; the page shows the new limit.
	err = chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS(`#limit-input`), "12"),
		chromedp.Click(chromedp.CSS(`#limit-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.summary [data-usage="8/12"]`)),
	)
	if err != nil {
		t.Fatalf("limit editor: %v", err)
	}
	if q := c.queue("Default"); q.MaximumAllowedWorkerInstances == nil || *q.MaximumAllowedWorkerInstances != 12 {
		t.Errorf("after the limit editor the queue's limit is %v, want 12", q.MaximumAllowedWorkerInstances)
	}

	// The job: its timeline up to running, and worker 0's log.
	err = chromedp.Do(ctx,
		chromedp.Navigate(base+"/ui/jobs/"+j2.ID),
		chromedp.WaitVisible(chromedp.CSS(`#timeline li.reached[data-step="pending"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#timeline li.reached.current[data-step="running"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#log`)),
	)
	if err != nil {
		t.Fatalf("job page: %v", err)
	}
	timeline, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#timeline`)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"submitted", "pending", "admitted", "running", "so far"} {
		if !strings.Contains(strings.ToLower(timeline), want) {
			t.Errorf("timeline %q lacks %q", timeline, want)
		}
	}
	logText, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#log`)))
	if want := "hello from worker 0 of " + j2.ID; err != nil || !strings.Contains(logText, want) {
		t.Errorf("log tail reads %q (%v), want %q", logText, err, want)
	}
	shoot(t, ctx, shots, "4-job.png")

	// The job ends while its page is open: the timeline closes without a reload.
	if err := os.WriteFile(end2, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.rmTestMark = true`)); err != nil {
		t.Fatal(err)
	}
	c.waitJobFor(j2.ID, "final", 30*time.Second, isFinal)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector('#timeline li.reached[data-step="succeeded"]') !== null && window.rmTestMark === true`,
		chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Errorf("the open job page did not show the job succeeded: %v", err)
	}
	shoot(t, ctx, shots, "5-job-succeeded.png")

	// Jobs, filtered by queue; and the event feed.
	err = chromedp.Do(ctx,
		chromedp.Navigate(base+"/ui/jobs?queue=Default"),
		chromedp.WaitVisible(chromedp.CSS(`#jobs tr[data-key="`+j1.ID+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#jobs tr[data-key="`+j2.ID+`"]`)),
	)
	if err != nil {
		t.Fatalf("jobs page: %v", err)
	}
	shoot(t, ctx, shots, "6-jobs.png")
	err = chromedp.Do(ctx,
		chromedp.Navigate(base+"/ui/events"),
		chromedp.WaitVisible(chromedp.CSS(`#feed tbody tr`)),
		chromedp.WaitVisible(chromedp.CSS(`#live[data-state="on"]`)),
	)
	if err != nil {
		t.Fatalf("events page: %v", err)
	}
	// A new event appears at the top of the open feed.
	c.createQueue("later", 3)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`(document.querySelector('#feed tbody tr') || {}).textContent.includes('rm.queue.created')`,
		chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Errorf("the open feed did not show the new queue's event: %v", err)
	}
	shoot(t, ctx, shots, "7-events.png")
	t.Logf("screenshots in %s", shots)
}
