package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
)

// Following a log asks only for what it has not printed (?offset=), so a
// long log is not read again on every poll; a restart reads the new log
// from its start.
func TestFollowLogAsksFromWhereItWas(t *testing.T) {
	var mu sync.Mutex
	logs := [][]byte{[]byte("one\n")}
	var offsets []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		offsets = append(offsets, r.URL.Query().Get("offset"))
		log := logs[len(logs)-1]
		off, _ := strconv.Atoi(r.URL.Query().Get("offset"))
		w.Header().Set("Content-Type", "text/plain")
		if off < len(log) {
			_, _ = w.Write(log[off:])
		}
	}))
	defer srv.Close()
	out := followFake(t, srv.URL, -1, &mu, func(polls int) (bool, bool) {
		switch polls {
		case 2:
			logs[0] = append(logs[0], "two\n"...)
		case 3:
			logs = append(logs, []byte("again\n")) // a new replica's log
			return false, true
		case 4:
			return true, false
		}
		return false, false
	})
	if got, want := out, "one\ntwo\nagain\n"; got != want {
		t.Errorf("printed %q, want %q", got, want)
	}
	if got, want := offsets, []string{"0", "4", "0", "6"}; !slices.Equal(got, want) {
		t.Errorf("offsets asked %q, want %q", got, want)
	}
}

// --tail asks for the last lines once, then follows from where the answer
// said they start (Rm-Log-Offset) plus what it printed.
func TestLogsTailThenFollow(t *testing.T) {
	var mu sync.Mutex
	log := "one\ntwo\nthree\n"
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, r.URL.RawQuery)
		start := 0
		if r.URL.Query().Has("tail") {
			start = strings.Index(log, "two") // the last 2 lines of 3
		} else {
			start, _ = strconv.Atoi(r.URL.Query().Get("offset"))
		}
		w.Header().Set("Rm-Log-Offset", strconv.Itoa(start))
		_, _ = w.Write([]byte(log[min(start, len(log)):]))
	}))
	defer srv.Close()
	out := followFake(t, srv.URL, 2, &mu, func(polls int) (bool, bool) {
		if polls == 2 {
			log += "four\n"
		}
		return polls == 3, false
	})
	if got, want := out, "two\nthree\nfour\n"; got != want {
		t.Errorf("printed %q, want %q", got, want)
	}
	if want := []string{"tail=2", "offset=14", "offset=19"}; !slices.Equal(asked, want) {
		t.Errorf("asked %q, want %q", asked, want)
	}
}

// followFake follows the log the fake server at url serves, with tail (-1: all of it),
// polling with poll (given the poll's count, under mu) and returns what it
// printed.
func followFake(t *testing.T, url string, tail int, mu *sync.Mutex, poll func(polls int) (ended, restarted bool)) string {
	t.Helper()
	c, err := avxrm.New(url)
	if err != nil {
		t.Fatal(err)
	}
	polls := 0
	var out bytes.Buffer
	err = followLog(context.Background(), c, "/jobs/job-1/instances/worker/0/logs", tail, true, &out, io.Discard, func() (bool, bool, error) {
		mu.Lock()
		defer mu.Unlock()
		polls++
		ended, restarted := poll(polls)
		return ended, restarted, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// A connection lost while following a log is said on stderr and the log read
// again once the server is back, nothing printed twice or left out; a first
// read that fails ends the command at once.
func TestFollowLogThroughALostConnection(t *testing.T) {
	var mu sync.Mutex
	log := "one\n"
	down := 0 // requests still to be cut off
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if cutOff(w, &down) {
			return
		}
		start, _ := strconv.Atoi(r.URL.Query().Get("offset"))
		_, _ = w.Write([]byte(log[min(start, len(log)):]))
	}))
	defer srv.Close()
	c, err := avxrm.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	path := "/jobs/job-1/instances/worker/0/logs"
	var out, errw bytes.Buffer
	polls := 0
	err = followLog(context.Background(), c, path, -1, true, &out, &errw, func() (bool, bool, error) {
		mu.Lock()
		defer mu.Unlock()
		polls++
		if polls == 2 {
			log += "two\n"
			down = 7 // more than the client's own attempts (5) of one read
		}
		return polls == 4, false, nil
	})
	want := lostAndBack(srv.URL)
	if err != nil || out.String() != "one\ntwo\n" || errw.String() != want {
		t.Errorf("followed %q, %v; stderr %q, want %q", out.String(), err, errw.String(), want)
	}

	refused := &url.Error{Op: "Get", URL: srv.URL, Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}}
	began := time.Now()
	err = followLog(context.Background(), c, path, -1, true, io.Discard, io.Discard, func() (bool, bool, error) { return false, false, refused })
	if !errors.Is(err, refused) || time.Since(began) > time.Second {
		t.Errorf("first read refused: %v after %s, want it at once", err, time.Since(began))
	}
}

// Following an array's counts goes on through a lost connection as
// following a log does.
func TestFollowArrayThroughALostConnection(t *testing.T) {
	var mu sync.Mutex
	reads, down := 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if cutOff(w, &down) {
			return
		}
		reads++
		counts := `{"running": 2}`
		if reads == 1 {
			down = 7 // more than the client's own attempts (5) of one read
		} else {
			counts = `{"succeeded": 2}`
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id": "arr-1", "count": 2, "counts": %s}`, counts)
	}))
	defer srv.Close()
	c, err := avxrm.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var errw bytes.Buffer
	a, err := followArray(context.Background(), c, "arr-1", io.Discard, &errw, 10*time.Millisecond)
	want := lostAndBack(srv.URL)
	if err != nil || a == nil || (*a.Counts)["succeeded"] != 2 || errw.String() != want {
		t.Errorf("followed %v, %v; stderr %q, want %q", a, err, errw.String(), want)
	}
}

// cutOff closes the request's connection without an answer while *down
// requests are still to be cut off, and says whether it did.
func cutOff(w http.ResponseWriter, down *int) bool {
	if *down == 0 {
		return false
	}
	*down--
	if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
		conn.Close()
	}
	return true
}

// lostAndBack is what stderr says of a connection to server lost once and back.
func lostAndBack(server string) string {
	return "avxrm: lost the connection to " + server + " (the server ended the stream); reconnecting\n" +
		"avxrm: reconnected to " + server + "\n"
}

// fakeLogAPI is an API with one job, job-1, whose worker 0 writes log
// (nil: it has none yet, a 404), and deployment viz, whose replica 0 writes
// the same: a log answers ?tail= with its last lines from Rm-Log-Offset,
// and ?offset= with what follows it, as the API does. Each read of the job
// (a poll of logs -f) calls poll first, under mu, which may write more of
// the log and say the job has ended.
type fakeLogAPI struct {
	mu    sync.Mutex
	log   *string
	polls int
	poll  func(polls int, log **string) (ended bool)
	ended bool
	asked []string // the logs' queries
}

func (f *fakeLogAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case strings.HasSuffix(r.URL.Path, "/jobs/job-1"):
		f.polls++
		if f.poll != nil && f.poll(f.polls, &f.log) {
			f.ended = true
		}
		status := map[bool]string{false: "running", true: "succeeded"}[f.ended]
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"job-1","name":"job-1","queue_id":"q-1","status":%q,"worker_instances":1,"application":{"id":"app-1"}}`, status)
	case strings.HasSuffix(r.URL.Path, "/logs"):
		f.asked = append(f.asked, r.URL.RawQuery)
		if f.log == nil {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"title":"Not Found","status":404,"detail":"worker 0 of job \"job-1\" has no log: the job is admitted and its instances are starting"}`))
			return
		}
		log := *f.log
		start, _ := strconv.Atoi(r.URL.Query().Get("offset"))
		if tail, err := strconv.Atoi(r.URL.Query().Get("tail")); err == nil {
			start = len(log)
			for n := 0; n < tail && start > 0; n++ { // the start of the last tail lines
				start = strings.LastIndex(log[:start-1], "\n") + 1
				if start == 0 {
					break
				}
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Rm-Log-Offset", strconv.Itoa(start))
		_, _ = w.Write([]byte(log[min(start, len(log)):]))
	default:
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"title":"Not Found","status":404,"detail":"no ` + r.URL.Path + `"}`))
	}
}

// logs --tail 0 -f prints none of what the log held when it started, and
// all that is written after, a line cut short where it started too (as
// docker logs and kubectl logs --tail 0 -f do); a log not there yet when it
// starts is all new.
func TestLogsTailZeroFollowsOnlyNewOutput(t *testing.T) {
	for name, c := range map[string]struct {
		log  *string
		more []string // written at the second poll and after, one a poll
		want string
	}{
		"lines":            {ptr("old 1\nold 2\n"), []string{"new 1\n", "new 2", "\n"}, "new 1\nnew 2\n"},
		"a line cut short": {ptr("old 1\nold 2"), []string{" and its end\n", "new\n"}, " and its end\nnew\n"},
		"an empty log":     {ptr(""), []string{"new\n"}, "new\n"},
		"no log yet":       {nil, []string{"first\n", "second\n"}, "first\nsecond\n"},
	} {
		t.Run(name, func(t *testing.T) {
			api := &fakeLogAPI{log: c.log, poll: func(polls int, log **string) bool {
				if i := polls - 2; i >= 0 && i < len(c.more) {
					if *log == nil {
						*log = ptr("")
					}
					*log = ptr(**log + c.more[i])
				}
				return polls == len(c.more)+2
			}}
			srv := httptest.NewServer(api)
			t.Cleanup(srv.Close)
			out, errOut, err := runCLI(t, srv.URL, "logs", "job-1", "--tail", "0", "-f")
			if err != nil || out != c.want {
				t.Errorf("logs --tail 0 -f: %q, %v (%s); want %q", out, err, errOut, c.want)
			}
			api.mu.Lock()
			defer api.mu.Unlock()
			if c.log != nil && (len(api.asked) == 0 || api.asked[0] != "tail=1") {
				t.Errorf("asked %q; want the last line first (tail=1), where the log ends", api.asked)
			}
		})
	}
}

// --tail 0 without -f prints nothing and exits 0, for a job's instance and a
// deployment's replica alike, after one read that finds the log (a job or
// an instance that is not there is an error still); a negative --tail is
// refused before anything is asked.
func TestLogsTailZeroWithoutFollowPrintsNothing(t *testing.T) {
	api := &fakeLogAPI{log: ptr("old 1\nold 2\n")}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	for _, args := range [][]string{{"logs", "job-1", "--tail", "0"}, {"deployments", "logs", "viz", "--tail", "0"}} {
		api.mu.Lock()
		api.asked = nil
		api.mu.Unlock()
		out, errOut, err := runCLI(t, srv.URL, args...)
		api.mu.Lock()
		asked := api.asked
		api.mu.Unlock()
		if err != nil || out != "" || !slices.Equal(asked, []string{"tail=1"}) {
			t.Errorf("%v: printed %q, %v (%s), asked %q; want nothing, exit 0, one read", args, out, err, errOut, asked)
		}
	}
	api.mu.Lock()
	api.log = nil
	api.mu.Unlock()
	if _, _, err := runCLI(t, srv.URL, "logs", "job-1", "--tail", "0"); err == nil || !strings.Contains(err.Error(), "has no log") {
		t.Errorf("logs --tail 0 of no log: %v, want the 404", err)
	}
	for _, args := range [][]string{{"logs", "job-1", "--tail", "-1"}, {"deployments", "logs", "viz", "--tail", "-2", "-f"}} {
		api.mu.Lock()
		api.asked = nil
		api.mu.Unlock()
		_, _, err := runCLI(t, srv.URL, args...)
		if err == nil || !strings.Contains(err.Error(), "--tail -") || !strings.Contains(err.Error(), "0 or more") {
			t.Errorf("%v: %v; want --tail refused", args, err)
		}
		api.mu.Lock()
		if len(api.asked) > 0 {
			t.Errorf("%v asked %q", args, api.asked)
		}
		api.mu.Unlock()
	}
}

// Against the real system: logs --tail 0 -f of a running worker prints
// what it writes once the command has found the log's end, none of what it
// wrote before; --tail 0 without -f prints nothing.
func TestLogsTailZeroAgainstTheSystem(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	gate := filepath.Join(t.TempDir(), "go")
	srv, c, app := startWithApp(t, "gated", "/bin/sh", "-c",
		`echo before; while [ ! -e '`+gate+`' ]; do sleep 0.1; done; echo after; echo "and last"`)
	job, err := c.SubmitJob(ctx, api.JobBody{QueueId: "q", WorkerInstances: 1, Application: api.JobApplicationRef{Id: app.Id}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		l, err := c.InstanceLog(ctx, *job.Id, "worker", 0, avxrm.LogOptions{})
		if err == nil && string(l.Data) == "before\n" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the worker never wrote its first line: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The worker goes on once the command has read where the log ends.
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	var once sync.Once
	proxy.ModifyResponse = func(resp *http.Response) error {
		if strings.HasSuffix(resp.Request.URL.Path, "/logs") && resp.Request.URL.RawQuery == "tail=1" {
			once.Do(func() {
				if err := os.WriteFile(gate, nil, 0o644); err != nil {
					t.Error(err)
				}
			})
		}
		return nil
	}
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)
	var out, errOut eventstest.SyncBuffer
	err = runCLIContext(t, ctx, front.URL, &out, &errOut, "logs", *job.Id, "--tail", "0", "-f")
	if want := "after\nand last\n"; err != nil || out.String() != want {
		t.Errorf("logs --tail 0 -f: %q, %v (%s); want %q", out.String(), err, errOut.String(), want)
	}
	if out, errOut, err := runCLI(t, srv.URL, "logs", *job.Id, "--tail", "0"); err != nil || out != "" {
		t.Errorf("logs --tail 0: %q, %v (%s); want nothing", out, err, errOut)
	}
	if out, _, err := runCLI(t, srv.URL, "logs", *job.Id); err != nil || out != "before\nafter\nand last\n" {
		t.Errorf("logs: %q, %v; want the whole log", out, err)
	}
}
