package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/avxrm/rm/sdk/go/avxrm/api"
	"github.com/google/go-cmp/cmp"
)

// A 422 names the flags the user gave, not the API's fields; the fields a
// -f file gave keep their names.
func TestSubmitErrorsNameFlags(t *testing.T) {
	problem := `{"title":"Unprocessable Entity","status":422,` +
		`"detail":"validation failed: depends_on[0].job_id: no job \"a\"; depends_on[1].job_id: no job \"b\"; priority: expected number <= 1000000; worker_instances: expected number >= 1",` +
		`"errors":[{"field":"depends_on[0].job_id","message":"no job \"a\""},{"field":"depends_on[1].job_id","message":"no job \"b\""},` +
		`{"field":"priority","message":"expected number <= 1000000"},{"field":"worker_instances","message":"expected number >= 1"}]}`
	arrayProblem := `{"title":"Unprocessable Entity","status":422,"detail":"validation failed: count: expected number <= 10000; job.max_retries: expected number >= 0",` +
		`"errors":[{"field":"count","message":"expected number <= 10000"},{"field":"job.max_retries","message":"expected number >= 0"}]}`
	srv := fakeServer(t, map[string]fakeAnswer{"POST /jobs": {422, problem}, "POST /job-arrays": {422, arrayProblem}})
	file := filepath.Join(t.TempDir(), "j.yaml")
	if err := os.WriteFile(file, []byte("queue_id: Default\napplication: {id: sim}\npriority: 99999999\ndepends_on: [{job_id: a, condition: succeeded}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"submit", "-f", file, "--after-ok", "b", "--workers", "0"},
			`422 validation failed: depends_on[0].job_id: no job "a"; --after-ok: no job "b"; priority: expected number <= 1000000; --workers: expected number >= 1`},
		{[]string{"submit", "--queue", "Default", "--app", "sim", "--array", "20000", "--retries", "-1"},
			`422 validation failed: --array: expected number <= 10000; --retries: expected number >= 0`},
		{[]string{"submit", "--queue", "Default", "--app", "sim", "--max-parallel", "3"}, "--max-parallel needs --array"},
		// The API's refusal named failed and lost only, not both.
		{[]string{"submit", "--queue", "Default", "--app", "sim", "--retry-on", "failed,weird"}, `--retry-on "weird": want failed, lost or both`},
		{[]string{"submit", "--queue", "Default", "--app", "sim", "--array", "3", "--max-parallel", "0"}, "--max-parallel 0: want at least 1"},
		{[]string{"deployments", "logs", "viz", "--replica", "-1"}, "--replica -1: want a replica slot, 0 or more"},
	} {
		_, _, err := runCLI(t, srv, c.args...)
		if err == nil || len(err.Error()) < len(c.want) || err.Error()[:len(c.want)] != c.want {
			t.Errorf("%v:\n got %v\nwant %s", c.args, err, c.want)
		}
	}

	// A pair of --env or --label is named with its key.
	pairs := `{"title":"Unprocessable Entity","status":422,` +
		`"detail":"validation failed: environment_variables.RM_ROLE: set by the launcher; labels.a b: not a valid key",` +
		`"errors":[{"field":"environment_variables.RM_ROLE","message":"set by the launcher"},{"field":"labels.a b","message":"not a valid key"}]}`
	srv = fakeServer(t, map[string]fakeAnswer{"POST /jobs": {422, pairs}})
	args := []string{"submit", "--queue", "Default", "--app", "sim", "--env", "RM_ROLE=x", "--label", "a b=1"}
	want := `422 validation failed: --env RM_ROLE: set by the launcher; --label a b: not a valid key`
	if _, _, err := runCLI(t, srv, args...); err == nil || err.Error() != want {
		t.Errorf("%v:\n got %v\nwant %s", args, err, want)
	}
}

// --app is name:version, or else an id or a name that the server resolves
// (application.id takes both); with --image it names an inline application,
// and without it the image's name does.
func TestAppRef(t *testing.T) {
	s := func(v string) *string { return &v }
	for _, c := range []struct {
		app, image string
		want       api.JobApplicationRef
	}{
		{"sim:1.0", "", api.JobApplicationRef{Name: s("sim"), Version: s("1.0")}},
		{"sim", "", api.JobApplicationRef{Id: s("sim")}},
		{"app-01J", "", api.JobApplicationRef{Id: s("app-01J")}},
		{"job-01J", "", api.JobApplicationRef{Id: s("job-01J")}},
		{"mine", "busybox", api.JobApplicationRef{Name: s("mine"), Image: s("busybox")}},
		{"", "registry.example:5000/team/sim:1.0", api.JobApplicationRef{Name: s("sim"), Image: s("registry.example:5000/team/sim:1.0")}},
		{"", "sim@sha256:0123", api.JobApplicationRef{Name: s("sim"), Image: s("sim@sha256:0123")}},
		{"", "_x+y", api.JobApplicationRef{Name: s("x-y"), Image: s("_x+y")}},
		{"", ":1", api.JobApplicationRef{Name: s("inline"), Image: s(":1")}},
	} {
		if diff := cmp.Diff(c.want, appRef(c.app, c.image)); diff != "" {
			t.Errorf("appRef(%q, %q) mismatch (-want +got):\n%s", c.app, c.image, diff)
		}
	}
}

// --retry-on both is failed and lost, the values the API's retry_on takes.
func TestSubmitRetryOnBoth(t *testing.T) {
	var mu sync.Mutex
	var bodies []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b map[string]any
		_ = json.NewDecoder(r.Body).Decode(&b)
		mu.Lock()
		bodies = append(bodies, b)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id":"job-1"}`))
	}))
	defer srv.Close()
	for flag, want := range map[string][]any{"both": {"failed", "lost"}, "lost": {"lost"}, "failed,both": {"failed", "lost"}} {
		bodies = nil
		out, _, err := runCLI(t, srv.URL, "submit", "--queue", "Default", "--app", "sim", "--retries", "2", "--retry-on", flag)
		if err != nil || out != "job-1\n" || len(bodies) != 1 || !reflect.DeepEqual(bodies[0]["retry_on"], want) {
			t.Errorf("--retry-on %s: %v %q, sent %v; want retry_on %v", flag, err, out, bodies, want)
		}
	}
}

// --after-ok and --after-any take an id each, or several separated by
// commas; an empty one is refused before any request; and the 422 of an
// id given twice names the flags, not depends_on[i].
func TestSubmitDependencyFlags(t *testing.T) {
	var (
		mu   sync.Mutex
		sent [][]api.JobDependency
	)
	dup := `{"title":"Unprocessable Entity","status":422,"detail":"validation failed: depends_on[2].job_id: job-a is named already by depends_on[0]",` +
		`"errors":[{"field":"depends_on[2].job_id","message":"job-a is named already by depends_on[0]"}]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			DependsOn []api.JobDependency `json:"depends_on"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		sent = append(sent, body.DependsOn)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = w.Write([]byte(dup))
	}))
	t.Cleanup(srv.Close)
	base := []string{"submit", "--queue", "Default", "--app", "sim:1.0"}

	_, _, err := runCLI(t, srv.URL, append(base, "--after-ok", "job-a, job-b", "--after-any", "job-a")...)
	if want := "422 validation failed: --after-any: job-a is named already by --after-ok"; err == nil || err.Error() != want {
		t.Errorf("an id given twice:\n got %v\nwant %s", err, want)
	}
	want := [][]api.JobDependency{{{JobId: "job-a", Condition: "succeeded"}, {JobId: "job-b", Condition: "succeeded"}, {JobId: "job-a", Condition: "finished"}}}
	if diff := cmp.Diff(want, sent); diff != "" {
		t.Errorf("depends_on sent (-want +got):\n%s", diff)
	}

	for _, v := range []string{"", "job-a,", " "} {
		_, _, err := runCLI(t, srv.URL, append(base, "--after-any", v)...)
		if want := fmt.Sprintf("--after-any %q: want a job's id", v); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("--after-any %q: got %v, want %s…", v, err, want)
		}
	}
	if len(sent) != 1 {
		t.Errorf("%d requests sent, want the first one only", len(sent))
	}

	// A job array named: the server's hint names its API, the CLI's the command.
	msg := `no job \"arr-1\": a job depends on jobs, not on a job array; name each of its jobs, which GET /jobs?array_id=arr-1 lists`
	arr := `{"title":"Unprocessable Entity","status":422,"detail":"validation failed: depends_on[0].job_id: ` + msg + `",` +
		`"errors":[{"field":"depends_on[0].job_id","message":"` + msg + `"}]}`
	_, _, err = runCLI(t, fakeServer(t, map[string]fakeAnswer{"POST /jobs": {422, arr}}), append(base, "--after-ok", "arr-1")...)
	if want := `422 validation failed: --after-ok: no job "arr-1": a job depends on jobs, not on a job array; on each of its jobs, which 'avxrm jobs ls -A --array arr-1' lists`; err == nil || err.Error() != want {
		t.Errorf("a job array named:\n got %v\nwant %s", err, want)
	}
}

// submit says when the job's workers have resource limits and its queue
// runs on a local plugin, which sets none (the app-runtime-config's limits
// come before the queue's); on another plugin, or with no limits, nothing.
// Before, the job ran without them and nothing said so.
func TestSubmitNotesLimitsTheLocalDriverDoesNotSet(t *testing.T) {
	job := `{"id":"job-a","queue_id":"q-1","queue_name":"Lim","status":"submitted","worker_instances":1,"application":{"id":"app-1"}}`
	queue := func(plugin, limits string) string {
		return `{"id":"q-1","name":"Lim","maximum_allowed_worker_instances":4,"scheduling":{}` + plugin + limits + `}`
	}
	const note = "note: queue Lim runs on the local plugin here, which sets no resource limits: " +
		"its processes may use more than the limits the job's workers are given (memory 50Mi)\n"
	for name, c := range map[string]struct {
		routes map[string]fakeAnswer
		want   string
	}{
		"local plugin, the runtime config's limits": {map[string]fakeAnswer{
			"GET /queues/q-1": {200, queue(`,"plugin_id":"plg-1"`, `,"resource_limits":{"cpu":"2","memory":"1Gi"}`)},
			"GET /app-runtime-config/q-1/application/app-1": {200, `{"image":"x","resource_limits":{"memory":"50Mi"}}`},
			"GET /plugins/plg-1":                            {200, `{"id":"plg-1","name":"here","type":"local","config":{}}`},
		}, note},
		"the default plugin, local": {map[string]fakeAnswer{
			"GET /queues/q-1": {200, queue("", `,"resource_limits":{"memory":"50Mi"}`)},
			"GET /plugins":    {200, `{"items":[{"id":"plg-0","name":"other","type":"docker","config":{}},{"id":"plg-1","name":"here","type":"local","is_default":true,"config":{}}]}`},
		}, note},
		"docker plugin": {map[string]fakeAnswer{
			"GET /queues/q-1":    {200, queue(`,"plugin_id":"plg-1"`, `,"resource_limits":{"memory":"50Mi"}`)},
			"GET /plugins/plg-1": {200, `{"id":"plg-1","name":"engine","type":"docker","config":{}}`},
		}, ""},
		"no limits": {map[string]fakeAnswer{
			"GET /queues/q-1":    {200, queue(`,"plugin_id":"plg-1"`, "")},
			"GET /plugins/plg-1": {200, `{"id":"plg-1","name":"here","type":"local","config":{}}`},
		}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			c.routes["POST /jobs"] = fakeAnswer{201, job}
			_, stderr, err := runCLI(t, fakeServer(t, c.routes), "submit", "--queue", "Lim", "--app", "app-1")
			if err != nil {
				t.Fatal(err)
			}
			if stderr != c.want {
				t.Errorf("stderr = %q, want %q", stderr, c.want)
			}
		})
	}
}
