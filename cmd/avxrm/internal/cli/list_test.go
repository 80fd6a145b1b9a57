package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
	"github.com/google/go-cmp/cmp"
)

// pagedJobs is a fake API whose GET /jobs answers jobs, filtered by
// ?status=, in pages of size (next_cursor: the page's last id), as the API
// lists them in the order of their ids. Before it answers a page after the
// first, it calls before with the page's cursor; a page for which fail
// says true is answered 400.
type pagedJobs struct {
	jobs   []string // JSON objects, in the order of their ids
	size   int
	before func(r *http.Request)
	fail   func(cursor string) bool
}

func (p *pagedJobs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/jobs") {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"title":"Not Found","status":404,"detail":"no ` + r.URL.Path + `"}`))
		return
	}
	cursor, status := r.URL.Query().Get("cursor"), r.URL.Query().Get("status")
	if cursor != "" && p.before != nil {
		p.before(r)
	}
	if p.fail != nil && p.fail(cursor) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"title":"Bad Request","status":400,"detail":"the store failed on page 2"}`))
		return
	}
	var items []string
	next, last := "", ""
	for _, j := range p.jobs {
		var v struct{ ID, Status string }
		if err := json.Unmarshal([]byte(j), &v); err != nil {
			panic(err)
		}
		if v.ID <= cursor || status != "" && v.Status != status {
			continue
		}
		if len(items) == p.size {
			next = `,"next_cursor":"` + last + `"`
			break
		}
		items, last = append(items, j), v.ID
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"items":[%s]%s}`, strings.Join(items, ","), next)
}

// someJobs are n jobs job-01… of status, named so that a later one can be
// wider than the earlier.
func someJobs(n int, status string, name func(i int) string) []string {
	var jobs []string
	for i := 1; i <= n; i++ {
		jobs = append(jobs, fmt.Sprintf(`{"id":"job-%02d","name":%q,"queue_id":"q-1","queue_name":"Default","status":%q,"worker_instances":%d,"application":{"id":"app-1"},"labels":{"html":"<b>&"}}`,
			i, name(i), status, i))
	}
	return jobs
}

// tableOf is the table printItems printed of items before lists were
// printed a page at a time: all rows laid out by one tabwriter.
func tableOf(t *testing.T, items []string, cols []column) string {
	t.Helper()
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	hs := make([]string, len(cols))
	for i, c := range cols {
		hs[i] = c.header
	}
	fmt.Fprintln(tw, strings.Join(hs, "\t"))
	for _, raw := range items {
		var m map[string]any
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			t.Fatal(err)
		}
		vs := make([]string, len(cols))
		for i, c := range cols {
			vs[i] = strings.ReplaceAll(c.value(m), "\t", " ")
		}
		fmt.Fprintln(tw, strings.Join(vs, "\t"))
	}
	_ = tw.Flush()
	return b.String()
}

// 'jobs ls' prints the rows of a page as it comes: the first page's are on
// stdout before the second page is answered (a campaign of 40,000 jobs
// showed nothing for minutes, held in memory until the last page). The
// first page is laid out as a table of it alone would be; a later row
// whose value is wider than its column widens its own row only.
func TestJobsLsPrintsEachPageAsItComes(t *testing.T) {
	jobs := someJobs(7, "succeeded", func(i int) string {
		if i == 5 {
			return "a-name-wider-than-the-first-page-had"
		}
		return fmt.Sprintf("n%d", i)
	})
	var out, errOut eventstest.SyncBuffer
	var mu sync.Mutex
	var seenBefore []int // job rows on stdout as each later page was asked for
	srv := httptest.NewServer(&pagedJobs{jobs: jobs, size: 3, before: func(r *http.Request) {
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), "job-03") && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		mu.Lock()
		seenBefore = append(seenBefore, strings.Count(out.String(), "job-"))
		mu.Unlock()
	}})
	t.Cleanup(srv.Close)
	if err := runCLIContext(t, context.Background(), srv.URL, &out, &errOut, "jobs", "ls", "-A"); err != nil {
		t.Fatalf("jobs ls -A: %v (%s)", err, errOut.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seenBefore) == 0 || seenBefore[0] != 3 {
		t.Errorf("job rows printed when the second page was asked for: %v; want the first page's 3", seenBefore)
	}
	lines := strings.SplitAfter(out.String(), "\n")
	if first := strings.Join(lines[:4], ""); first != tableOf(t, jobs[:3], jobCols) {
		t.Errorf("the header and first page:\n%s\nwant them as a table of that page alone:\n%s", first, tableOf(t, jobs[:3], jobCols))
	}
	header := lines[0]
	for _, l := range lines[4:8] {
		wide := strings.Contains(l, "a-name-wider")
		aligned := strings.Index(l, "Default") == strings.Index(header, "QUEUE")
		if wide == aligned {
			t.Errorf("row %q: want it in the first page's columns unless a value is wider than its column (header %q)", l, header)
		}
	}
	if got := strings.Count(out.String(), "job-"); got != 7 {
		t.Errorf("%d job rows, want 7:\n%s", got, out.String())
	}
}

// With -o json and -o yaml, a list of several pages is the document it was
// when the list was printed at once: the same bytes, a JSON array
// written item by item.
func TestJobsLsDocumentsAcrossPages(t *testing.T) {
	jobs := someJobs(7, "running", func(i int) string { return fmt.Sprintf("n%d", i) })
	srv := httptest.NewServer(&pagedJobs{jobs: jobs, size: 3})
	t.Cleanup(srv.Close)
	items := make([]json.RawMessage, len(jobs))
	for i, j := range jobs {
		items[i] = json.RawMessage(j)
	}
	for format, write := range map[string]func(*bytes.Buffer) error{
		"json": func(b *bytes.Buffer) error { return writeJSON(b, items) },
		"yaml": func(b *bytes.Buffer) error { return writeYAML(b, items) },
	} {
		var want bytes.Buffer
		if err := write(&want); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"jobs", "ls", "-A"}, {"jobs", "ls"}} {
			out, errOut, err := runCLI(t, srv.URL, append(args, "-o", format)...)
			if err != nil {
				t.Fatalf("%v -o %s: %v (%s)", args, format, err, errOut)
			}
			if diff := cmp.Diff(want.String(), out); diff != "" {
				t.Errorf("%v -o %s mismatch (-want +got):\n%s", args, format, diff)
			}
		}
	}
	var got []map[string]any
	out, _, _ := runCLI(t, srv.URL, "jobs", "ls", "-A", "-o", "json")
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 7 {
		t.Errorf("jobs ls -A -o json: %d jobs (%v), want 7 in one array:\n%s", len(got), err, out)
	}
}

// A page that fails ends the list with its error (exit 1) after the rows of
// the pages before it; a JSON array is then left open, so that it does not
// parse as the whole list.
func TestJobsLsPageThatFails(t *testing.T) {
	jobs := someJobs(7, "failed", func(i int) string { return fmt.Sprintf("n%d", i) })
	srv := httptest.NewServer(&pagedJobs{jobs: jobs, size: 3, fail: func(cursor string) bool { return cursor == "job-03" }})
	t.Cleanup(srv.Close)
	out, errOut, err := runCLI(t, srv.URL, "jobs", "ls", "-A")
	if code := ExitCode(err, &bytes.Buffer{}); code != ExitFailed || !strings.Contains(err.Error(), "the store failed on page 2") {
		t.Errorf("exit %d (%v), want %d with the page's error", code, err, ExitFailed)
	}
	if want := tableOf(t, jobs[:3], jobCols); out != want {
		t.Errorf("stdout:\n%s\nwant the first page's rows:\n%s(stderr %q)", out, want, errOut)
	}
	out, _, err = runCLI(t, srv.URL, "jobs", "ls", "-A", "-o", "json")
	var v any
	if err == nil || !strings.HasPrefix(out, "[\n  {") || strings.Count(out, `"id": "job-`) != 3 || json.Unmarshal([]byte(out), &v) == nil {
		t.Errorf("-o json: %v, stdout:\n%s\nwant an error after the first page's 3 jobs, the array left open", err, out)
	}
}

// Ctrl-C while a page is read stops the list at once (exit 130), the rows
// printed so far left as they are.
func TestJobsLsStopsOnInterrupt(t *testing.T) {
	jobs := someJobs(7, "running", func(i int) string { return fmt.Sprintf("n%d", i) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut eventstest.SyncBuffer
	srv := httptest.NewServer(&pagedJobs{jobs: jobs, size: 3, before: func(r *http.Request) {
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), "job-03") && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		cancel() // the user presses Ctrl-C while the second page is read
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}})
	t.Cleanup(srv.Close)
	began := time.Now()
	err := runCLIContext(t, ctx, srv.URL, &out, &errOut, "jobs", "ls", "-A")
	if code := ExitCode(err, &bytes.Buffer{}); code != ExitInterrupted || time.Since(began) > 5*time.Second {
		t.Errorf("exit %d (%v) after %s, want %d at once", code, err, time.Since(began), ExitInterrupted)
	}
	if got := strings.Count(out.String(), "job-"); got != 3 {
		t.Errorf("%d rows printed, want the first page's 3:\n%s", got, out.String())
	}
}

// The jobs that have not ended are listed a status at a time and merged in
// the order of their ids, each page of each status read as the rows before
// it are printed; a job found in two statuses' lists (it moved on between
// their reads) is listed once, as the later status has it.
func TestJobsLsMergesTheActiveStatuses(t *testing.T) {
	var jobs []string
	for _, j := range []string{"01 running", "02 submitted", "03 admitted", "04 pending", "04 running", "05 pending",
		"06 running", "07 submitted", "08 admitted", "09 succeeded", "10 pending", "11 running"} {
		id, status, _ := strings.Cut(j, " ")
		jobs = append(jobs, fmt.Sprintf(`{"id":"job-%s","name":"n","queue_id":"q-1","status":%q,"worker_instances":1,"application":{"id":"app-1"}}`, id, status))
	}
	// job-04 moved from pending to running: both lists have it.
	srv := httptest.NewServer(&pagedJobs{jobs: jobs, size: 1})
	t.Cleanup(srv.Close)
	out, errOut, err := runCLI(t, srv.URL, "jobs", "ls", "-o", "json")
	if err != nil {
		t.Fatalf("jobs ls: %v (%s)", err, errOut)
	}
	var got []struct{ ID, Status string }
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not JSON (%v):\n%s", err, out)
	}
	var ids []string
	for _, j := range got {
		ids = append(ids, j.ID+" "+j.Status)
	}
	want := []string{"job-01 running", "job-02 submitted", "job-03 admitted", "job-04 running", "job-05 pending",
		"job-06 running", "job-07 submitted", "job-08 admitted", "job-10 pending", "job-11 running"}
	if !slices.Equal(ids, want) {
		t.Errorf("listed %q, want %q", ids, want)
	}
}

// A list printed a page at a time is what printItems prints of it at once
// when it fits in one page, in every format, an empty one too.
func TestListPrinterOnePageIsTheWholeList(t *testing.T) {
	jobs := someJobs(4, "running", func(i int) string { return strings.Repeat("é", i) })
	for _, n := range []int{0, 1, 4} {
		items := make([]json.RawMessage, n)
		for i := range n {
			items[i] = json.RawMessage(jobs[i])
		}
		for _, format := range []string{"table", "json", "yaml"} {
			var got, want bytes.Buffer
			pages := func(yield func([]json.RawMessage, error) bool) { yield(items, nil) }
			if err := printPages(&got, format, jobCols, pages, nil); err != nil {
				t.Fatal(err)
			}
			switch format {
			case "json":
				_ = writeJSON(&want, append([]json.RawMessage{}, items...))
			case "yaml":
				_ = writeYAML(&want, append([]json.RawMessage{}, items...))
			default:
				objs := make([]string, n)
				for i := range n {
					objs[i] = jobs[i]
				}
				want.WriteString(tableOf(t, objs, jobCols))
			}
			if diff := cmp.Diff(want.String(), got.String()); diff != "" {
				t.Errorf("%d items -o %s mismatch (-want +got):\n%s", n, format, diff)
			}
		}
	}
}

// mergeByID places the jobs of lists in the order of their ids, a job in
// two lists once as the later has it, and yields them in batches of at
// least the largest page read (the last one may be less), so that a table's
// first rows are about a page; an ended job is left out.
func TestMergeByID(t *testing.T) {
	list := func(status string, pages ...string) iter.Seq2[[]listedJob, error] {
		return func(yield func([]listedJob, error) bool) {
			for _, p := range pages {
				var page []listedJob
				for id := range strings.FieldsSeq(p) {
					s := api.JobStatus(status)
					page = append(page, listedJob{job: api.Job{Id: ptr("job-" + id), Status: &s}})
				}
				if !yield(page, nil) {
					return
				}
			}
		}
	}
	var got []string
	var batches []int
	for page, err := range mergeByID([]iter.Seq2[[]listedJob, error]{
		list("pending", "01 04 05", "09 10"), list("admitted"), list("running", "02 03", "04 06", "07"), list("succeeded", "08"),
	}) {
		if err != nil {
			t.Fatal(err)
		}
		batches = append(batches, len(page))
		for _, l := range page {
			got = append(got, *l.job.Id+" "+string(*l.job.Status))
		}
	}
	want := []string{"job-01 pending", "job-02 running", "job-03 running", "job-04 running", "job-05 pending",
		"job-06 running", "job-07 running", "job-09 pending", "job-10 pending"}
	if !slices.Equal(got, want) {
		t.Errorf("merged %q, want %q", got, want)
	}
	for i, n := range batches[:len(batches)-1] {
		if n < 3 {
			t.Errorf("batch %d of %v has %d jobs, want at least the largest page's 3", i, batches, n)
		}
	}
}
