// Package allinone builds the avxrm binary and runs `avxrm up` from it, on
// free ports, for end-to-end tests of the clients (the CLI, the Go SDK):
// they then talk to the system exactly as a user's would, through a
// separate process.
package allinone

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// Build compiles avxrm into dir and returns its path; when $AVXRM_BIN names
// a built one (as `make test` does, with -race, so that the suite compiles
// the tree once: docs/testing.md), it returns that instead.
func Build(dir string) (string, error) {
	if b := os.Getenv("AVXRM_BIN"); b != "" {
		if _, err := os.Stat(b); err != nil {
			return "", fmt.Errorf("AVXRM_BIN: %w", err)
		}
		return filepath.Abs(b)
	}
	bin := filepath.Join(dir, "avxrm")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/avxrm/rm/cmd/avxrm").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build avxrm: %v\n%s", err, out)
	}
	return bin, nil
}

// Server is a running `avxrm up`.
type Server struct {
	URL     string // the root URL, e.g. http://127.0.0.1:40123
	Addr    string // host:port of the API
	cmd     *exec.Cmd
	stopped chan struct{}
}

var apiLine = regexp.MustCompile(`"api":"http://([^"]+)"`)

// Start runs `bin up` with its data in dataDir and its API on httpAddr
// ("127.0.0.1:0" for a free port), waits until it is ready, and stops it
// when the test ends. RM_TEST_LOG=1 shows its log.
func Start(t testing.TB, bin, dataDir, httpAddr string) *Server {
	t.Helper()
	cmd := exec.Command(bin, "up", "--data-dir", dataDir, "--http-addr", httpAddr, "--nats-addr", "127.0.0.1:0",
		"--mongo-addr", "127.0.0.1:0", "--log-format", "json", "--outbox-interval", "200ms")
	cmd.WaitDelay = 30 * time.Second
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &Server{cmd: cmd, stopped: make(chan struct{})}
	t.Cleanup(s.Stop)
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if m := apiLine.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
			if os.Getenv("RM_TEST_LOG") != "" {
				fmt.Fprintln(os.Stderr, sc.Text())
			}
		}
	}()
	go func() {
		_ = cmd.Wait()
		close(s.stopped)
	}()
	select {
	case s.Addr = <-found:
	case <-s.stopped:
		t.Fatal("avxrm up exited before it listened (RM_TEST_LOG=1 shows why)")
	case <-time.After(90 * time.Second):
		t.Fatal("avxrm up never said where it listens")
	}
	s.URL = "http://" + s.Addr
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("%s never became ready", s.URL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop interrupts the server and waits until it has exited.
func (s *Server) Stop() {
	select {
	case <-s.stopped:
		return
	default:
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.stopped:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.stopped
	}
}

// RunTests is a TestMain: it builds avxrm into a temp dir, sets *bin to its
// path, runs the tests and exits with their status.
func RunTests(m *testing.M, bin *string) {
	dir, err := os.MkdirTemp("", "avxrm-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *bin, err = Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
