package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/avxrm/rm/sdk/go/avxrm/api"
	"github.com/google/go-cmp/cmp"
)

// fakeServer answers each "METHOD /path" of routes (the path after
// /api/v1-like prefixes is matched by suffix) with its status and JSON body;
// anything else is a 404 problem.
func fakeServer(t *testing.T, routes map[string]fakeAnswer) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, a := range routes {
			method, path, _ := strings.Cut(k, " ")
			if r.Method == method && strings.HasSuffix(r.URL.Path, path) {
				ct := "application/json"
				if a.status >= 400 {
					ct = "application/problem+json"
				}
				w.Header().Set("Content-Type", ct)
				w.WriteHeader(a.status)
				_, _ = w.Write([]byte(a.body))
				return
			}
		}
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"title":"Not Found","status":404,"detail":"no ` + r.URL.Path + `"}`))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

type fakeAnswer struct {
	status int
	body   string
}

// runCLI runs the client commands in process against server and returns
// stdout, stderr and the error.
func runCLI(t *testing.T, server string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := runCLIContext(t, context.Background(), server, &out, &errb, args...)
	return out.String(), errb.String(), err
}

// runCLIContext runs the client commands in process against server with
// ctx, stdout and stderr out and errOut, with a configuration of their own
// (no saved login, no token from the environment).
func runCLIContext(t *testing.T, ctx context.Context, server string, out, errOut io.Writer, args ...string) error {
	t.Helper()
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("RM_TOKEN", "")
	t.Setenv("RM_JOB_TOKEN", "")
	root := Root()
	root.SetOut(out)
	root.SetErr(errOut)
	root.SetArgs(append([]string{"--server", server}, args...))
	return root.ExecuteContext(ctx)
}

// With -o json the commands that print text for a person print one JSON
// document instead: the job, each job's result, what was deleted.
func TestStructuredOutput(t *testing.T) {
	job := `{"id":"job-a","name":"a","queue_id":"q-1","status":"running","worker_instances":1,"application":{"id":"app-1"}}`
	srv := fakeServer(t, map[string]fakeAnswer{
		"GET /jobs/job-a":                  {200, job},
		"POST /jobs/job-a/cancel":          {202, `{}`},
		"POST /jobs/job-gone/cancel":       {404, `{"title":"Not Found","status":404,"detail":"job job-gone not found"}`},
		"POST /jobs":                       {201, `{"id":"job-b"}`},
		"GET /jobs":                        {200, `{"items":[]}`}, // no resubmission of job-a yet
		"DELETE /queues/Default":           {204, ``},
		"POST /job-arrays/arr-1/cancel":    {202, `{}`},
		"POST /jobs/job-a/post-controller": {202, `{}`},
	})
	for _, c := range []struct {
		args []string
		want any
	}{
		{[]string{"jobs", "describe", "job-a"}, map[string]any{"id": "job-a", "name": "a", "queue_id": "q-1", "status": "running",
			"worker_instances": 1.0, "application": map[string]any{"id": "app-1"}}},
		{[]string{"jobs", "cancel", "job-a", "job-gone"}, []any{map[string]any{"id": "job-a", "result": "cancel requested"},
			map[string]any{"id": "job-gone", "error": "404 job job-gone not found"}}},
		{[]string{"jobs", "resubmit", "job-a"}, []any{map[string]any{"id": "job-a", "result": "resubmitted", "new_id": "job-b"}}},
		{[]string{"queues", "rm", "Default"}, map[string]any{"deleted": "Default"}},
		{[]string{"arrays", "cancel", "arr-1"}, map[string]any{"id": "arr-1", "result": "cancel requested"}},
		{[]string{"jobs", "post-controller", "start", "job-a"}, map[string]any{"id": "job-a", "result": "post-controller requested"}},
	} {
		out, _, _ := runCLI(t, srv, append(c.args, "-o", "json")...)
		var got any
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Errorf("%v -o json: not JSON (%v):\n%s", c.args, err, out)
			continue
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%v -o json mismatch (-want +got):\n%s", c.args, diff)
		}
	}
	// The text stays as it was.
	if out, _, _ := runCLI(t, srv, "jobs", "resubmit", "job-a"); out != "job-a resubmitted as job-b\n" {
		t.Errorf("jobs resubmit: %q", out)
	}
	if out, _, _ := runCLI(t, srv, "queues", "rm", "Default"); out != "deleted Default\n" {
		t.Errorf("queues rm: %q", out)
	}
}

// An empty list is an empty list in every format: [] with -o json or -o
// yaml, not YAML's null, which reads as no answer at all.
func TestEmptyListIsAList(t *testing.T) {
	srv := fakeServer(t, map[string]fakeAnswer{"GET /jobs/job-a/artifacts": {200, `{"items":[]}`}})
	for format, want := range map[string]string{"json": "[]\n", "yaml": "[]\n"} {
		if out, _, err := runCLI(t, srv, "artifacts", "ls", "job-a", "-o", format); err != nil || out != want {
			t.Errorf("artifacts ls -o %s of none: %q (%v), want %q", format, out, err, want)
		}
	}
}

// A job or job array given no name is named by its id; the tables and
// describe show the id once ("-" for its NAME), and a job's own name as it is.
func TestAJobNamedByItsIDShowsItOnce(t *testing.T) {
	byID := `{"id":"job-a","name":"job-a","queue_id":"q-1","queue_name":"Default","status":"pending","worker_instances":2,"application":{"id":"app-1"}}`
	named := `{"id":"job-b","name":"nightly","queue_id":"q-1","queue_name":"Default","status":"pending","worker_instances":3,"application":{"id":"app-1"}}`
	srv := fakeServer(t, map[string]fakeAnswer{
		"GET /jobs/job-a":             {200, byID},
		"GET /jobs/job-b":             {200, named},
		"GET /jobs":                   {200, `{"items":[` + byID + `,` + named + `]}`},
		"GET /queues/Default/pending": {200, `{"items":[` + byID + `,` + named + `]}`},
		"GET /events":                 {200, `{"items":[]}`},
		"GET /job-arrays":             {200, `{"items":[{"id":"arr-a","name":"arr-a","queue_id":"Default","count":2},{"id":"arr-b","name":"sweep","queue_id":"Default","count":2}]}`},
	})
	if out, errOut, err := runCLI(t, srv, "arrays", "ls"); err != nil || strings.Count(out, "arr-a") != 1 || !strings.Contains(out, "\n-  ") || !strings.Contains(out, "sweep") {
		t.Errorf("arrays ls (%v %s): want the array named by its id once, NAME -, and the named one's name:\n%s", err, errOut, out)
	}
	for _, args := range [][]string{{"jobs", "ls"}, {"queues", "pending", "Default"}} {
		out, errOut, err := runCLI(t, srv, args...)
		if err != nil {
			t.Fatalf("%v: %v %s", args, err, errOut)
		}
		rows := map[string][]string{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
			f := strings.Fields(line)
			for i, v := range f {
				if strings.HasPrefix(v, "job-") {
					rows[v] = f[i:]
					break
				}
			}
		}
		if r := rows["job-a"]; len(r) < 2 || r[1] != "-" || strings.Count(out, "job-a") != 1 {
			t.Errorf("%v: the job named by its id: %q; want its id once and NAME -:\n%s", args, r, out)
		}
		if r := rows["job-b"]; len(r) < 2 || r[1] != "nightly" {
			t.Errorf("%v: the named job: %q; want NAME nightly:\n%s", args, r, out)
		}
	}
	if out, errOut, err := runCLI(t, srv, "jobs", "describe", "job-a"); err != nil || strings.Contains(out, "Name:") || strings.Count(out, "job-a") != 1 {
		t.Errorf("describe of the job named by its id (%v %s): want its id once, no Name line:\n%s", err, errOut, out)
	}
	if out, _, _ := runCLI(t, srv, "jobs", "describe", "job-b"); !strings.Contains(out, "Name:      nightly\n") {
		t.Errorf("describe of the named job: want its Name line:\n%s", out)
	}
}

// describe's App line: a registered application by id, name and version;
// an inline one by its name and image, with no blanks for what it lacks.
func TestAppLine(t *testing.T) {
	s := func(v string) *string { return &v }
	for _, c := range []struct {
		app  api.JobApplication
		want string
	}{
		{api.JobApplication{Id: s("app-1"), Name: s("sim"), Version: s("1.0"), Image: s("reg/sim:1")}, "app-1 sim 1.0"},
		{api.JobApplication{Id: s("app-1")}, "app-1"},
		{api.JobApplication{Name: s("nosuch"), Image: s("nosuch/image:1")}, "nosuch (inline, image nosuch/image:1)"},
	} {
		if got := appLine(c.app); got != c.want {
			t.Errorf("appLine(%+v) = %q, want %q", c.app, got, c.want)
		}
	}
}

// An empty list of a queue whose jobs the caller may not read says so on
// stderr (GET /whoami?queue=): only the caller's own are listed; of a
// queue it may read, nothing is added.
func TestJobsLsOfAnUnreadableQueue(t *testing.T) {
	for _, read := range []bool{false, true} {
		who := fmt.Sprintf(`{"authenticated_by":"oidc","subject":"u","access":"user","queues":[{"id":"q-1","name":"secret","read":%v,"submit":true}]}`, read)
		srv := fakeServer(t, map[string]fakeAnswer{
			"GET /jobs":          {200, `{"items":[]}`},
			"GET /queues/secret": {200, `{"id":"q-1","name":"secret"}`},
			"GET /whoami":        {200, who},
		})
		out, errOut, err := runCLI(t, srv, "jobs", "ls", "-A", "--queue", "secret")
		if err != nil {
			t.Fatalf("jobs ls: %v (%s)", err, errOut)
		}
		noted := strings.Contains(errOut, "you may not read the jobs of queue secret")
		if noted == read || strings.Contains(out, "note:") {
			t.Errorf("read %v: stdout %q, stderr %q; want the note on stderr alone, only when it may not read", read, out, errOut)
		}
	}
}
