package docker_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/docker"
	"github.com/avxrm/rm/services/launcher/internal/driver/drivertest"
)

// stuckPulls is a Docker engine whose pulls say nothing until release is
// closed; it forwards everything else to the engine on this machine.
func stuckPulls(t *testing.T, release <-chan struct{}) (host string, pulls *atomic.Int32) {
	t.Helper()
	pulls = &atomic.Int32{}
	engine := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(&url.URL{Scheme: "http", Host: "docker"}) },
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", "/var/run/docker.sock")
		}},
		FlushInterval: -1, // the event stream
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/images/create") {
			pulls.Add(1)
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		engine.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return "tcp://" + srv.Listener.Addr().String(), pulls
}

// TestPullOutlivesItsStart: a pull goes on when the start that began it
// ends, and the next start of that image joins it rather than begin
// another; its failure reaches the start that waits for it then. The
// launcher bounds its starts (2 min) so that a hung engine does not hold
// its workers: a pull cancelled with each start would lose its layer under
// way at every retry, and a big image would never be had.
func TestPullOutlivesItsStart(t *testing.T) {
	release := make(chan struct{})
	host, pulls := stuckPulls(t, release)
	d, err := docker.NewDriver(driver.DockerConfig{Host: host}, driver.Options{Installation: installation})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ref := driver.Ref{JobID: drivertest.JobID(t), Role: driver.RoleWorker}
	image := "rm-missing-" + strings.ToLower(drivertest.JobID(t)) + ":1"
	for try := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		err := d.Start(ctx, driver.Spec{Ref: ref, Image: image})
		cancel()
		if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "still under way") {
			t.Fatalf("start %d while the pull is stuck = %v, want it saying the pull is under way, not the start's deadline", try+1, err)
		}
	}
	if n := pulls.Load(); n != 1 {
		t.Errorf("two starts of an image the engine has not: %d pulls, want 1", n)
	}
	close(release)
	err = d.Start(context.Background(), driver.Spec{Ref: ref, Image: image})
	if !errors.Is(err, driver.ErrImagePull) {
		t.Errorf("start once the pull ends = %v, want driver.ErrImagePull (no registry has it)", err)
	}
}

// TestSilentPullFails: a pull of which the engine says nothing for the
// pull's idle bound fails with driver.ErrUnavailable, so that the starts
// that wait for it are not held by an engine that stopped answering.
func TestSilentPullFails(t *testing.T) {
	host, _ := stuckPulls(t, make(chan struct{}))
	d, err := docker.NewDriver(driver.DockerConfig{Host: host}, driver.Options{Installation: installation}, docker.WithPullIdle(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ref := driver.Ref{JobID: drivertest.JobID(t), Role: driver.RoleWorker}
	err = d.Start(context.Background(), driver.Spec{Ref: ref, Image: "rm-missing-" + strings.ToLower(drivertest.JobID(t)) + ":1"})
	if !errors.Is(err, driver.ErrUnavailable) || !strings.Contains(err.Error(), "no word of its progress") {
		t.Fatalf("start whose pull the engine says nothing of = %v, want driver.ErrUnavailable", err)
	}
}
