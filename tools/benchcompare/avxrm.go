package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const apiBase = "/api/resources/v1"

// stampScript is the application every local job runs: an instance of a job
// with MODE=end sleeps HOLD seconds and then writes its end stamp; with
// MODE=start it writes its start stamp at once; otherwise it sleeps HOLD.
const stampScript = `case "$MODE" in
end) sleep "$HOLD"; date +%s.%N > "$STAMPS/end-$ROUND-$RM_ROLE-$RM_INSTANCE_INDEX" ;;
start) date +%s.%N > "$STAMPS/start-$ROUND-$RM_ROLE-$RM_INSTANCE_INDEX" ;;
*) [ "${HOLD:-0}" = 0 ] || sleep "$HOLD" ;;
esac`

// allInOne is one `avxrm up` process on a fresh data directory.
type allInOne struct {
	dir  string
	base string
	cmd  *exec.Cmd
	http *http.Client
}

// runOurs runs each workload on a fresh all-in-one, so that no workload
// pays for the history of another.
func runOurs(ctx context.Context, bin, dir string, o options, sizes []int) (result, error) {
	var r result
	steps := []struct {
		name string
		run  func(a *allInOne) error
	}{
		{"trivial jobs, local driver", func(a *allInOne) (err error) {
			r.trivialLocal, err = a.trivial(ctx, o.jobs, o.clients, "")
			return err
		}},
		{"trivial jobs, simulated driver", func(a *allInOne) (err error) {
			r.trivialSim, err = a.trivial(ctx, o.jobs, o.clients, "simulated")
			return err
		}},
		{"hand-over", func(a *allInOne) (err error) {
			r.handover, r.phases, err = a.handover(ctx, o.handovers)
			return err
		}},
		{"mixed workload", func(a *allInOne) (err error) {
			r.mixed, err = a.mixed(ctx, sizes, "")
			r.utilization = r.mixed.loss.work
			return err
		}},
		{"mixed workload, simulated driver", func(a *allInOne) (err error) {
			r.mixedSim, err = a.mixed(ctx, sizes, "simulated")
			return err
		}},
	}
	for i, st := range steps {
		fmt.Fprintf(os.Stderr, "avxrm: %s\n", st.name)
		a, err := startOurs(ctx, bin, filepath.Join(dir, fmt.Sprint(i)))
		if err != nil {
			return r, err
		}
		err = st.run(a)
		a.stop()
		if err != nil {
			return r, fmt.Errorf("%s: %w", st.name, err)
		}
	}
	return r, nil
}

func startOurs(ctx context.Context, bin, dir string) (*allInOne, error) {
	if err := os.MkdirAll(filepath.Join(dir, "stamps"), 0o755); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	a := &allInOne{dir: dir, base: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), http: &http.Client{}}
	a.cmd = exec.Command(bin, "up",
		"--data-dir", filepath.Join(dir, "data"),
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"--nats-addr", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"--mongo-addr", fmt.Sprintf("127.0.0.1:%d", ports[2]),
		"--log-level", "warn")
	logf, err := os.Create(filepath.Join(dir, "avxrm.log"))
	if err != nil {
		return nil, err
	}
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	if err := a.cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := a.http.Get(a.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return a, nil
			}
		}
		if time.Now().After(deadline) {
			a.stop()
			return nil, fmt.Errorf("avxrm up not ready after 60 s (log: %s)", logf.Name())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (a *allInOne) stop() {
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = a.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = a.cmd.Process.Kill()
		<-done
	}
}

// call sends a JSON request and decodes the answer into out (when not nil).
func (a *allInOne) call(ctx context.Context, method, path string, body, out any, want int) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+apiBase+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// setup registers the plugin (simulated with holdSeconds, or the local
// default), a queue with limit (0: unlimited) and the stamp application,
// and returns the application id.
func (a *allInOne) setup(ctx context.Context, driver string, holdSeconds float64, limit int) (string, error) {
	if driver == "simulated" {
		// Default, so that the controllers run on it too: the control plane alone.
		if err := a.call(ctx, http.MethodPost, "/plugins", map[string]any{
			"name": "sim", "type": "simulated", "config": map[string]any{"run_seconds": holdSeconds}, "is_default": true,
		}, nil, http.StatusCreated); err != nil {
			return "", err
		}
	}
	q := map[string]any{"name": "bench"}
	if limit > 0 {
		q["maximum_allowed_worker_instances"] = limit
	}
	if err := a.call(ctx, http.MethodPost, "/queues", q, nil, http.StatusCreated); err != nil {
		return "", err
	}
	var app struct {
		ID string `json:"id"`
	}
	err := a.call(ctx, http.MethodPost, "/applications", map[string]any{
		"name": "stamp", "version": "1", "image": "local", "command": []string{"/bin/sh", "-c", stampScript},
	}, &app, http.StatusCreated)
	return app.ID, err
}

func (a *allInOne) submit(ctx context.Context, app string, workers int, env map[string]string) (string, error) {
	var j struct {
		ID string `json:"id"`
	}
	err := a.call(ctx, http.MethodPost, "/jobs", map[string]any{
		"queue_id": "bench", "worker_instances": workers, "application": map[string]any{"id": app},
		"environment_variables": env,
	}, &j, http.StatusCreated)
	return j.ID, err
}

// finals follows the event stream of the bench queue from now on and sends
// the id of each job that reaches a final status. The stream is open when
// finals returns.
func (a *allInOne) finals(ctx context.Context) (<-chan string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		a.base+apiBase+"/events?queue_id=bench&type=rm.job.succeeded,rm.job.failed,rm.job.cancelled", nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET /events: %s", resp.Status)
	}
	ch := make(chan string, 1024)
	go func() {
		defer resp.Body.Close()
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data:")
			if !ok {
				continue
			}
			var ev struct {
				Type string `json:"type"`
				Data struct {
					ID string `json:"id"`
				} `json:"data"`
			}
			if json.Unmarshal([]byte(strings.TrimSpace(data)), &ev) == nil && ev.Data.ID != "" {
				if ev.Type != "rm.job.succeeded" {
					fmt.Fprintf(os.Stderr, "avxrm: job %s: %s\n", ev.Data.ID, ev.Type)
				}
				ch <- ev.Data.ID
			}
		}
	}()
	return ch, nil
}

// await waits until n distinct jobs have reached a final status.
func await(ctx context.Context, ch <-chan string, n int, d time.Duration) error {
	seen := map[string]bool{}
	timeout := time.After(d)
	for len(seen) < n {
		select {
		case id, ok := <-ch:
			if !ok {
				return fmt.Errorf("event stream ended after %d of %d final jobs", len(seen), n)
			}
			seen[id] = true
		case <-timeout:
			return fmt.Errorf("%d of %d jobs final after %s", len(seen), n, d)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (a *allInOne) trivial(ctx context.Context, jobs, clients int, driver string) (float64, error) {
	app, err := a.setup(ctx, driver, 0, 0)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fin, err := a.finals(ctx)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := fanOut(jobs, clients, func(int) error { _, err := a.submit(ctx, app, 1, nil); return err }); err != nil {
		return 0, err
	}
	if err := await(ctx, fin, jobs, 30*time.Minute); err != nil {
		return 0, err
	}
	return float64(jobs) / time.Since(start).Seconds(), nil
}

func (a *allInOne) handover(ctx context.Context, n int) ([]time.Duration, []handoverPhases, error) {
	app, err := a.setup(ctx, "", 0, 10)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fin, err := a.finals(ctx)
	if err != nil {
		return nil, nil, err
	}
	st := filepath.Join(a.dir, "stamps")
	var out []time.Duration
	var phases []handoverPhases
	for i := range n {
		env := func(mode string) map[string]string {
			return map[string]string{"MODE": mode, "HOLD": "1", "ROUND": fmt.Sprint(i), "STAMPS": st}
		}
		holder, err := a.submit(ctx, app, 10, env("end"))
		if err != nil {
			return nil, nil, err
		}
		waiter, err := a.submit(ctx, app, 8, env("start"))
		if err != nil {
			return nil, nil, err
		}
		if err := await(ctx, fin, 2, time.Minute); err != nil {
			return nil, nil, err
		}
		lastEnd, firstStart, err := roundStamps(st, i)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, firstStart.Sub(lastEnd))
		p, err := a.phasesOf(ctx, holder, waiter, lastEnd, firstStart)
		if err != nil {
			return nil, nil, err
		}
		phases = append(phases, p)
	}
	return out, phases, nil
}

// mixed runs the mixed workload on driver ("": local, each instance holding
// its worker 1 s with `sleep`; "simulated": instances that run 1 s without a
// process, the control plane alone).
func (a *allInOne) mixed(ctx context.Context, sizes []int, driver string) (mixedRun, error) {
	hold := 0.0
	if driver == "simulated" {
		hold = 1
	}
	app, err := a.setup(ctx, driver, hold, 100)
	if err != nil {
		return mixedRun{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fin, err := a.finals(ctx)
	if err != nil {
		return mixedRun{}, err
	}
	ids := make([]string, len(sizes))
	start := time.Now()
	err = fanOut(len(sizes), 4, func(i int) (err error) {
		ids[i], err = a.submit(ctx, app, sizes[i], map[string]string{"HOLD": "1"})
		return err
	})
	if err != nil {
		return mixedRun{}, err
	}
	if err := await(ctx, fin, len(sizes), 30*time.Minute); err != nil {
		return mixedRun{}, err
	}
	end := time.Now()
	jobs, err := a.readMixed(ctx, ids)
	if err != nil {
		return mixedRun{}, err
	}
	return mixedRun{loss: splitMixed(jobs, 100, time.Second, start, end), jobs: jobs}, nil
}
