//go:build composetest

package deploy

// The offline compose stack end to end on the local Docker Engine, run by
// `make compose-test` (after `make images`) with Debian's docker-compose:
// the seed's example (a queue limited to 10 workers, jobs of 10 and 8 workers
// running sleep in avxrm/busybox containers) while the scheduler leader and
// the launcher leader are killed with SIGKILL.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/deploy/internal/composestack"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

type stack struct {
	t       *testing.T
	project string
	env     []string
}

func (s *stack) compose(args ...string) (string, error) {
	return composestack.Compose(s.project, "compose", s.env, args...)
}

var docker, leader = composestack.Docker, composestack.Leader

// hostPort is the 127.0.0.1 port that service's container port is published on.
func (s *stack) hostPort(service, port string) string {
	out, err := s.compose("port", service, port)
	if err != nil {
		s.t.Fatalf("port %s: %v %s", service, err, out)
	}
	out = strings.TrimSpace(out)
	return out[strings.LastIndex(out, ":")+1:]
}

func (s *stack) container(service string) string {
	id, err := docker("ps", "-q", "--filter", "label=com.docker.compose.project="+s.project, "--filter", "label=com.docker.compose.service="+service)
	if err != nil || id == "" {
		s.t.Fatalf("container of %s: %v %q", service, err, id)
	}
	return strings.Fields(id)[0]
}

func (s *stack) healthy(services []string) bool {
	for _, svc := range services {
		id, _ := docker("ps", "-q", "--filter", "label=com.docker.compose.project="+s.project, "--filter", "label=com.docker.compose.service="+svc)
		if id == "" {
			return false
		}
		st, _ := docker("inspect", "-f", "{{.State.Health.Status}}", strings.Fields(id)[0])
		if st != "healthy" {
			return false
		}
	}
	return true
}

type api struct {
	t    *testing.T
	base string
}

func (a *api) do(method, path string, body any, want int, out any) {
	a.t.Helper()
	var r io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		r = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, a.base+path, r)
	req.Header.Set("content-type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		a.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			a.t.Fatal(err)
		}
	}
}

type job struct {
	ID        string  `json:"id"`
	Status    string  `json:"status"`
	CleanedAt *string `json:"cleaned_at"`
}

func (a *api) job(id string) job {
	var j job
	a.do(http.MethodGet, "/api/resources/v1/jobs/"+id, nil, http.StatusOK, &j)
	return j
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return time.Since(start)
}

func managed(project string, jobID string) []string {
	args := []string{"ps", "-aq", "--filter", "label=rm.managed", "--filter", "network=" + project + "_workers"}
	if jobID != "" {
		args = append(args, "--filter", "label=rm.job-id="+jobID)
	}
	out, _ := docker(args...)
	return strings.Fields(out)
}

func TestComposeStack(t *testing.T) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	s := &stack{t: t, project: "avxrm-deploy-" + hex.EncodeToString(b),
		env: []string{"RM_API_PUBLISH=127.0.0.1:", "RM_NATS_PUBLISH=127.0.0.1:", "RM_LOG_LEVEL=info"}}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := s.compose("logs", "--no-color", "--tail", "40")
			t.Logf("logs:\n%s", out)
		}
		for _, id := range managed(s.project, "") {
			_, _ = docker("rm", "-f", "-v", id)
		}
		if out, err := s.compose("down", "-v", "--remove-orphans", "-t", "5"); err != nil {
			t.Errorf("down: %v %s", err, out)
		}
		for _, kind := range []string{"ps -aq", "network ls -q", "volume ls -q"} {
			args := append(strings.Fields(kind), "--filter", "label=com.docker.compose.project="+s.project)
			if out, _ := docker(args...); out != "" {
				t.Errorf("left after down (%s): %s", kind, out)
			}
		}
	})
	start := time.Now()
	if out, err := s.compose("up", "-d"); err != nil {
		t.Fatalf("up: %v\n%s", err, out)
	}
	all := append([]string{"mongo"}, rmServices...)
	waitFor(t, "every service healthy", 3*time.Minute, func() bool { return s.healthy(all) })
	ready := time.Since(start)
	a := &api{t: t, base: "http://127.0.0.1:" + s.hostPort("rm-api", "8080")}
	a.do(http.MethodGet, "/readyz", nil, http.StatusOK, nil)
	t.Logf("FIGURE time to ready from compose up: %v", ready.Round(100*time.Millisecond))

	nc, err := nats.Connect("nats://127.0.0.1:"+s.hostPort("nats", "4222"), nats.UserInfo("client", envFile(t, "RM_NATS_CLIENT_PASSWORD")))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	var plg, app struct {
		ID string `json:"id"`
	}
	// Before any plugin: a queue without one runs on the launchers' own
	// docker driver, on the workers' network, where rm-api resolves (on
	// Docker's bridge, where it ran before, the job failed).
	var pinger struct {
		ID string `json:"id"`
	}
	a.do(http.MethodPost, "/api/resources/v1/applications", map[string]any{"name": "pinger", "version": "1",
		"image": "avxrm/busybox:dev", "command": []string{"wget"}, "args": []string{"-q", "-O", "-", "http://rm-api:8080/healthz"}}, http.StatusCreated, &pinger)
	a.do(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "plain", "maximum_allowed_worker_instances": 2}, http.StatusCreated, nil)
	var ping job
	a.do(http.MethodPost, "/api/resources/v1/jobs", map[string]any{"queue_id": "plain", "worker_instances": 1,
		"application": map[string]any{"id": pinger.ID}}, http.StatusCreated, &ping)
	waitFor(t, "the job on the default driver final", 3*time.Minute, func() bool {
		st := a.job(ping.ID).Status
		return st == "succeeded" || st == "failed" || st == "cancelled"
	})
	if st := a.job(ping.ID).Status; st != "succeeded" {
		t.Errorf("job %s on the launchers' default driver: %s, want succeeded (rm-api reached from its network)", ping.ID, st)
	}
	if got := len(managed(s.project, ping.ID)); got != 2 {
		t.Errorf("job %s on the default driver: %d containers on %s_workers, want 2", ping.ID, got, s.project)
	}
	a.do(http.MethodPost, "/api/resources/v1/plugins", map[string]any{"name": "engine", "type": "docker",
		"config": map[string]any{"network": s.project + "_workers"}, "is_default": true}, http.StatusCreated, &plg)
	a.do(http.MethodPost, "/api/resources/v1/applications", map[string]any{"name": "sleeper", "version": "1",
		"image": "avxrm/busybox:dev", "command": []string{"sleep"}, "args": []string{"25"}}, http.StatusCreated, &app)
	a.do(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "seed", "plugin_id": plg.ID,
		"maximum_allowed_worker_instances": 10}, http.StatusCreated, nil)
	var jobs []job
	for _, n := range []int{10, 8} {
		var j job
		a.do(http.MethodPost, "/api/resources/v1/jobs", map[string]any{"queue_id": "seed", "worker_instances": n,
			"application": map[string]any{"id": app.ID}}, http.StatusCreated, &j)
		jobs = append(jobs, j)
	}
	waitFor(t, "first job running", 3*time.Minute, func() bool { return a.job(jobs[0].ID).Status == "running" })

	// Kill both leaders while the first job runs and the second waits.
	sched, launch := leader(ctx, js, "rm_scheduler", "rm-scheduler-1", "rm-scheduler-2"), leader(ctx, js, "rm_launcher", "rm-launcher-1", "rm-launcher-2")
	if sched == "" || launch == "" {
		t.Fatalf("leaders: scheduler %q, launcher %q", sched, launch)
	}
	for _, c := range []string{sched, launch} {
		if out, err := docker("kill", "-s", "KILL", s.container(c)); err != nil {
			t.Fatalf("kill %s: %v %s", c, err, out)
		}
	}
	killed := time.Now()
	var schedTake, launchTake time.Duration
	waitFor(t, "new leaders", time.Minute, func() bool {
		if l := leader(ctx, js, "rm_scheduler", "rm-scheduler-1", "rm-scheduler-2"); schedTake == 0 && l != "" && l != sched {
			schedTake = time.Since(killed)
		}
		if l := leader(ctx, js, "rm_launcher", "rm-launcher-1", "rm-launcher-2"); launchTake == 0 && l != "" && l != launch {
			launchTake = time.Since(killed)
		}
		return schedTake > 0 && launchTake > 0
	})
	t.Logf("FIGURE take-over after docker kill: scheduler %v (%s killed), launcher %v (%s killed)",
		schedTake.Round(100*time.Millisecond), sched, launchTake.Round(100*time.Millisecond), launch)

	for _, j := range jobs {
		waitFor(t, "job "+j.ID+" final", 5*time.Minute, func() bool {
			st := a.job(j.ID).Status
			return st == "succeeded" || st == "failed" || st == "cancelled"
		})
		if st := a.job(j.ID).Status; st != "succeeded" {
			t.Errorf("job %s: %s", j.ID, st)
		}
	}
	// No duplicate container: one per instance (controller + workers).
	for i, j := range jobs {
		if got, want := len(managed(s.project, j.ID)), []int{11, 9}[i]; got != want {
			t.Errorf("job %s: %d containers, want %d", j.ID, got, want)
		}
	}
	// From the events: each job admitted once, the second only after the
	// first finished (10 + 8 > 10).
	types := map[string][]string{}
	var order []string
	cons, err := js.OrderedConsumer(ctx, "RM_EVENTS", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"rm.events.job.>"}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			break
		}
		typ := m.Headers().Get("ce-type")
		id := m.Headers().Get("ce-subject")
		types[id] = append(types[id], typ)
		order = append(order, id+" "+typ)
	}
	for _, j := range jobs {
		if n := slices.Index(types[j.ID], "rm.job.admitted"); n < 0 || slices.Index(types[j.ID][n+1:], "rm.job.admitted") >= 0 {
			t.Errorf("job %s: admitted events %v", j.ID, types[j.ID])
		}
	}
	if first, second := slices.Index(order, jobs[0].ID+" rm.job.succeeded"), slices.Index(order, jobs[1].ID+" rm.job.admitted"); first < 0 || second < first {
		t.Errorf("second job admitted before the first finished: %v", order)
	}
	t.Logf("job events received from NATS on the host: %d", len(order))

	for _, j := range append(jobs, ping) {
		a.do(http.MethodPost, "/api/resources/v1/jobs/"+j.ID+"/cleanup", nil, http.StatusAccepted, nil)
	}
	waitFor(t, "no worker container left", 2*time.Minute, func() bool { return len(managed(s.project, "")) == 0 })
	fmt.Fprintln(os.Stderr, "compose stack test done in", time.Since(start).Round(time.Second))
}

// envFile reads key from compose/.env.
func envFile(t *testing.T, key string) string {
	raw, err := os.ReadFile("compose/.env")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return v
		}
	}
	t.Fatalf("%s not in .env", key)
	return ""
}
