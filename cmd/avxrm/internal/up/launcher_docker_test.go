package up_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
)

// The launcher's Docker driver end to end, against the Docker Engine of
// this machine: the image is built here (FROM scratch with a static Go
// binary), since no registry can be reached. The test talks to the Engine
// API over its socket with plain HTTP, to check containers by label.

// dockerAPI is a client of the Engine API on /var/run/docker.sock.
var dockerAPI = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
	return (&net.Dialer{}).DialContext(ctx, "unix", "/var/run/docker.sock")
}}, Timeout: 5 * time.Minute}

// buildSleeperImage builds testdata/sleeper into a FROM scratch image and
// removes it when the test ends.
func buildSleeperImage(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "sleeper"), "./testdata/sleeper")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build sleeper: %v\n%s", err, out)
	}
	exe, err := os.ReadFile(filepath.Join(dir, "sleeper"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte("FROM scratch\nCOPY sleeper /sleeper\nENTRYPOINT [\"/sleeper\"]\n")},
		{"sleeper", 0o755, exe},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	tag := "rm-launcher-e2e-sleeper:" + hex.EncodeToString(b)
	resp, err := dockerAPI.Post("http://docker/build?rm=1&forcerm=1&t="+url.QueryEscape(tag), "application/x-tar", &buf)
	if err != nil {
		t.Fatalf("docker build: %v", err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || bytes.Contains(out, []byte(`"errorDetail"`)) {
		t.Fatalf("docker build: %d %s", resp.StatusCode, out)
	}
	t.Cleanup(func() {
		req, _ := http.NewRequest(http.MethodDelete, "http://docker/images/"+url.PathEscape(tag)+"?force=1", nil)
		if resp, err := dockerAPI.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	return tag
}

type dockerContainer struct {
	ID     string            `json:"Id"`
	State  string            `json:"State"`
	Labels map[string]string `json:"Labels"`
}

// containersOf lists the containers (running or not) of job id.
func containersOf(t *testing.T, id string) []dockerContainer {
	t.Helper()
	f, _ := json.Marshal(map[string][]string{"label": {"rm.job-id=" + id}})
	resp, err := dockerAPI.Get("http://docker/containers/json?all=1&filters=" + url.QueryEscape(string(f)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var cs []dockerContainer
	if err := json.NewDecoder(resp.Body).Decode(&cs); err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestLauncherDockerJobs(t *testing.T) {
	image := buildSleeperImage(t)
	sys := startSystemIn(t, t.TempDir())
	c := newClient(t, sys.HTTPAddr)
	// The Docker plugin is the default, so the controller (on
	// simulation-controller-queue, which names no plugin) runs in Docker too.
	var plg struct {
		ID string `json:"id"`
	}
	c.must(http.MethodPost, "/api/resources/v1/plugins", map[string]any{"name": "engine", "type": "docker", "config": map[string]any{}, "is_default": true},
		http.StatusCreated, &plg)
	var app struct {
		ID string `json:"id"`
	}
	c.must(http.MethodPost, "/api/resources/v1/applications", map[string]any{"name": "sleeper", "version": "1", "image": image},
		http.StatusCreated, &app)
	c.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "dock", "plugin_id": plg.ID, "maximum_allowed_worker_instances": 10},
		http.StatusCreated, nil)
	var jobs []string
	t.Cleanup(func() { removeContainersOf(t, jobs) })

	ok := c.submitApp("dock", app.ID, 3, map[string]string{"SLEEP": "1"})
	jobs = append(jobs, ok.ID)
	got := c.waitJobFor(ok.ID, "final", 120*time.Second, isFinal)
	if got.Status != events.JobSucceeded {
		t.Fatalf("docker job: %s %+v %+v", got.Status, got.Conditions, got.Instances)
	}
	checkInstances(t, got, events.InstanceSucceeded, 0)
	cs := containersOf(t, ok.ID)
	if len(cs) != 4 {
		t.Errorf("containers of the finished job: %d, want 4 (kept until cleanup)", len(cs))
	}
	status, raw := c.do(http.MethodGet, jobsPath+"/"+ok.ID+"/instances/worker/2/logs", nil)
	if want := fmt.Sprintf("hello from worker 2 of %s\n", ok.ID); status != http.StatusOK || string(raw) != want {
		t.Errorf("logs = %d %q, want %q", status, raw, want)
	}
	c.must(http.MethodPost, jobsPath+"/"+ok.ID+"/cleanup", nil, http.StatusAccepted, nil)
	c.waitJobFor(ok.ID, "cleaned", 30*time.Second, func(j events.Job) bool { return j.CleanedAt != nil })
	waitNoContainers(t, ok.ID)

	// A cancelled job: its containers are stopped at once, and removed by
	// the cleanup (DELETE /jobs/{id} does both).
	long := c.submitApp("dock", app.ID, 3, map[string]string{"SLEEP": "300"})
	jobs = append(jobs, long.ID)
	c.waitJobFor(long.ID, "running", 120*time.Second, hasStatus(events.JobRunning))
	if n := len(containersOf(t, long.ID)); n != 4 {
		t.Fatalf("containers of the running job: %d, want 4", n)
	}
	c.must(http.MethodPost, jobsPath+"/"+long.ID+"/cancel", nil, http.StatusAccepted, nil)
	got = c.waitJobFor(long.ID, "cancelled", 60*time.Second, isFinal)
	if got.Status != events.JobCancelled {
		t.Fatalf("cancelled job: %s", got.Status)
	}
	for _, ct := range containersOf(t, long.ID) {
		if ct.State == "running" {
			t.Errorf("container %s of the cancelled job still running", ct.ID)
		}
	}
	c.must(http.MethodDelete, jobsPath+"/"+long.ID, nil, http.StatusNoContent, nil)
	waitNoContainers(t, long.ID)
}

// removeContainersOf force-removes the containers of jobs: whatever a
// failed assertion left behind.
func removeContainersOf(t *testing.T, jobs []string) {
	for _, id := range jobs {
		for _, ct := range containersOf(t, id) {
			req, _ := http.NewRequest(http.MethodDelete, "http://docker/containers/"+ct.ID+"?force=1&v=1", nil)
			if resp, err := dockerAPI.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	}
}

func waitNoContainers(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		cs := containersOf(t, id)
		if len(cs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var states []string
			for _, c := range cs {
				states = append(states, c.ID[:12]+" "+c.State)
			}
			t.Fatalf("containers of job %s left: %s", id, strings.Join(states, ", "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
