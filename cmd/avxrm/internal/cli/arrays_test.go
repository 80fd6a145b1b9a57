package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/allinone"
	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
	"github.com/oapi-codegen/nullable"
)

// An array whose deleted jobs are in no count has ended once the jobs it
// still has have: their counts need not add up to its count.
func TestFollowArrayWithDeletedJobs(t *testing.T) {
	srv := fakeServer(t, map[string]fakeAnswer{
		"GET /job-arrays/arr-1": {200, `{"id":"arr-1","count":4,"counts":{"cancelled":2}}`},
		"GET /job-arrays/arr-2": {200, `{"id":"arr-2","count":3,"counts":{"succeeded":1}}`},
		"GET /job-arrays/arr-3": {200, `{"id":"arr-3","count":3,"counts":{}}`},
	})
	c, err := avxrm.New(srv)
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]struct {
		line string
		code int
	}{
		"arr-1": {"arr-1 4 jobs: 2 cancelled, 2 deleted\n", ExitCancelled},
		"arr-2": {"arr-2 3 jobs: 1 succeeded, 2 deleted\n", ExitOK},
		"arr-3": {"arr-3 3 jobs: 3 deleted\n", ExitOK},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var out bytes.Buffer
		_, err := followArray(ctx, c, id, &out, io.Discard, 10*time.Millisecond)
		cancel()
		if code := ExitCode(err, io.Discard); code != want.code || out.String() != want.line {
			t.Errorf("%s: exit %d (%v), printed %q; want %d, %q", id, code, err, out.String(), want.code, want.line)
		}
	}
	final := func(counts map[string]int64) bool { return avxrm.JobArrayFinal(&api.JobArray{Counts: &counts}) }
	if !final(map[string]int64{"succeeded": 1, "failed": 0}) || final(map[string]int64{"succeeded": 1, "pending": 1}) {
		t.Error("JobArrayFinal: wrong for a final or a pending job")
	}
}

// Against the real system: an array some of whose jobs were deleted, then
// cancelled, is waited for to its end.
func TestArraysWaitAfterDeletes(t *testing.T) {
	ctx := context.Background()
	srv, c, app := startWithApp(t, "sleep", "/bin/sleep", "60")
	arr, err := c.CreateJobArray(ctx, api.JobArrayBody{Job: api.JobBody{QueueId: "q", WorkerInstances: 1,
		Application: api.JobApplicationRef{Id: app.Id}}, Count: 4, MaxParallel: ptr(int64(1))})
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Items []api.Job `json:"items"`
	}
	if _, err := c.Do(ctx, http.MethodGet, "/jobs?array_id="+*arr.Id, nil, &list); err != nil || len(list.Items) != 4 {
		t.Fatalf("the array's jobs: %d, %v", len(list.Items), err)
	}
	for _, j := range list.Items {
		if *j.ArrayIndex >= 2 {
			if _, err := c.Do(ctx, http.MethodDelete, "/jobs/"+*j.Id, nil, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if msg, code, out := run(t, "", "--server", srv.URL, "arrays", "cancel", *arr.Id); code != ExitOK {
		t.Fatalf("arrays cancel: exit %d %q %s", code, msg, out)
	}
	began := time.Now()
	msg, code, out := run(t, "", "--server", srv.URL, "arrays", "wait", *arr.Id, "--timeout", "40s")
	if code != ExitCancelled || !strings.Contains(msg, "2 of 4 jobs were cancelled") || !strings.Contains(out, "2 cancelled, 2 deleted") {
		t.Errorf("arrays wait after 2 of 4 jobs were deleted and the rest cancelled: exit %d after %s, %q\n%s", code, time.Since(began), msg, out)
	}
}

// startWithApp starts the all-in-one with queue q (local processes) and an
// application name:1 that runs command, and returns it, a client of it and
// the application.
func startWithApp(t *testing.T, name string, command ...string) (*allinone.Server, *avxrm.Client, *api.Application) {
	t.Helper()
	srv := allinone.Start(t, binary, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	c, err := avxrm.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateQueue(ctx, api.QueueBody{Name: "q"}); err != nil {
		t.Fatal(err)
	}
	img := "local"
	app, err := c.CreateApplication(ctx, api.ApplicationBody{Name: name, Version: "1", Image: &img,
		Command: nullable.NewNullableWithValue(command)})
	if err != nil {
		t.Fatal(err)
	}
	return srv, c, app
}

// Against the real system: an array's failed job resubmitted is said to be
// outside the array and labelled with the job it reruns; the same command
// again resubmits nothing and names that job.
func TestResubmitAnArraysFailedJobsOnce(t *testing.T) {
	ctx := context.Background()
	srv, c, app := startWithApp(t, "flaky", "/bin/sh", "-c", `[ "$RM_ROLE" = worker ] && [ "$RM_ARRAY_INDEX" = 1 ] && exit 3; exit 0`)
	arr, err := c.CreateJobArray(ctx, api.JobArrayBody{Job: api.JobBody{QueueId: "q", WorkerInstances: 1,
		Application: api.JobApplicationRef{Id: app.Id}}, Count: 3})
	if err != nil {
		t.Fatal(err)
	}
	if a, err := c.WaitJobArray(ctx, *arr.Id); err != nil || (*a.Counts)["failed"] != 1 {
		t.Fatalf("the array: %v, %v; want one failed", a, err)
	}
	out, _, err := runCLI(t, srv.URL, "jobs", "resubmit", "--array", *arr.Id, "--status", "failed")
	if err != nil || !strings.Contains(out, "resubmitted outside its array "+*arr.Id+" as job-") {
		t.Fatalf("first resubmit: %q, %v", out, err)
	}
	newID := strings.TrimSpace(out[strings.LastIndex(out, " as ")+4:])
	j, err := c.GetJob(ctx, newID)
	if err != nil {
		t.Fatal(err)
	}
	var old struct {
		Items []api.Job `json:"items"`
	}
	if _, err := c.Do(ctx, http.MethodGet, "/jobs?status=failed&array_id="+*arr.Id, nil, &old); err != nil || len(old.Items) != 1 {
		t.Fatalf("the failed job: %v, %v", old.Items, err)
	}
	if j.Labels == nil || (*j.Labels)["rm.avxrm.io/resubmitted-from"] != *old.Items[0].Id {
		t.Errorf("the new job's labels %v, want rm.avxrm.io/resubmitted-from=%s", j.Labels, *old.Items[0].Id)
	}
	again, _, err := runCLI(t, srv.URL, "jobs", "resubmit", "--array", *arr.Id, "--status", "failed")
	if err != nil || !strings.Contains(again, "already resubmitted as "+newID) {
		t.Errorf("second resubmit: %q, %v; want the first one's job named, nothing submitted", again, err)
	}
}
