package cli

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm/api"
)

// problem is the body of an API error.
func problem(status int, detail string, fields ...string) string {
	var errs []string
	for i := 0; i+1 < len(fields); i += 2 {
		errs = append(errs, fmt.Sprintf(`{"field":%q,"message":%q}`, fields[i], fields[i+1]))
	}
	body := fmt.Sprintf(`{"title":%q,"status":%d,"detail":%q`, http.StatusText(status), status, detail)
	if len(errs) > 0 {
		body += `,"errors":[` + strings.Join(errs, ",") + `]`
	}
	return body + "}"
}

// 'avxrm events': a job that is not there is an error at once, not a
// stream that waits for nothing; --after takes an event id, not a negative
// number, and its help says its default once; a 416 speaks of --after,
// once; the query's fields are named by their flags.
func TestEventsFlags(t *testing.T) {
	srv := fakeServer(t, map[string]fakeAnswer{
		"GET /jobs/job-x": {404, problem(404, `job "job-x" not found`)},
		"GET /events": {416, problem(416, "Last-Event-ID 99999999 is beyond the last event of the stream (45)",
			"Last-Event-ID", "beyond the last event (45); reconnect without it, or with 0 to replay every stored event")},
	})
	began := time.Now()
	msg, code, _ := run(t, "", "--server", srv, "events", "--job", "job-x")
	if code != ExitFailed || !strings.Contains(msg, `--job: 404 job "job-x" not found`) || !strings.HasSuffix(msg, "; for a deleted job's stored events add --after 0\n") || time.Since(began) > 5*time.Second {
		t.Errorf("events --job of no job: exit %d after %s, %q", code, time.Since(began), msg)
	}
	// With --after, a deleted job's stored events are read from the stream
	// (its 416 here shows it was asked), with a word that the job is gone.
	msg, code, _, errOut := runStderr(t, "", "--server", srv, "events", "--job", "job-x", "--after", "99999999")
	if code != ExitFailed || !strings.Contains(msg, "416 --after 99999999") ||
		!strings.Contains(errOut, `avxrm: no job "job-x" now (deleted, or a mistyped id); printing its stored events after 99999999, if any`) {
		t.Errorf("events --job of no job --after: exit %d, %q, stderr %q", code, msg, errOut)
	}
	if msg, code, _ := run(t, "", "--server", srv, "events", "--after", "-5"); code != ExitFailed || msg != "avxrm: --after \"-5\": want a whole number ≥ 0\n" {
		t.Errorf("events --after -5: exit %d, %q", code, msg)
	}
	_, _, help := run(t, "", "events", "--help")
	if !strings.Contains(help, "(0: every stored event; default: only new ones)\n") || strings.Contains(help, "(default -1)") {
		t.Errorf("events --help, --after:\n%s", help)
	}
	msg, code, _ = run(t, "", "--server", srv, "events", "--after", "99999999")
	want := "avxrm: 416 --after 99999999 is beyond the last event of the stream (45): give a lower id, 0 for every stored event, or leave --after out for new events only\n"
	if code != ExitFailed || msg != want {
		t.Errorf("events --after past the end: exit %d\n got %q\nwant %q", code, msg, want)
	}
	srv = fakeServer(t, map[string]fakeAnswer{"GET /events": {422, problem(422, `validation failed: queue_id: no queue "Nope"; type: "x" is no event type`,
		"queue_id", `no queue "Nope"`, "type", `"x" is no event type`)}})
	if msg, _, _ := run(t, "", "--server", srv, "events", "--queue", "Nope", "--type", "x"); msg != "avxrm: 422 validation failed: --queue: no queue \"Nope\"; --type: \"x\" is no event type\n" {
		t.Errorf("events --queue Nope --type x: %q", msg)
	}
}

// 'jobs cancel --status <final>' is refused before any request: such jobs
// have ended, and cannot be cancelled.
func TestCancelFinalStatusRefused(t *testing.T) {
	srv, requests := unexpectedServer(t)
	for _, status := range []string{"succeeded", "failed", "cancelled"} {
		msg, code, _ := run(t, "", "--server", srv.URL, "jobs", "cancel", "--status", status)
		if want := "--status " + status + ": a " + status + " job has ended"; code != ExitFailed || !strings.Contains(msg, want) {
			t.Errorf("jobs cancel --status %s: exit %d, %q; want 1, %q", status, code, msg, want)
		}
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("%d requests, want none", n)
	}
}

// The API's errors are said in the words of the command line: commands,
// not methods and paths; names as given, not ids; the flags that gave a
// field; a bound in the unit of the flag; what to give instead.
func TestErrorsSpeakOfTheCommandLine(t *testing.T) {
	const arcPath = "/api/resources/v1/app-runtime-config/q-1/application/app-1"
	srv := fakeServer(t, map[string]fakeAnswer{
		"POST /app-runtime-config/Default/application/sim:1.0": {409, problem(409, "an app-runtime-config of application app-1 on queue q-1 already exists; change it with PUT or PATCH at "+arcPath)},
		"DELETE /app-runtime-config/Small/application/sim:1.0": {404, problem(404, "app-runtime-config of application app-1 on queue q-2 not found")},
		"DELETE /queues/Default":                               {409, problem(409, "queue Default (q-1) is in use by app-runtime-config arc-1 ("+arcPath+"); delete those first")},
		"GET /queues/q-1":                                      {200, `{"id":"q-1","name":"Default","version":3}`},
		"GET /applications/app-1":                              {200, `{"id":"app-1","name":"sim","version":"1.0"}`},
		"DELETE /jobs/job-a/post-controller":                   {409, problem(409, "job job-a has no post controller to stop; POST /jobs/job-a/post-controller starts one")},
		"GET /jobs/job-a/artifacts":                            {200, `{"items":[{"kind":"scenario","sample_id":"s-1","path":"a"}]}`},
		"POST /jobs/job-a/scenario-exports": {422, problem(422, `validation failed: samples[1]: "s-1" is listed twice; include[0]: expected value to be one of "scenario, asset"; filter_by_asset_declaration[0]: no declaration "x"`,
			"samples[1]", `"s-1" is listed twice`, "include[0]", `expected value to be one of "scenario, asset"`, "filter_by_asset_declaration[0]", `no declaration "x"`)},
		"GET /jobs/job-a/instances/wrk/0/logs": {422, problem(422, `validation failed: role: expected value to be one of "controller, worker, post-controller"`,
			"role", `expected value to be one of "controller, worker, post-controller"`)},
		"POST /applications": {422, problem(422, "validation failed: version: expected string", "version", "expected string")},
		"POST /jobs": {422, problem(422, "validation failed: max_run_seconds: expected number <= 31536000; depends_on[0].job_id: no job \"arr-1\"",
			"max_run_seconds", "expected number <= 31536000", "depends_on[0].job_id", `no job "arr-1"`)},
		"PATCH /queues/Default": {422, problem(422, "validation failed: maximum_allowed_worker_instances: expected number <= 100000",
			"maximum_allowed_worker_instances", "expected number <= 100000")},
	})
	for args, want := range map[string]string{
		"rc create Default sim:1.0 --set image=x": "409 an app-runtime-config of application sim:1.0 on queue Default already exists; change it with: avxrm rc set Default sim:1.0",
		"rc rm Small sim:1.0":                     "404 no app-runtime-config of application sim:1.0 on queue Small: 'avxrm rc ls' lists them",
		"queues rm Default":                       "409 queue Default (q-1) is in use by the app-runtime-config of application sim:1.0 on queue Default (avxrm rc rm Default sim:1.0); delete those first",
		"jobs post-controller stop job-a":         "409 job job-a has no post controller to stop; 'avxrm jobs post-controller start job-a' starts one",
		"export job-a --samples s-1,s-1 --include scen --declaration x -O -": `422 validation failed: --samples: "s-1" is listed twice; --include: expected value to be one of "scenario, asset"; --declaration: no declaration "x"`,
		"logs job-a --role wrk":                                                 `422 validation failed: --role: expected value to be one of "controller, worker, post-controller"`,
		"apps create sim --set version=1.0 --set image=x":                       "422 validation failed: --set version=1.0: expected string (--set reads 1.0 as JSON, a number): give it with --set-string version=1.0",
		"submit --queue Default --app sim --time-limit 10000h --after-ok arr-1": `422 validation failed: --time-limit 10000h: at most 8760h; --after-ok: no job "arr-1": a job depends on jobs, not on a job array; on each of its jobs, which 'avxrm jobs ls -A --array arr-1' lists`,
		"queues set Default --limit 999999":                                     "422 validation failed: --limit: expected number <= 100000",
		"queues set Default --limit 99999999999999999999":                       `--limit "99999999999999999999": too large a number of worker instances; for no limit give 'none'`,
		"queues set Default":                                                    "nothing to change: give --limit, --description, --set key=value, --set-string key=value or -f file",
	} {
		if msg, code, _ := run(t, "", append([]string{"--server", srv}, strings.Fields(args)...)...); code != ExitFailed || msg != "avxrm: "+want+"\n" {
			t.Errorf("avxrm %s: exit %d\n got %q\nwant %q", args, code, msg, "avxrm: "+want+"\n")
		}
	}
}

// A job or an array given by name (they are addressed by id) is a 404 that
// says how to find the id; an empty id is refused before any request.
func TestIdsNotNames(t *testing.T) {
	srv := fakeServer(t, map[string]fakeAnswer{
		"GET /jobs/sweep-3":                         {404, problem(404, `job "sweep-3" not found`)},
		"GET /jobs/job-01J0000000000000000000000X":  {404, problem(404, `job "job-01J0000000000000000000000X" not found`)},
		"GET /job-arrays/sweep":                     {404, problem(404, `job array "sweep" not found`)},
		"GET /jobs/sweep-3/instances/worker/0/logs": {404, problem(404, `job "sweep-3" not found`)},
	})
	hint := "; jobs are addressed by their id (job-…), not by name: 'avxrm jobs ls -A' lists them with their names"
	for args, want := range map[string]string{
		"jobs get sweep-3": `404 job "sweep-3" not found` + hint,
		"logs sweep-3":     `404 job "sweep-3" not found` + hint,
		"jobs get job-01J0000000000000000000000X": `404 job "job-01J0000000000000000000000X" not found`,
		"arrays get sweep":                        `404 job array "sweep" not found; job arrays are addressed by their id (arr-…), not by name: 'avxrm arrays ls' lists them with their names`,
	} {
		if msg, code, _ := run(t, "", append([]string{"--server", srv}, strings.Fields(args)...)...); code != ExitFailed || msg != "avxrm: "+want+"\n" {
			t.Errorf("avxrm %s: exit %d\n got %q\nwant %q", args, code, msg, "avxrm: "+want+"\n")
		}
	}
	empty, requests := unexpectedServer(t)
	for _, args := range [][]string{{"jobs", "get", ""}, {"logs", " "}, {"jobs", "cancel", "job-a", ""}, {"export", ""}} {
		msg, code, _ := run(t, "", append([]string{"--server", empty.URL}, args...)...)
		if code != ExitFailed || !strings.Contains(msg, "is empty; usage: avxrm ") {
			t.Errorf("avxrm %q: exit %d, %q; want the empty argument refused", args, code, msg)
		}
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("%d requests for empty ids, want none", n)
	}
}

// A server that is not the API is named so by the writes too: a plain web
// server answers a POST with 501 and a page.
func TestNotTheAPIOnWrites(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html;charset=utf-8")
		if r.Method == http.MethodGet {
			w.WriteHeader(http.StatusNotFound)
		} else {
			w.WriteHeader(http.StatusNotImplemented)
		}
		_, _ = fmt.Fprint(w, "<html><body>Error response</body></html>")
	}))
	defer srv.Close()
	for _, args := range []string{"submit --queue Default --app sim:1.0", "queues create Default", "jobs cancel job-a", "queues rm Default"} {
		msg, code, _ := run(t, "", append([]string{"--server", srv.URL}, strings.Fields(args)...)...)
		want := "avxrm: the server at " + srv.URL + " answered 501 with text/html, not the Resource Manager's API: is --server its root URL?\n"
		if code != ExitFailed || msg != want {
			t.Errorf("avxrm %s: exit %d\n got %q\nwant %q", args, code, msg, want)
		}
	}
}

// get prints a table with an explicit -o table, as ls does, and YAML by
// default; logs, whose output is no document, refuses -o json; set has
// examples of its own; arrays wait and exports wait take --timeout as
// jobs wait does.
func TestOutputsAndTimeouts(t *testing.T) {
	arrived := make(chan struct{}, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, "/api/resources/v1")
		w.Header().Set("Content-Type", "application/json")
		switch p {
		case "/queues/Default":
			_, _ = w.Write([]byte(`{"id":"q-1","name":"Default","maximum_allowed_worker_instances":10}`))
		case "/jobs/job-a":
			_, _ = w.Write([]byte(`{"id":"job-a","name":"sweep-1","queue_name":"Default","status":"running","worker_instances":2}`))
		case "/job-arrays/arr-1":
			_, _ = w.Write([]byte(`{"id":"arr-1","name":"sweep","queue_id":"q-1","count":2,"counts":{"running":2}}`))
		case "/scenario-exports/exp-1":
			_, _ = w.Write([]byte(`{"id":"exp-1","job_id":"job-a","status":"building"}`))
		case "/events":
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("id: 7\n\n"))
			w.(http.Flusher).Flush()
			arrived <- struct{}{}
			<-r.Context().Done()
		case "/queues":
			_, _ = w.Write([]byte(`{"items":[{"id":"q-1","name":"Default"}]}`))
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(problem(404, "no "+p)))
		}
	}))
	defer srv.Close()
	for args, want := range map[string]string{
		"queues get Default -o table": "NAME     ID   LIMIT  ALLOCATED  RUNNING  PENDING  AGE\nDefault  q-1  10                                  \n",
		"queues get Default":          "id: q-1\nmaximum_allowed_worker_instances: 10\nname: Default\n",
		"jobs get job-a -o table":     "ID     NAME     QUEUE    STATUS   WORKERS  AGE  REASON\njob-a  sweep-1  Default  running  2                 \n",
		"arrays get arr-1 -o table":   "NAME   ID     QUEUE    JOBS  MAX PARALLEL  STATUS     AGE\nsweep  arr-1  Default  2                   2 running  \n",
		"exports get exp-1 -o table":  "ID     STATUS    FILES  SIZE  AGE  EXPIRES  REASON\nexp-1  building                               \n",
	} {
		if msg, code, out := run(t, "", append([]string{"--server", srv.URL}, strings.Fields(args)...)...); code != ExitOK || trimLines(out) != trimLines(want) {
			t.Errorf("avxrm %s: exit %d %q\n got %q\nwant %q", args, code, msg, out, want)
		}
	}
	for args, want := range map[string]string{
		"logs job-a -o json":                 "-o json: 'avxrm logs' takes no output format: the instance's output is printed as the program wrote it",
		"deployments logs viz -o yaml":       "-o yaml: 'avxrm deployments logs' takes no output format: the replica's output is printed as the program wrote it",
		"arrays wait arr-1 --timeout 300ms":  "array arr-1: timed out after 300ms; not all of its jobs have ended",
		"exports wait exp-1 --timeout 300ms": "export exp-1: timed out after 300ms; it is not ready yet",
		"arrays wait arr-1 --timeout -1s":    "--timeout -1s: want a duration of 0 (wait as long as it takes) or more",
		"exports wait exp-1 --timeout -1s":   "--timeout -1s: want a duration of 0 (wait as long as it takes) or more",
	} {
		if msg, code, _ := run(t, "", append([]string{"--server", srv.URL}, strings.Fields(args)...)...); code != ExitFailed || msg != "avxrm: "+want+"\n" {
			t.Errorf("avxrm %s: exit %d\n got %q\nwant %q", args, code, msg, "avxrm: "+want+"\n")
		}
	}
	_, _, help := run(t, "", "queues", "set", "--help")
	if !strings.Contains(help, "avxrm queues set Default --limit 20") || strings.Contains(help, "queues create") {
		t.Errorf("queues set --help: its examples are not its own:\n%s", help)
	}
	for _, cmd := range []string{"jobs wait", "arrays wait", "exports wait"} {
		if _, _, help := run(t, "", append(strings.Fields(cmd), "--help")...); !regexp.MustCompile(`--timeout duration +give up after this long, e.g. 2h \(0: wait as long as it takes\)`).MatchString(help) {
			t.Errorf("%s --help has no --timeout:\n%s", cmd, help)
		}
	}
}

// trimLines is s without the spaces that end its lines.
func trimLines(s string) string {
	return regexp.MustCompile(` +\n`).ReplaceAllString(s, "\n")
}

// Ctrl-C during submit --wait says that the job goes on, and how to cancel
// it or follow it again.
func TestSubmitWaitInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, "/api/resources/v1")
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodPost && p == "/jobs":
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"id":"job-1","status":"submitted","worker_instances":1}`))
		case p == "/jobs/job-1":
			_, _ = w.Write([]byte(`{"id":"job-1","status":"running","worker_instances":1}`))
		case p == "/events":
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("id: 7\n\n"))
			w.(http.Flusher).Flush()
			once.Do(func() { time.AfterFunc(200*time.Millisecond, cancel) }) // the user's Ctrl-C
			<-r.Context().Done()
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	t.Setenv("HOME", t.TempDir())
	t.Setenv("RM_TOKEN", "")
	root := Root()
	var stdout, stderr bytes.Buffer
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetArgs([]string{"--server", srv.URL, "submit", "--queue", "Default", "--app", "sim", "--wait"})
	_ = root.ExecuteContext(ctx)
	want := "avxrm: stopped following; job job-1 goes on: 'avxrm jobs cancel job-1' cancels it, 'avxrm jobs wait job-1' follows it again\n"
	if !strings.HasSuffix(stderr.String(), want) || !strings.HasPrefix(stdout.String(), "job-1\n") {
		t.Errorf("submit --wait, then Ctrl-C: stdout %q, stderr %q; want it to end with %q", stdout.String(), stderr.String(), want)
	}
}

// The status line of a job that has ended counts no worker running (an
// event may have counted them before they were stopped); a retried job's
// says which attempt it is.
func TestStatusLine(t *testing.T) {
	status := func(s api.JobStatus) *api.JobStatus { return &s }
	id := "job-1"
	counts := map[string]map[string]int64{"worker": {"running": 1, "succeeded": 1}}
	failed := api.Job{Id: &id, Status: status("failed"), WorkerInstances: 2, InstanceCounts: &counts}
	if got, want := statusLine(&failed), "job-1 failed  workers 0 running, 1 succeeded of 2 [##########..........]"; got != want {
		t.Errorf("failed: %q, want %q", got, want)
	}
	retry := api.Job{Id: &id, Status: status("submitted"), WorkerInstances: 2, Attempt: ptr(int64(2)), MaxRetries: ptr(int64(2))}
	if got, want := statusLine(&retry), "job-1 submitted (attempt 2 of 3)"; got != want {
		t.Errorf("retried: %q, want %q", got, want)
	}
}

// Completion reads the queues, applications and jobs the server has, and
// completes nothing, quickly, when it cannot reach one.
func TestDynamicCompletion(t *testing.T) {
	srv := fakeServer(t, map[string]fakeAnswer{
		"GET /queues":       {200, `{"items":[{"id":"q-1","name":"Default","description":"day runs"},{"id":"q-2","name":"Night"}]}`},
		"GET /applications": {200, `{"items":[{"id":"app-1","name":"sim","version":"1.0","image":"reg/sim:1.0"}]}`},
		"GET /jobs":         {200, `{"items":[{"id":"job-a","name":"sweep-1","status":"running"}]}`},
	})
	for args, want := range map[string]string{
		"submit --queue ":      "Default\tday runs\nNight\n:4\n",
		"submit --queue N":     "Night\n:4\n",
		"submit --app ":        "sim:1.0\treg/sim:1.0\n:4\n",
		"jobs describe ":       strings.Repeat("job-a\tsweep-1 running\n", 4) + ":4\n", // the fake lists it for each status
		"rc get Default ":      "sim:1.0\treg/sim:1.0\n:4\n",
		"jobs describe job-a ": ":4\n",
	} {
		words := strings.Split(args, " ")
		_, _, out := run(t, "", append([]string{"__complete", "--server", srv}, words...)...)
		if out != want {
			t.Errorf("__complete %s\n got %q\nwant %q", args, out, want)
		}
	}
	began := time.Now()
	msg, code, out := run(t, "", "__complete", "--server", "http://127.0.0.1:1", "jobs", "describe", "")
	if code != ExitOK || msg != "" || out != ":5\n" || time.Since(began) > 5*time.Second {
		t.Errorf("__complete with no server: exit %d %q %q after %s; want nothing, quickly", code, msg, out, time.Since(began))
	}
}
