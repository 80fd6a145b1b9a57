package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm"
)

// run runs avxrm's client commands in-process and returns what ExitCode
// prints and returns, and stdout.
func run(t *testing.T, stdin string, args ...string) (msg string, code int, out string) {
	t.Helper()
	msg, code, out, _ = runStderr(t, stdin, args...)
	return msg, code, out
}

// runStderr is run that also returns what the command wrote on stderr.
func runStderr(t *testing.T, stdin string, args ...string) (msg string, code int, out, errOut string) {
	t.Helper()
	t.Setenv("RM_TOKEN", "")
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	root := Root()
	var stdout, stderr, m bytes.Buffer
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code = ExitCode(root.ExecuteContext(ctx), &m)
	return m.String(), code, stdout.String(), stderr.String()
}

// A word that is none of a group's commands is an error that suggests the
// command meant, not the group's help and exit 0; the group alone is help.
func TestUnknownCommands(t *testing.T) {
	for args, want := range map[string]string{
		"queues lss":                       `avxrm: unknown command "lss" for "avxrm queues"; did you mean "ls"?`,
		"jobs lss":                         `avxrm: unknown command "lss" for "avxrm jobs"; did you mean "ls"?`,
		"bogus":                            `avxrm: unknown command "bogus" for "avxrm"; did you mean "logs"?`,
		"completion bogus":                 `avxrm: unknown command "bogus" for "avxrm completion"; 'avxrm completion --help' lists its commands`,
		"jobs post-controller job-1 start": `avxrm: unknown command "job-1" for "avxrm jobs post-controller"; 'avxrm jobs post-controller --help' lists its commands`,
		// Not an unknown command, but refused before any request: a live view has no document.
		"watch -o json": `avxrm: watch is a live view; for JSON or YAML use 'avxrm events -o json'`,
	} {
		if msg, code, _ := run(t, "", strings.Fields(args)...); code != ExitFailed || msg != want+"\n" {
			t.Errorf("avxrm %s: exit %d, %q; want 1, %q", args, code, msg, want)
		}
	}
	for _, args := range []string{"queues", "jobs post-controller", "completion", ""} {
		msg, code, out := run(t, "", strings.Fields(args)...)
		path := strings.TrimSpace("avxrm " + args)
		if code != ExitOK || msg != "" || !strings.Contains(out, "Use \""+path+" [command] --help\"") {
			t.Errorf("avxrm %s: exit %d, %q, %q; want its help", args, code, msg, out)
		}
		// Its usage is the group's alone, not also a "[flags]" line of its own.
		if want := "Usage:\n  " + path + " [command]\n"; !strings.Contains(out, want) {
			t.Errorf("avxrm %s: help %q, want the usage %q", args, out, want)
		}
	}
	// A command that runs keeps its usage line.
	if _, _, out := run(t, "", "queues", "ls", "--help"); !strings.Contains(out, "Usage:\n  avxrm queues ls [flags]\n") {
		t.Errorf("avxrm queues ls --help: %q", out)
	}
}

// htmlServer answers every request with status and an HTML page, as a
// web server that is not the API does.
func htmlServer(t *testing.T, status int) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, "<!DOCTYPE HTML>\n<html lang=\"en\">\n<head><title>page</title></head></html>\n")
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Another web server's answers are named as such, not dumped, and not
// taken for an old server or one with auth off.
func TestNotTheAPI(t *testing.T) {
	for _, status := range []int{http.StatusNotFound, http.StatusOK} {
		srv := htmlServer(t, status)
		want := fmt.Sprintf("the server at %s answered %d with text/html, not the Resource Manager's API: is --server its root URL?\n", srv.URL, status)
		for _, args := range []string{"queues ls", "queues get Default", "version", "whoami", "login --username a --password-stdin", "events"} {
			msg, code, _ := run(t, "pw\n", append(strings.Fields(args), "--server", srv.URL)...)
			want := "avxrm: " + want
			if strings.HasPrefix(args, "login") {
				want = "avxrm: no --issuer given, and " + strings.TrimPrefix(want, "avxrm: ")
			}
			if code != ExitFailed || msg != want {
				t.Errorf("%s of a %d page: exit %d, %q; want 1, %q", args, status, code, msg, want)
			}
		}
	}
}

// A server that cannot be reached is named; so is an issuer, which is not
// taken for the server; a URL under which the API answers 404 is not its root.
func TestConnectionErrorsNameTheURL(t *testing.T) {
	for args, want := range map[string]string{
		"queues ls --server http://127.0.0.1:1":                           "avxrm: cannot reach the server at http://127.0.0.1:1 (connect: connection refused); is 'avxrm up' running? --server or $RM_SERVER says where it is\n",
		"events --server http://127.0.0.1:1":                              "avxrm: cannot reach the server at http://127.0.0.1:1 (connect: connection refused); is 'avxrm up' running? --server or $RM_SERVER says where it is\n",
		"login --issuer http://127.0.0.1:1 --username a --password-stdin": "avxrm: cannot reach the OIDC issuer at http://127.0.0.1:1 (connect: connection refused); is --issuer, or the issuer the server names, right?\n",
	} {
		if msg, code, _ := run(t, "pw\n", strings.Fields(args)...); code != ExitFailed || msg != want {
			t.Errorf("avxrm %s: exit %d, %q; want 1, %q", args, code, msg, want)
		}
	}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json") // as the API answers a route it lacks
		w.WriteHeader(http.StatusNotFound)
		_, _ = fmt.Fprintf(w, `{"title":"Not Found","status":404,"detail":"Not Found","instance":%q}`, r.URL.Path)
	}))
	defer api.Close()
	want := "avxrm: the API was not found under " + api.URL + "/extra (404): --server is the server's root URL, such as " + api.URL + "\n"
	for _, args := range []string{"queues ls", "version", "whoami"} {
		if msg, code, _ := run(t, "", append(strings.Fields(args), "--server", api.URL+"/extra")...); code != ExitFailed || msg != want {
			t.Errorf("avxrm %s under a path: exit %d, %q; want 1, %q", args, code, msg, want)
		}
	}
	if msg, _, _ := run(t, "", "whoami", "--server", api.URL); !strings.Contains(msg, "it is older than that route") {
		t.Errorf("whoami of a server without the route: %q", msg)
	}
}

// The event stream's report: the first connection's failure ends it; a
// later loss is said once, again each minute, and the reconnection too.
// Of several streams (a wait for many jobs), the loss is said once however
// many lose it, and the reconnection once all have it back.
func TestStreamReport(t *testing.T) {
	var out bytes.Buffer
	var stopped error
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	report := func() (*streamReport, *avxrm.WatchOptions) {
		r := newStreamReport(&out, "http://rm", func(err error) { stopped = err })
		r.now = func() time.Time { return now }
		var o avxrm.WatchOptions
		r.watch(&o)
		return r, &o
	}
	_, o := report()
	o.OnDisconnect(io.ErrUnexpectedEOF, 0)
	if stopped != io.ErrUnexpectedEOF || out.Len() != 0 {
		t.Fatalf("first connection failed: stopped %v, said %q; want it stopped, silently", stopped, out.String())
	}
	stopped = nil
	_, o = report()
	o.OnConnect()
	for range 3 {
		o.OnDisconnect(io.EOF, 0)
		now = now.Add(40 * time.Second)
	}
	o.OnConnect()
	want := "avxrm: lost the connection to http://rm (the server ended the stream); reconnecting\n" +
		"avxrm: still cannot reach http://rm after 1m (the server ended the stream); reconnecting\n" +
		"avxrm: reconnected to http://rm\n"
	if stopped != nil || out.String() != want {
		t.Errorf("stopped %v, said:\n%s\nwant:\n%s", stopped, out.String(), want)
	}

	out.Reset()
	r, a := report()
	var b avxrm.WatchOptions
	r.watch(&b)
	a.OnConnect()
	b.OnConnect()
	a.OnDisconnect(io.EOF, 0)
	b.OnDisconnect(io.EOF, 0)
	a.OnConnect() // b is still down
	if want := "avxrm: lost the connection to http://rm (the server ended the stream); reconnecting\n"; out.String() != want {
		t.Errorf("two streams lost, one back: said %q, want %q", out.String(), want)
	}
	b.OnConnect()
	if !strings.HasSuffix(out.String(), "avxrm: reconnected to http://rm\n") || stopped != nil {
		t.Errorf("both back: said %q, stopped %v", out.String(), stopped)
	}
	var c avxrm.WatchOptions // a stream opened later whose first connection fails
	r.watch(&c)
	c.OnDisconnect(io.ErrUnexpectedEOF, 0)
	if stopped != io.ErrUnexpectedEOF {
		t.Errorf("a later stream's first connection failed: stopped %v", stopped)
	}
}

// Following one job (submit --wait, jobs wait) reports its event stream's
// connection as events does: a stream whose first connection fails ends
// the command at once (it retried without a word, for ever), and a lost
// one is said on stderr while it is reopened.
func TestFollowReportsItsStream(t *testing.T) {
	var streams atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/jobs/job-1"):
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"id":"job-1","status":"running","version":3}`)
		case strings.HasSuffix(r.URL.Path, "/events"):
			streams.Add(1)
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"title":"Service Unavailable","status":503,"detail":"the store cannot be reached at the moment"}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	began := time.Now()
	msg, code, _ := run(t, "", "--server", srv.URL, "jobs", "wait", "job-1")
	if code != ExitFailed || !strings.Contains(msg, "the store cannot be reached") || time.Since(began) > 10*time.Second {
		t.Errorf("jobs wait on a stream that never opens: exit %d after %s, %q; want 1 at once, saying why", code, time.Since(began), msg)
	}
	// One connection: the client's own retries of a 503 (4) within it.
	if n := streams.Load(); n > 5 {
		t.Errorf("the stream was asked for %d times, want one connection", n)
	}
}

// A wait for several jobs tells of their event streams as one: a lost
// connection once (not once a job), its return once every stream has it
// back; a stream whose first connection fails ends the wait at once.
func TestWaitAllReportsItsStreams(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]int{} // a job's stream connections
	ended := map[string]bool{}
	firstOpen := make(chan struct{}) // closed once both first connections are open
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.Contains(r.URL.Path, "/jobs/job-"):
			id := path.Base(r.URL.Path)
			mu.Lock()
			status, version := "running", 3
			if ended[id] {
				status, version = "succeeded", 4
			}
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":%q,"status":%q,"version":%d}`, id, status, version)
		case strings.HasSuffix(r.URL.Path, "/events"):
			id := r.URL.Query().Get("job_id")
			mu.Lock()
			conns[id]++
			n := conns[id]
			if n == 1 && conns["job-1"] == 1 && conns["job-2"] == 1 {
				close(firstOpen)
			}
			mu.Unlock()
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			if n == 1 { // both connections are lost together
				<-firstOpen
				return
			}
			mu.Lock()
			ended[id] = true
			mu.Unlock()
			fmt.Fprintf(w, "id: %d\nevent: rm.job.succeeded\ndata: {\"type\":\"rm.job.succeeded\",\"data\":{\"id\":%q,\"status\":\"succeeded\",\"version\":4}}\n\n", n, id)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	msg, code, _, errOut := runStderr(t, "", "--server", srv.URL, "jobs", "wait", "job-1", "job-2")
	want := "avxrm: lost the connection to " + srv.URL + " (the server ended the stream); reconnecting\n"
	if code != ExitOK || !strings.HasPrefix(errOut, want) || strings.Count(errOut, "lost the connection") != 1 ||
		strings.Count(errOut, "avxrm: reconnected to "+srv.URL+"\n") != 1 || !strings.Contains(errOut, "2 jobs: 2 succeeded") {
		t.Errorf("jobs wait of two jobs whose streams were lost: exit %d, %q, stderr:\n%s", code, msg, errOut)
	}

	unavailable := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/events") {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"title":"Service Unavailable","status":503,"detail":"the store cannot be reached at the moment"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q,"status":"running","version":3}`, path.Base(r.URL.Path))
	}))
	defer unavailable.Close()
	began := time.Now()
	msg, code, _ = run(t, "", "--server", unavailable.URL, "jobs", "wait", "job-1", "job-2")
	if code != ExitFailed || !strings.Contains(msg, "the store cannot be reached") || !strings.Contains(msg, "2 of 2 jobs have not ended") || time.Since(began) > 10*time.Second {
		t.Errorf("jobs wait of two jobs on a stream that never opens: exit %d after %s, %q", code, time.Since(began), msg)
	}
}

// An id of "." or ".." is sent as one escaped segment, so that no proxy or
// client resolves it into another path (the API's root, another job's).
func TestDotIDsStayOneSegment(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.RequestURI)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"title":"Not Found","status":404,"detail":"job \"..\" not found"}`)
	}))
	defer srv.Close()
	for args, want := range map[string]string{
		"jobs get ..":      "/api/resources/v1/jobs/%2E%2E",
		"jobs cancel .":    "/api/resources/v1/jobs/%2E/cancel",
		"queues get ..":    "/api/resources/v1/queues/%2E%2E",
		"arrays cancel ..": "/api/resources/v1/job-arrays/%2E%2E/cancel",
	} {
		asked = nil
		if _, code, _ := run(t, "", append([]string{"--server", srv.URL}, strings.Fields(args)...)...); code != ExitFailed || len(asked) == 0 || asked[0] != want {
			t.Errorf("avxrm %s: exit %d, asked %q, want %s first", args, code, asked, want)
		}
	}
}

// unexpectedServer is a server no request should reach; it counts those
// that do.
func unexpectedServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		http.Error(w, "not expected", http.StatusTeapot)
	}))
	t.Cleanup(srv.Close)
	return srv, &requests
}

// A flag the command does not have is refused before anything is sent, and
// the error says what to give instead: the field's --set or --set-string on
// create and set, submit's flag for a job field, the flag a slip was of
// (for a shorthand: the same letter's other case, or the flags it begins).
func TestUnknownFlagsSayWhatToGive(t *testing.T) {
	srv, requests := unexpectedServer(t)
	t.Setenv("RM_SERVER", srv.URL)
	for args, want := range map[string]string{
		"apps create sim --version 1.0":                                 `unknown flag: --version: the application's version is set with --set-string version=…`,
		"apps create sim --image=reg/sim:1":                             `unknown flag: --image: the application's image is set with --set-string image=…`,
		"apps create sim --command /bin/sh":                             `unknown flag: --command: the application's command is set with --set 'command=["…", "…"]' (a JSON list)`,
		"apps create --name sim":                                        `unknown flag: --name: the name is the argument: avxrm apps create <name>`,
		"apps set sim:1.0 --environment-variables A=1":                  `unknown flag: --environment-variables: the application's environment_variables is set with --set environment_variables.<key>=… (one --set per key)`,
		"queues create Q --maximum-allowed-worker-instances 3":          `unknown flag: --maximum-allowed-worker-instances: the queue's maximum_allowed_worker_instances is set with --limit`,
		"queues set Q --scheduling x":                                   `unknown flag: --scheduling: the queue's scheduling is set with --set scheduling.<key>=… (one --set per key)`,
		"queues create Q --limt 3":                                      `unknown flag: --limt: did you mean --limit?`,
		"deployments create viz --replicas 2":                           `unknown flag: --replicas: the deployment's replicas is set with --set replicas=…`,
		"plugins create p --type local":                                 `unknown flag: --type: the plugin's type is set with --set-string type=…`,
		"runtime-configs create Default sim:1.0 --working-directory /w": `unknown flag: --working-directory: the runtime config's working_directory is set with --set-string working_directory=…`,
		"submit --worker-instances 3":                                   `unknown flag: --worker-instances: the job's worker_instances is given with --workers`,
		"submit --queue-id Default":                                     `unknown flag: --queue-id: the job's queue_id is given with --queue`,
		"submit --max-run-seconds 60":                                   `unknown flag: --max-run-seconds: the job's max_run_seconds is given with --time-limit`,
		"submit --depends-on job-1":                                     `unknown flag: --depends-on: the job's depends_on is given with --after-ok <job> or --after-any <job>`,
		"submit --args x":                                               `unknown flag: --args: the job's args follow --: avxrm submit … -- --seed 42`,
		"submit --worker 3":                                             `unknown flag: --worker: did you mean --workers?`,
		"jobs ls --stat failed":                                         `unknown flag: --stat: did you mean --status?`,
		"logs job-1 --rol worker":                                       `unknown flag: --rol: did you mean --role?`,
		"jobs ls --serv http://x":                                       `unknown flag: --serv: did you mean --server?`,
		"jobs ls --bogus":                                               `unknown flag: --bogus`,
		"jobs ls -a":                                                    `unknown shorthand flag: 'a' in -a: did you mean -A (--all)?`,
		"submit -w 3":                                                   `unknown shorthand flag: 'w' in -w: did you mean --wait or --workers?`,
		"queues create Q -l 3":                                          `unknown shorthand flag: 'l' in -l: did you mean --limit?`,
		"submit -x":                                                     `unknown shorthand flag: 'x' in -x`,
	} {
		if msg, code, _ := run(t, "", strings.Fields(args)...); code != ExitFailed || msg != "avxrm: "+want+"\n" {
			t.Errorf("avxrm %s: exit %d, %q; want 1, %q", args, code, msg, want)
		}
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("%d requests sent; want none", n)
	}
}

// Every flag a hint names is one its command has.
func TestFlagHintsNameFlagsThatExist(t *testing.T) {
	root := Root()
	for _, k := range kinds {
		if k.body == nil {
			t.Errorf("%s: no body type, so create and set give no field hints", k.use)
		}
		for _, verb := range []string{"create", "set"} {
			cmd, _, err := root.Find([]string{k.use, verb})
			if err != nil || cmd.Name() != verb {
				t.Fatalf("%s %s: %v", k.use, verb, err)
			}
			for field, flag := range k.fieldFlags {
				if cmd.Flags().Lookup(flag) == nil {
					t.Errorf("%s %s: the hint for %s names --%s, which it does not have", k.use, verb, field, flag)
				}
				if f, _ := jsonField(k.body, field); f != field {
					t.Errorf("%s: %s is no field of its body", k.use, field)
				}
			}
		}
	}
	submit, _, _ := root.Find([]string{"submit"})
	for field, flag := range submitFlags {
		if submit.Flags().Lookup(flag) == nil {
			t.Errorf("submit: the hint for %s names --%s, which it does not have", field, flag)
		}
	}
}

// While the API answers 503 (its store cannot be reached), a command says
// on stderr why it has not answered yet and when it tries again, instead
// of waiting in silence through its retries; the answer that comes at last
// is printed as ever.
func TestRetriesOf503AreSaid(t *testing.T) {
	var refused atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if refused.Add(1) <= 2 {
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"title":"Service Unavailable","status":503,"detail":"the store cannot be reached at the moment; retry the request shortly"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"q-1","name":"a","maximum_allowed_worker_instances":2,"version":1}`)
	}))
	defer srv.Close()
	msg, code, out, errOut := runStderr(t, "", "--server", srv.URL, "queues", "get", "a", "-o", "json")
	if code != 0 || !strings.Contains(out, `"q-1"`) {
		t.Fatalf("queues get after two 503s: exit %d, %q, stdout %q", code, msg, out)
	}
	want := []string{
		"avxrm: 503 the store cannot be reached at the moment; retry the request shortly; trying again in 1s (retry 1 of 4)",
		"avxrm: 503 the store cannot be reached at the moment; retry the request shortly; trying again in 1s (retry 2 of 4)",
	}
	if got := strings.Split(strings.TrimSpace(errOut), "\n"); !slices.Equal(got, want) {
		t.Errorf("stderr:\n%s\nwant:\n%s", errOut, strings.Join(want, "\n"))
	}
}
