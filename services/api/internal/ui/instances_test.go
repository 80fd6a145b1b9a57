package ui_test

import (
	"bytes"
	"context"
	"html"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/pkg/events/outbox"
)

// A job with more instances than the 1,000 its record carries lists all of
// them on its page, 50 a page, following GET /jobs/{id}/instances' cursors;
// its artifacts link to their downloads, which answer their bytes.
func TestJobPageInstancesAndArtifactLinks(t *testing.T) {
	e := startEnv(t)
	q := e.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "wide", "maximum_allowed_worker_instances": 2000}, http.StatusCreated)
	const workers = 1199
	id := e.submit("wide-job", q["id"].(string), workers, nil)

	// The scheduler and the launcher are not running: write what they would.
	ctx := context.Background()
	ob := outbox.New(events.NewPublisher(e.js), nil)
	if _, err := jobdoc.New(e.db, ob, jobdoc.Scheduler, "/scheduler").Update(ctx, id, func(j *events.Job, now time.Time) ([]string, error) {
		j.Status, j.AdmittedAt = events.JobAdmitted, &now
		return []string{events.TypeJobAdmitted}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := jobdoc.New(e.db, ob, jobdoc.Launcher, "/launcher").Update(ctx, id, func(j *events.Job, now time.Time) ([]string, error) {
		j.Instances = append(j.Instances, events.Instance{Role: events.RoleController, Status: events.InstanceRunning, StartedAt: &now})
		for i := range workers {
			st := events.InstanceRunning
			if i%3 == 0 {
				st = events.InstanceSucceeded
			}
			j.Instances = append(j.Instances, events.Instance{Role: events.RoleWorker, Index: i, Status: st, StartedAt: &now})
		}
		j.Status, j.StartedAt = events.JobRunning, &now
		return []string{events.TypeJobRunning}, nil
	}); err != nil {
		t.Fatal(err)
	}

	rowRe := regexp.MustCompile(`<tr data-key="((?:controller|worker)/[0-9]+)">`)
	nextRe := regexp.MustCompile(`<a href="([^"]+)" rel="next">Next`)
	walk := func(first string) (seen map[string]bool, pages int, lastPage string) {
		seen = map[string]bool{}
		for path := first; path != ""; pages++ {
			p := e.page(path)
			for _, m := range rowRe.FindAllStringSubmatch(p, -1) {
				if seen[m[1]] {
					t.Fatalf("%s listed twice (page %d)", m[1], pages+1)
				}
				seen[m[1]] = true
			}
			lastPage, path = p, ""
			if m := nextRe.FindStringSubmatch(p); m != nil {
				path = html.UnescapeString(m[1])
			}
			if pages > 40 {
				t.Fatal("more pages than instances")
			}
		}
		return seen, pages, lastPage
	}
	seen, pages, last := walk("/ui/jobs/" + id)
	if len(seen) != workers+1 || pages != 24 || !seen["worker/1198"] || !seen["controller/0"] {
		t.Errorf("listed %d instances on %d pages, want %d on 24", len(seen), pages, workers+1)
	}
	wantIn(t, "the last page", last, "page 24 of 24", "« First page")
	// The status filter pages the same way: 400 of the workers succeeded.
	seen, pages, _ = walk("/ui/jobs/" + id + "?istatus=succeeded")
	if len(seen) != 400 || pages != 8 {
		t.Errorf("succeeded: %d instances on %d pages, want 400 on 8", len(seen), pages)
	}
	if st, body, _ := e.do(http.MethodGet, "/ui/jobs/"+id+"?icursor=zzz", nil); st != http.StatusBadRequest || !strings.Contains(body, "icursor") {
		t.Errorf("a bad icursor: %d %s", st, body)
	}

	// An artifact's link is its download.
	data := []byte("<OpenSCENARIO/>")
	req, _ := http.NewRequest(http.MethodPut, e.base+"/api/resources/v1/jobs/"+id+"/artifacts/scenarios/s-001/dir/a%20b.xosc", bytes.NewReader(data))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %v %v", resp, err)
	}
	resp.Body.Close()
	p := e.page("/ui/jobs/" + id)
	link := regexp.MustCompile(`<a href="([^"]+)" download="a b.xosc" data-auth-link>`).FindStringSubmatch(p)
	if link == nil {
		t.Fatalf("no download link for the artifact on the job page")
	}
	if want := "/api/resources/v1/jobs/" + id + "/artifacts/scenarios/s-001/dir/a%20b.xosc"; html.UnescapeString(link[1]) != want {
		t.Errorf("link %s, want %s", link[1], want)
	}
	resp, err = http.Get(e.base + html.UnescapeString(link[1]))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
		t.Errorf("the link answers %d %q", resp.StatusCode, got)
	}
}

// A failed job's page shows, unasked, the log of the instance whose
// failure failed it (the first to fail), not worker 0's; a log asked for
// is shown instead. Its earlier attempts are listed with how they ended.
func TestFailedJobPageShowsTheFailingInstancesLog(t *testing.T) {
	e := startEnv(t)
	q := e.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "Q", "maximum_allowed_worker_instances": 3}, http.StatusCreated)
	id := e.submit("fails", q["id"].(string), 3, nil)

	// The scheduler and the launcher are not running: write what they would.
	ctx := context.Background()
	ob := outbox.New(events.NewPublisher(e.js), nil)
	if _, err := jobdoc.New(e.db, ob, jobdoc.Launcher, "/launcher").Update(ctx, id, func(j *events.Job, now time.Time) ([]string, error) {
		start, first, later := now.Add(-3*time.Second), now.Add(-2*time.Second), now.Add(-time.Second)
		code := 2
		j.Instances = []events.Instance{
			{Role: events.RoleController, Status: events.InstanceStopped, StartedAt: &start, FinishedAt: &later},
			{Role: events.RoleWorker, Index: 0, Status: events.InstanceFailed, ExitCode: &code, StartedAt: &start, FinishedAt: &later},
			{Role: events.RoleWorker, Index: 1, Status: events.InstanceStopped, StartedAt: &start, FinishedAt: &later},
			{Role: events.RoleWorker, Index: 2, Status: events.InstanceFailed, ExitCode: &code, StartedAt: &start, FinishedAt: &first},
		}
		j.Status, j.StartedAt, j.FinishedAt = events.JobFailed, &start, &later
		j.Attempt = 2
		j.Attempts = []events.JobAttempt{{Attempt: 1, Outcome: "lost", Reason: "InstanceLost", Message: "worker 1 was lost", StartedAt: &start, FinishedAt: start}}
		return []string{events.TypeJobFailed}, nil
	}); err != nil {
		t.Fatal(err)
	}
	wantIn(t, "the failed job's page", e.page("/ui/jobs/"+id), "<option selected>worker/2</option>", `id="log-error"`,
		"· attempt 2", `<h2 id="att-h">Earlier attempts</h2>`, `<tr data-key="1"><td class="num">1</td><td><span class="status s-lost">lost</span></td><td><strong>InstanceLost</strong> worker 1 was lost</td>`)
	wantIn(t, "the page asking for worker 0's log", e.page("/ui/jobs/"+id+"?log=worker/0"), "<option selected>worker/0</option>")
}
