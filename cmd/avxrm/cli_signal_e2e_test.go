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
	// Each server says when a command has connected: by then it handles
	// signals (a fixed second was too short for a -race binary under load,
	// which the signal then killed).
	streamServer := func() (string, <-chan struct{}) {
		arrived := make(chan struct{}, 1)
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			select {
			case arrived <- struct{}{}:
			default:
			}
			<-r.Context().Done()
		}))
		t.Cleanup(s.Close)
		return s.URL, arrived
	}
	silentServer := func() (string, <-chan struct{}) { // takes connections, never answers
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		arrived := make(chan struct{}, 16)
		var held []net.Conn // closed with the listener, after the accept loop ends
		done := make(chan struct{})
		t.Cleanup(func() {
			_ = l.Close()
			<-done
			for _, c := range held {
				_ = c.Close()
			}
		})
		go func() {
			defer close(done)
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				held = append(held, c)
				select {
				case arrived <- struct{}{}:
				default:
				}
			}
		}()
		return "http://" + l.Addr().String(), arrived
	}
	silentURL, _ := silentServer()
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
		args   []string
		server func() (string, <-chan struct{})
		sig    syscall.Signal
		code   int
	}{
		{[]string{"events"}, streamServer, syscall.SIGINT, 130},
		{[]string{"events"}, streamServer, syscall.SIGTERM, 143},
		{[]string{"queues", "ls"}, silentServer, syscall.SIGINT, 130},
	} {
		url, arrived := c.server()
		t.Run(fmt.Sprint(c.args[0], c.sig), func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(binary, append(c.args, "--server", url)...)
			cmd.Env = env
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			select { // connected, or waiting for the answer
			case <-arrived:
			case <-time.After(30 * time.Second):
				t.Fatalf("avxrm %v did not connect within 30 s", c.args)
			}
			_ = cmd.Process.Signal(c.sig)
			err := cmd.Wait()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != c.code || out.String() != "" {
				t.Errorf("avxrm %v, then %v: %v, %q; want exit %d, quietly", c.args, c.sig, err, out.String(), c.code)
			}
		})
	}
}
