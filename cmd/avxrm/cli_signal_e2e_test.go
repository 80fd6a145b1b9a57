package main_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Ctrl-C (SIGINT) ends any command quietly with exit code 130, SIGTERM
// with 143, whatever it was doing; a server that takes the connection but never
// answers is given up on after the response-header timeout, named.
func TestCLIInterruptAndUnansweredServer(t *testing.T) {
	stream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(stream.Close)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = silent.Close() }) // takes connections into its backlog, never answers
	silentURL := "http://" + silent.Addr().String()
	env := append(os.Environ(), "HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir(), "RM_TOKEN=")

	t.Run("unanswered", func(t *testing.T) {
		t.Parallel()
		cmd := exec.Command(binary, "queues", "ls", "--server", silentURL)
		cmd.Env = env
		start := time.Now()
		out, err := cmd.CombinedOutput()
		want := "avxrm: the server at " + silentURL + " took the request but did not answer within 30s; is --server the Resource Manager's root URL, and is it well?\n"
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || string(out) != want || time.Since(start) > 45*time.Second {
			t.Errorf("queues ls of a server that never answers: %v after %v, %q; want exit 1, %q", err, time.Since(start), out, want)
		}
	})
	for _, c := range []struct {
		args []string
		sig  syscall.Signal
		code int
	}{
		{[]string{"events", "--server", stream.URL}, syscall.SIGINT, 130},
		{[]string{"events", "--server", stream.URL}, syscall.SIGTERM, 143},
		{[]string{"queues", "ls", "--server", silentURL}, syscall.SIGINT, 130},
	} {
		t.Run(fmt.Sprint(c.args[0], c.sig), func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(binary, c.args...)
			cmd.Env = env
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second) // connected, or waiting for the answer
			_ = cmd.Process.Signal(c.sig)
			err := cmd.Wait()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != c.code || out.String() != "" {
				t.Errorf("avxrm %v, then %v: %v, %q; want exit %d, quietly", c.args, c.sig, err, out.String(), c.code)
			}
		})
	}
}
