// Command faulttest is the fault suite of the separate services (`make
// fault-test`, docs/faults.md): on the offline compose stack
// (deploy/compose, images from `make images`) it submits jobs from several
// clients to queues with limits on the simulated driver, and meanwhile, one
// after the other, kills -9 each service container and starts it again,
// restarts NATS and the store, and cuts a launcher off the network for 30 s.
// Afterwards it reads the job events from the JetStream stream from its
// start and the jobs from the store (through the API), checks the
// invariants (check.go) and prints a table of faults × invariants ×
// recovery time. It always takes the stack down. Exit status 1 when an
// invariant failed or a fault could not be injected as planned, 2 when the
// run itself failed.
//
//	cd deploy && go run ./faulttest -submissions 10000 -clients 8
package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/avxrm/rm/deploy/internal/composestack"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	runLabel = "fault_run"
	keyLabel = "fault_key"
	apiBase  = "/api/resources/v1"
)

type options struct {
	submissions int
	clients     int
	runSeconds  float64
	maxRecovery time.Duration
	disconnect  time.Duration
	tag         string
	composeDir  string
	keepLogs    string
	drain       time.Duration
	submitFor   time.Duration
	only        string
	logLevel    string
}

func main() {
	var o options
	flag.IntVar(&o.submissions, "submissions", 10000, "jobs submitted in all")
	flag.IntVar(&o.clients, "clients", 8, "concurrent submitting clients")
	flag.Float64Var(&o.runSeconds, "run-seconds", 0.2, "how long each simulated instance runs")
	flag.DurationVar(&o.maxRecovery, "max-recovery", 10*time.Second, "longest allowed time from a fault to the next admission")
	flag.DurationVar(&o.disconnect, "disconnect", 30*time.Second, "how long a launcher stays off the network")
	flag.StringVar(&o.tag, "tag", envOr("RM_TAG", "dev"), "image tag (make images builds dev)")
	flag.StringVar(&o.composeDir, "compose-dir", "compose", "the folder of compose.yaml and compose.offline.yaml")
	flag.StringVar(&o.keepLogs, "logs", "", "write the services' logs here (always written to a temporary file when an invariant fails)")
	flag.DurationVar(&o.drain, "drain", 20*time.Minute, "how long to wait for every accepted job to end after the last submission")
	flag.DurationVar(&o.submitFor, "submit-for", 0, "stop submitting after this long even if fewer than -submissions were sent (0: no limit); the faults are spread over it")
	flag.StringVar(&o.only, "faults", "", "run only these faults, comma-separated short names ("+strings.Join(faultNames, ", ")+"), each at its usual point of the run; empty: all")
	flag.StringVar(&o.logLevel, "log-level", "info", "the services' RM_LOG_LEVEL (info: takeovers' and the store's comings and goings, a few hundred lines a run)")
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	if err := o.check(); err != nil {
		log.Print(err)
		flag.Usage()
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx, o)
	if err != nil {
		log.Print(err)
		code = 2
	}
	os.Exit(code)
}

// faultNames are the faults' short names, in the order they are injected.
var faultNames = []string{"api", "scheduler-leader", "scheduler-standby", "launcher-leader", "launcher-standby", "export", "nats", "store", "disconnect"}

// check refuses options that would hang the run (no client: no admission
// for the faults to wait for), pass it without a fault (a misspelt name in
// -faults), or fail it only minutes later (a log level the services refuse).
func (o options) check() error {
	switch {
	case o.submissions < 1:
		return fmt.Errorf("-submissions must be at least 1 (got %d)", o.submissions)
	case o.clients < 1:
		return fmt.Errorf("-clients must be at least 1 (got %d)", o.clients)
	case o.runSeconds < 0 || o.runSeconds > 86400:
		return fmt.Errorf("-run-seconds must be 0 to 86400 (got %g)", o.runSeconds)
	case o.maxRecovery <= 0, o.disconnect <= 0, o.drain <= 0:
		return fmt.Errorf("-max-recovery, -disconnect and -drain must be positive (got %v, %v, %v)", o.maxRecovery, o.disconnect, o.drain)
	case o.submitFor < 0:
		return fmt.Errorf("-submit-for must be 0 (no limit) or positive (got %v)", o.submitFor)
	case !slices.Contains([]string{"debug", "info", "warn", "error"}, o.logLevel):
		return fmt.Errorf("-log-level must be debug, info, warn or error (got %q)", o.logLevel)
	}
	for _, f := range o.chosen() {
		if !slices.Contains(faultNames, f) {
			return fmt.Errorf("-faults: no fault %q (the faults: %s)", f, strings.Join(faultNames, ", "))
		}
	}
	return nil
}

// chosen are the names -faults gives, none when it is empty (all faults).
func (o options) chosen() []string {
	if o.only == "" {
		return nil
	}
	names := strings.Split(o.only, ",")
	for i := range names {
		names[i] = strings.TrimSpace(names[i])
	}
	return names
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// run brings the stack up, runs the suite and always takes the stack down.
func run(ctx context.Context, o options) (code int, err error) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	runID := hex.EncodeToString(b)
	apiPort, natsPort := freePort(), freePort()
	s := &stack{project: "avxrm-fault-" + runID, dir: o.composeDir, env: []string{
		"RM_TAG=" + o.tag, "RM_LOG_LEVEL=" + o.logLevel,
		"RM_API_PUBLISH=127.0.0.1:" + apiPort, "RM_NATS_PUBLISH=127.0.0.1:" + natsPort,
	}}
	defer func() {
		if code != 0 || o.keepLogs != "" {
			path := o.keepLogs
			if path == "" {
				f, ferr := os.CreateTemp("", "faulttest-logs-*.txt")
				if ferr == nil {
					path = f.Name()
					f.Close()
				}
			}
			if out, lerr := s.logs(); lerr == nil && path != "" {
				_ = os.WriteFile(path, []byte(out), 0o644)
				log.Printf("services' logs: %s", path)
			}
		}
		if derr := s.down(); derr != nil {
			log.Print(derr)
			if code == 0 {
				code = 2
			}
		}
	}()

	start := time.Now()
	log.Printf("compose up, project %s, images avxrm/*:%s", s.project, o.tag)
	if out, err := s.compose("up", "-d"); err != nil {
		return 2, fmt.Errorf("compose up: %v\n%s", err, out)
	}
	if err := s.waitHealthy(ctx, 3*time.Minute); err != nil {
		return 2, err
	}
	log.Printf("stack ready in %v", time.Since(start).Round(100*time.Millisecond))

	a := &api{base: "http://127.0.0.1:" + apiPort, http: &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 4 * o.clients}}}
	pass, err := envFile(o.composeDir+"/.env", "RM_NATS_CLIENT_PASSWORD")
	if err != nil {
		return 2, err
	}
	nc, err := nats.Connect("nats://127.0.0.1:"+natsPort, nats.UserInfo("client", pass),
		nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return 2, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 2, err
	}

	setup, err := a.setup(ctx, o.runSeconds)
	if err != nil {
		return 2, err
	}
	w := &watcher{}
	live, err := js.OrderedConsumer(ctx, "RM_EVENTS", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"rm.events.job.>"}})
	if err != nil {
		return 2, err
	}
	cc, err := live.Consume(w.handle)
	if err != nil {
		return 2, err
	}
	defer cc.Stop()

	// Submit, and meanwhile inject the faults one after the other.
	subs := &submitter{api: a, run: runID, app: setup.app, queues: setup.queues, n: o.submissions}
	if o.submitFor > 0 {
		subs.until = time.Now().Add(o.submitFor)
	}
	var wg sync.WaitGroup
	for range o.clients {
		wg.Add(1)
		go func() { defer wg.Done(); subs.client(ctx) }()
	}
	clientsDone := make(chan struct{})
	go func() { wg.Wait(); close(clientsDone) }()
	faults, missed := s.inject(ctx, js, w, subs, o)
	<-clientsDone
	log.Printf("submissions: %d accepted, %d refused, %d retries, in %v", len(subs.accepted), subs.refused.Load(), subs.retries.Load(),
		time.Since(start).Round(time.Second))
	if ctx.Err() != nil {
		return 2, ctx.Err()
	}

	// Wait for every accepted job to end, then for the outboxes to go quiet.
	// The live stream says when every accepted job has ended (listing
	// jobs by status scans the store, which would slow the run down);
	// then the store confirms it.
	w.waitFinal(ctx, subs.ids(), o.drain)
	if err := a.waitFinal(ctx, runID, time.Minute); err != nil {
		log.Print(err)
	}
	w.waitQuiet(ctx, 5*time.Second, time.Minute)
	cc.Stop()

	stored, err := a.jobs(ctx, runID)
	if err != nil {
		return 2, err
	}
	evs, err := readStream(ctx, js)
	if err != nil {
		return 2, err
	}
	log.Printf("read %d job events from the stream, %d jobs from the store", len(evs), len(stored))
	rep := check(subs.accepted, evs, stored, setup.limits, faults, keyLabel, o.maxRecovery)
	// A job whose last change was still being published when the store was
	// read: read it again and check once more.
	if again := a.reread(ctx, rep, stored); again > 0 {
		if evs, err = readStream(ctx, js); err != nil {
			return 2, err
		}
		rep = check(subs.accepted, evs, stored, setup.limits, faults, keyLabel, o.maxRecovery)
	}
	printReport(os.Stdout, o, rep, faults, start, len(subs.accepted))
	printSlowRecoveries(os.Stdout, s, rep, faults, o.maxRecovery)
	if len(missed) > 0 {
		// "Every invariant for every fault" does not hold for a fault
		// that did not happen as planned.
		fmt.Printf("\n%d faults did not happen as planned:\n", len(missed))
		for _, m := range missed {
			fmt.Println("- " + m)
		}
	}
	if len(rep.Findings) > 0 || len(missed) > 0 {
		return 1, nil
	}
	return 0, nil
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

func envFile(path, key string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("%s not in %s", key, path)
}

// ---- the compose stack ----

type stack struct {
	project, dir string
	env          []string
	logsRead     string // the services' logs, once read by logs
}

var services = []string{"mongo", "nats", "rm-api", "rm-scheduler-1", "rm-scheduler-2", "rm-launcher-1", "rm-launcher-2", "rm-scenario-export"}

func (s *stack) compose(args ...string) (string, error) {
	return composestack.Compose(s.project, s.dir, s.env, args...)
}

// logs returns the services' logs, read from compose the first time:
// the slow recoveries' digest and the saved file use the same read.
func (s *stack) logs() (string, error) {
	if s.logsRead == "" {
		out, err := s.compose("logs", "--no-color", "--timestamps")
		if err != nil {
			return "", err
		}
		s.logsRead = out
	}
	return s.logsRead, nil
}

var docker = composestack.Docker

func (s *stack) container(service string) string {
	id, _ := docker("ps", "-aq", "--filter", "label=com.docker.compose.project="+s.project, "--filter", "label=com.docker.compose.service="+service)
	if f := strings.Fields(id); len(f) > 0 {
		return f[0]
	}
	return ""
}

// healthy: every service running, and healthy where it has a healthcheck.
func (s *stack) healthy() bool {
	for _, svc := range services {
		id := s.container(svc)
		if id == "" {
			return false
		}
		st, _ := docker("inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}healthy{{end}}", id)
		if st != "running healthy" {
			return false
		}
	}
	return true
}

func (s *stack) waitHealthy(ctx context.Context, d time.Duration) error {
	end := time.Now().Add(d)
	for !s.healthy() {
		if time.Now().After(end) || ctx.Err() != nil {
			return fmt.Errorf("services not healthy within %v", d)
		}
		time.Sleep(500 * time.Millisecond)
	}
	return nil
}

// down removes the stack with its volumes and anything the launchers
// started, and checks that nothing of it is left.
func (s *stack) down() error {
	if ids, _ := docker("ps", "-aq", "--filter", "label=rm.managed=true", "--filter", "network="+s.project+"_workers"); ids != "" {
		_, _ = docker(append([]string{"rm", "-f", "-v"}, strings.Fields(ids)...)...)
	}
	// The Docker Engine may refuse to remove a network whose containers are
	// all gone, counting an endpoint that no longer exists ("network … has
	// active endpoints", moby/moby#42119; seen once, after the launcher's
	// disconnect and reconnect, and still there minutes later). Tried again
	// a moment later; if that is all that is left, it is the engine's, not
	// the stack's: reported, and the run's result stands.
	stale := false
	for try := 1; ; try++ {
		out, err := s.compose("down", "-v", "--remove-orphans", "-t", "5")
		if err == nil {
			break
		}
		if !strings.Contains(out, "active endpoints") {
			return fmt.Errorf("compose down: %v\n%s", err, out)
		}
		if try == 3 {
			stale = true
			break
		}
		time.Sleep(2 * time.Second)
	}
	var left []string
	for _, kind := range []string{"ps -aq", "network ls -q", "volume ls -q"} {
		args := append(strings.Fields(kind), "--filter", "label=com.docker.compose.project="+s.project)
		if out, _ := docker(args...); out != "" {
			left = append(left, kind+": "+out)
		}
	}
	if stale && len(left) == 1 && strings.HasPrefix(left[0], "network") {
		log.Printf("WARNING: the Docker Engine keeps the stack's network (%s) for an endpoint it no longer has "+
			"(moby/moby#42119); restarting the engine removes it. Containers and volumes are gone.", left[0])
		return nil
	}
	if len(left) > 0 {
		return fmt.Errorf("left after compose down: %v", left)
	}
	log.Printf("stack %s removed", s.project)
	return nil
}

var leader = composestack.Leader

func other(of string, pair ...string) string {
	if pair[0] == of {
		return pair[1]
	}
	return pair[0]
}

// inject runs the faults one after the other once the run is under way:
// each waits for the stack to be healthy again and for an admission after
// it (at most a minute) and then 5 s more, so that every fault meets a
// system that has recovered from the one before. missed says which of the
// chosen faults could not be injected as planned, and why.
func (s *stack) inject(ctx context.Context, js jetstream.JetStream, w *watcher, subs *submitter, o options) (faults []fault, missed []string) {
	warm := min(300, o.submissions/20)
	for w.admitted() < warm && ctx.Err() == nil {
		time.Sleep(200 * time.Millisecond)
	}
	steps := s.faultSteps(ctx, js, o)
	chosen := o.chosen()
	// Fault k waits until k+1 of len(steps)+1 parts of the submissions (or
	// of -submit-for) are behind, so that the faults are spread over the run.
	begin := time.Now()
	for k, st := range steps {
		part := func(total int) int { return (k + 1) * total / (len(steps) + 1) }
		for subs.count() < part(o.submissions) && ctx.Err() == nil &&
			(o.submitFor == 0 || time.Since(begin) < time.Duration(part(int(o.submitFor)))) {
			time.Sleep(200 * time.Millisecond)
		}
		if ctx.Err() != nil {
			break
		}
		if chosen != nil && !slices.Contains(chosen, st.short) {
			continue
		}
		// A leader is read from NATS: a read that fails for a moment is
		// tried again before the fault counts as not injected.
		svc := st.target()
		for end := time.Now().Add(10 * time.Second); svc == "" && time.Now().Before(end) && ctx.Err() == nil; svc = st.target() {
			time.Sleep(200 * time.Millisecond)
		}
		if svc == "" {
			log.Printf("%s: no such container (no leader for 10 s?); skipped", st.name)
			missed = append(missed, st.name+": no such container (no leader for 10 s?); skipped")
			continue
		}
		name := st.name + " (" + svc + ")"
		log.Printf("fault: %s; %d accepted, %d admitted so far", name, subs.count(), w.admitted())
		at, back, err := st.do(svc)
		if err != nil {
			log.Printf("%s: %v", name, err)
			missed = append(missed, fmt.Sprintf("%s: %v", name, err))
		}
		faults = append(faults, fault{Name: name, At: at, Back: back})
		if err := s.waitHealthy(ctx, 2*time.Minute); err != nil {
			log.Printf("after %s: %v", name, err)
		}
		end := time.Now().Add(time.Minute)
		for !w.admittedAfter(at) && time.Now().Before(end) && ctx.Err() == nil {
			time.Sleep(200 * time.Millisecond)
		}
		log.Printf("back: %s; healthy after %v", name, time.Since(at).Round(100*time.Millisecond))
		time.Sleep(5 * time.Second)
	}
	return faults, missed
}

// faultStep is one fault: its short name (faultNames), what the table
// calls it, whom it hits (read when its turn comes: a leader changes) and
// how. do returns when the fault took hold and when the service was back.
type faultStep struct {
	short, name string
	target      func() string
	do          func(svc string) (time.Time, time.Time, error)
}

// faultSteps are the faults in the order of faultNames.
func (s *stack) faultSteps(ctx context.Context, js jetstream.JetStream, o options) []faultStep {
	scheds := []string{"rm-scheduler-1", "rm-scheduler-2"}
	launchers := []string{"rm-launcher-1", "rm-launcher-2"}
	return []faultStep{
		{"api", "kill -9 API", fixed("rm-api"), s.kill},
		{"scheduler-leader", "kill -9 scheduler leader", func() string { return leader(ctx, js, "rm_scheduler", scheds...) }, s.kill},
		{"scheduler-standby", "kill -9 scheduler standby", func() string { return other(leader(ctx, js, "rm_scheduler", scheds...), scheds...) }, s.kill},
		{"launcher-leader", "kill -9 launcher leader", func() string { return leader(ctx, js, "rm_launcher", launchers...) }, s.kill},
		{"launcher-standby", "kill -9 launcher standby", func() string { return other(leader(ctx, js, "rm_launcher", launchers...), launchers...) }, s.kill},
		{"export", "kill -9 scenario-export", fixed("rm-scenario-export"), s.kill},
		{"nats", "restart NATS", fixed("nats"), s.restart},
		{"store", "restart store", fixed("mongo"), s.restart},
		{"disconnect", fmt.Sprintf("launcher leader off the network %v", o.disconnect), func() string { return leader(ctx, js, "rm_launcher", launchers...) },
			func(svc string) (time.Time, time.Time, error) { return s.disconnect(svc, o.disconnect) }},
	}
}

func fixed(svc string) func() string { return func() string { return svc } }

// kill sends SIGKILL to svc's container and starts it again. The fault's
// time is when docker kill returned, the process dead: a change the
// process stamped while the command was on its way (100 ms and more) is
// not a recovery. Until 2026-12-01 it was taken before the command, and a
// killed scheduler leader's last admissions counted as the first after the
// kill (0.0–0.1 s) while its successor took over 8–12 s later.
func (s *stack) kill(svc string) (time.Time, time.Time, error) {
	id := s.container(svc)
	out, err := docker("kill", "-s", "KILL", id)
	at := time.Now()
	if err != nil {
		return at, at, fmt.Errorf("kill: %v %s", err, out)
	}
	time.Sleep(time.Second)
	// The restart policy may have started it already; docker start is then a no-op.
	if out, err := docker("start", id); err != nil {
		return at, time.Now(), fmt.Errorf("start: %v %s", err, out)
	}
	return at, time.Now(), nil
}

// restart stops svc (SIGTERM, up to 10 s) and starts it again. The fault's
// time is when the old process ended (the container's FinishedAt), not the
// call: admissions in the second or so the service takes to stop would
// otherwise count as recovered.
func (s *stack) restart(svc string) (time.Time, time.Time, error) {
	at := time.Now()
	id := s.container(svc)
	out, err := docker("restart", "-t", "10", id)
	if err != nil {
		return at, time.Now(), fmt.Errorf("restart: %v %s", err, out)
	}
	back := time.Now()
	if out, err := docker("inspect", "-f", "{{.State.FinishedAt}}", id); err == nil {
		if stopped, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(out)); err == nil && stopped.After(at) && stopped.Before(back) {
			at = stopped
		}
	}
	return at, back, nil
}

// disconnect takes svc's container off the services' network for d.
func (s *stack) disconnect(svc string, d time.Duration) (time.Time, time.Time, error) {
	id, network := s.container(svc), s.project+"_rm"
	at := time.Now()
	if out, err := docker("network", "disconnect", "-f", network, id); err != nil {
		return at, at, fmt.Errorf("disconnect: %v %s", err, out)
	}
	time.Sleep(d)
	if out, err := docker("network", "connect", "--alias", svc, network, id); err != nil {
		return at, time.Now(), fmt.Errorf("connect: %v %s", err, out)
	}
	return at, time.Now(), nil
}

// ---- the live view of the stream (to pace the faults) ----

type watcher struct {
	mu        sync.Mutex
	nAdmitted int
	lastAdmit time.Time // commit time of the latest admission seen
	lastEvent time.Time // when the latest event arrived
	ended     map[string]bool
}

// waitFinal waits until every job of ids has had a final event, at most d.
func (w *watcher) waitFinal(ctx context.Context, ids []string, d time.Duration) {
	end := time.Now().Add(d)
	for time.Now().Before(end) && ctx.Err() == nil {
		w.mu.Lock()
		left := 0
		for _, id := range ids {
			if !w.ended[id] {
				left++
			}
		}
		w.mu.Unlock()
		if left == 0 {
			return
		}
		time.Sleep(time.Second)
	}
}

func (w *watcher) handle(m jetstream.Msg) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lastEvent = time.Now()
	switch m.Headers().Get("ce-type") {
	case "rm.job.succeeded", "rm.job.failed", "rm.job.cancelled":
		if w.ended == nil {
			w.ended = map[string]bool{}
		}
		w.ended[m.Headers().Get("ce-subject")] = true
	}
	if m.Headers().Get("ce-type") == "rm.job.admitted" {
		w.nAdmitted++
		if t, err := time.Parse(time.RFC3339Nano, m.Headers().Get("ce-time")); err == nil && t.After(w.lastAdmit) {
			w.lastAdmit = t
		}
	}
}

func (w *watcher) admitted() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nAdmitted
}

func (w *watcher) admittedAfter(t time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastAdmit.After(t)
}

// waitQuiet waits until no event arrived for quiet, at most max.
func (w *watcher) waitQuiet(ctx context.Context, quiet, max time.Duration) {
	end := time.Now().Add(max)
	for time.Now().Before(end) && ctx.Err() == nil {
		w.mu.Lock()
		last := w.lastEvent
		w.mu.Unlock()
		if time.Since(last) > quiet {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// readStream reads every job event from the stream's start, in stream order.
func readStream(ctx context.Context, js jetstream.JetStream) ([]event, error) {
	cons, err := js.OrderedConsumer(ctx, "RM_EVENTS", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"rm.events.job.>"}})
	if err != nil {
		return nil, err
	}
	var evs []event
	for {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, err
		}
		n, pending := 0, uint64(1)
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			pending = md.NumPending
			h := m.Headers()
			e := event{Seq: md.Sequence.Stream, ID: h.Get("ce-id"), Type: h.Get("ce-type")}
			if e.Time, err = time.Parse(time.RFC3339Nano, h.Get("ce-time")); err != nil {
				return nil, fmt.Errorf("event seq %d: ce-time: %w", e.Seq, err)
			}
			if err := json.Unmarshal(m.Data(), &e.Job); err != nil {
				return nil, fmt.Errorf("event seq %d: %w", e.Seq, err)
			}
			evs = append(evs, e)
		}
		if batch.Error() != nil && !errors.Is(batch.Error(), nats.ErrTimeout) {
			return nil, batch.Error()
		}
		if n == 0 || pending == 0 {
			return evs, nil
		}
	}
}

// ---- the API ----

type api struct {
	base string
	http *http.Client
}

type problem struct {
	status int
	body   string
}

func (p *problem) Error() string { return fmt.Sprintf("%d %s", p.status, p.body) }

func (a *api) do(ctx context.Context, method, path string, hdr map[string]string, body, out any) error {
	var r io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("content-type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return &problem{resp.StatusCode, strings.TrimSpace(string(raw))}
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

type setup struct {
	app    string
	queues []queueSpec
	limits map[string]int // by queue id
}

type queueSpec struct {
	id    string
	limit int
}

// setup registers the simulated plugin as the default (so that controllers
// run simulated too), an application and two queues with limits.
func (a *api) setup(ctx context.Context, runSeconds float64) (setup, error) {
	var plg, app struct {
		ID string `json:"id"`
	}
	if err := a.do(ctx, http.MethodPost, apiBase+"/plugins", nil, map[string]any{"name": "sim", "type": "simulated",
		"config": map[string]any{"run_seconds": runSeconds}, "is_default": true}, &plg); err != nil {
		return setup{}, fmt.Errorf("plugin: %w", err)
	}
	if err := a.do(ctx, http.MethodPost, apiBase+"/applications", nil, map[string]any{"name": "sim", "version": "1",
		"image": "avxrm/busybox:dev", "command": []string{"true"}}, &app); err != nil {
		return setup{}, fmt.Errorf("application: %w", err)
	}
	s := setup{app: app.ID, limits: map[string]int{}}
	for name, limit := range map[string]int{"fault-a": 30, "fault-b": 50} {
		var q struct {
			ID string `json:"id"`
		}
		if err := a.do(ctx, http.MethodPost, apiBase+"/queues", nil, map[string]any{"name": name, "plugin_id": plg.ID,
			"maximum_allowed_worker_instances": limit}, &q); err != nil {
			return setup{}, fmt.Errorf("queue %s: %w", name, err)
		}
		s.queues = append(s.queues, queueSpec{q.ID, limit})
		s.limits[q.ID] = limit
	}
	return s, nil
}

type listed struct {
	Items      []jobView `json:"items"`
	NextCursor string    `json:"next_cursor"`
}

// jobs reads the run's jobs from the store, through the API.
func (a *api) jobs(ctx context.Context, run string) (map[string]jobView, error) {
	out := map[string]jobView{}
	cursor := ""
	for {
		q := url.Values{"label": {runLabel + "=" + run}, "limit": {"1000"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page listed
		if err := a.do(ctx, http.MethodGet, apiBase+"/jobs?"+q.Encode(), nil, nil, &page); err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		for _, j := range page.Items {
			out[j.ID] = j
		}
		if cursor = page.NextCursor; cursor == "" {
			return out, nil
		}
	}
}

// waitFinal waits until no job of the run is in a non-final status.
func (a *api) waitFinal(ctx context.Context, run string, d time.Duration) error {
	end := time.Now().Add(d)
	for {
		left := 0
		for _, st := range []string{"submitted", "pending", "admitted", "running"} {
			q := url.Values{"label": {runLabel + "=" + run}, "status": {st}, "limit": {"1"}}
			var page listed
			if err := a.do(ctx, http.MethodGet, apiBase+"/jobs?"+q.Encode(), nil, nil, &page); err != nil {
				left++
				continue
			}
			left += len(page.Items)
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(end) || ctx.Err() != nil {
			return fmt.Errorf("jobs still not final after %v", d)
		}
		time.Sleep(2 * time.Second)
	}
}

// reread reads again the jobs an events finding names, in case their last
// change was published after the store was read; it returns how many
// changed.
func (a *api) reread(ctx context.Context, rep report, stored map[string]jobView) int {
	n := 0
	for _, f := range rep.Findings {
		if f.Invariant != invEvents || f.Job == "" {
			continue
		}
		var j jobView
		if err := a.do(ctx, http.MethodGet, apiBase+"/jobs/"+f.Job, nil, nil, &j); err == nil && j.Version != stored[f.Job].Version {
			stored[f.Job] = j
			n++
		}
	}
	return n
}

// ---- the clients ----

type submitter struct {
	api    *api
	run    string
	app    string
	queues []queueSpec
	n      int

	until    time.Time // zero: no time limit
	next     atomic.Int64
	retries  atomic.Int64
	refused  atomic.Int64
	mu       sync.Mutex
	accepted []submission
}

func (s *submitter) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.accepted))
	for i, a := range s.accepted {
		out[i] = a.JobID
	}
	return out
}

func (s *submitter) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.accepted)
}

// client submits jobs until n have been taken. Each submission has its own
// Idempotency-Key and is retried with it, the same body, until it gets an
// answer that is not a transport error, 5xx, 409 (the key's first request
// is in progress) or 429; only a 2xx counts as accepted.
func (s *submitter) client(ctx context.Context) {
	for ctx.Err() == nil {
		i := int(s.next.Add(1)) - 1
		if i >= s.n || !s.until.IsZero() && time.Now().After(s.until) {
			return
		}
		q := s.queues[i%len(s.queues)]
		key := s.run + "-" + strconv.Itoa(i)
		body := map[string]any{"queue_id": q.id, "worker_instances": 1 + (i*7)%min(5, q.limit),
			"application": map[string]any{"id": s.app}, "labels": map[string]string{runLabel: s.run, keyLabel: key}}
		backoff := 100 * time.Millisecond
		deadline := time.Now().Add(5 * time.Minute)
		for ctx.Err() == nil {
			var j struct {
				ID string `json:"id"`
			}
			err := s.api.do(ctx, http.MethodPost, apiBase+"/jobs", map[string]string{"Idempotency-Key": key}, body, &j)
			var p *problem
			if err == nil {
				s.mu.Lock()
				s.accepted = append(s.accepted, submission{Key: key, JobID: j.ID, At: time.Now()})
				s.mu.Unlock()
				break
			}
			if errors.As(err, &p) && p.status < 500 && p.status != http.StatusConflict && p.status != http.StatusTooManyRequests {
				s.refused.Add(1)
				log.Printf("submission %s refused: %v", key, err)
				break
			}
			if time.Now().After(deadline) {
				s.refused.Add(1)
				log.Printf("submission %s given up after 5 min: %v", key, err)
				break
			}
			s.retries.Add(1)
			time.Sleep(backoff)
			backoff = min(2*backoff, 2*time.Second)
		}
	}
}

// ---- the table ----

func printReport(w io.Writer, o options, rep report, faults []fault, start time.Time, accepted int) {
	fmt.Fprintf(w, "\nfault suite, %s: %d submissions planned from %d clients, %d accepted, simulated driver run_seconds %g, queues limited to 30 and 50 workers (jobs of 1–5); %v in all\n",
		start.UTC().Format("2006-01-02 15:04 MST"), o.submissions, o.clients, accepted, o.runSeconds, time.Since(start).Round(time.Second))
	fmt.Fprintf(w, "jobs in the store: %d %v; job events: %d distinct, %d delivered twice\n", rep.Jobs, rep.Statuses, rep.Events, rep.Duplicates)
	for _, reason := range slices.Sorted(maps.Keys(rep.Failed)) {
		f := rep.Failed[reason]
		fmt.Fprintf(w, "failed %s: %d jobs, e.g. %s\n", cmp.Or(reason, "(no reason)"), f.Jobs, f.Example)
	}
	fmt.Fprintln(w)
	per := make([]map[string]int, len(faults)+1) // index 0: before the first fault
	for i := range per {
		per[i] = map[string]int{}
	}
	for _, f := range rep.Findings {
		per[blame(faults, f.At)+1][f.Invariant]++
	}
	fmt.Fprint(w, "| fault | at | first admission after | first start after |")
	for _, inv := range invariants {
		fmt.Fprintf(w, " %s |", inv)
	}
	fmt.Fprint(w, "\n|---|---|---|---|")
	for range invariants {
		fmt.Fprint(w, "---|")
	}
	fmt.Fprintln(w)
	cell := func(m map[string]int, inv string) string {
		if m[inv] == 0 {
			return "ok"
		}
		return fmt.Sprintf("**FAIL (%d)**", m[inv])
	}
	fmt.Fprint(w, "| (before the first fault) | | | |")
	for _, inv := range invariants {
		if inv == invRecovery {
			fmt.Fprint(w, " |")
			continue
		}
		fmt.Fprintf(w, " %s |", cell(per[0], inv))
	}
	fmt.Fprintln(w)
	dur := func(d time.Duration) string {
		if d == 0 {
			return "none"
		}
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	for i, f := range faults {
		fmt.Fprintf(w, "| %s | +%ds | %s | %s |", f.Name, int(f.At.Sub(start).Seconds()), dur(rep.Recovery[i].Admission), dur(rep.Recovery[i].Start))
		for _, inv := range invariants {
			fmt.Fprintf(w, " %s |", cell(per[i+1], inv))
		}
		fmt.Fprintln(w)
	}
	if len(rep.Findings) == 0 {
		fmt.Fprintln(w, "\nevery invariant held for every fault")
		return
	}
	fmt.Fprintf(w, "\n%d findings (at most 10 per invariant shown):\n", len(rep.Findings))
	shown := map[string]int{}
	for _, inv := range invariants {
		for _, f := range rep.Findings {
			if f.Invariant != inv {
				continue
			}
			if shown[inv]++; shown[inv] > 10 {
				continue
			}
			printFinding(w, f, faults)
		}
		if shown[inv] > 10 {
			fmt.Fprintf(w, "- %s: %d more\n", inv, shown[inv]-10)
		}
	}
}

// printSlowRecoveries writes, for each fault whose recovery took too long,
// a digest of what the services logged from the fault until the first
// admission: a run in CI keeps only its output.
func printSlowRecoveries(w io.Writer, s *stack, rep report, faults []fault, maxRecovery time.Duration) {
	var lines []logLine
	for i, f := range faults {
		took := rep.Recovery[i].Admission
		if took != 0 && took <= maxRecovery {
			continue
		}
		if lines == nil {
			out, err := s.logs()
			if err != nil {
				fmt.Fprintf(w, "services' logs: %v\n", err)
				return
			}
			lines = parseLogs(out)
		}
		if took == 0 {
			took = maxRecovery + 5*time.Second
		}
		fmt.Fprintf(w, "\nlogged from %s until its first admission (%s), by service and message:\n", f.Name, f.At.UTC().Format("15:04:05.0"))
		printDigest(w, lines, f.At.Add(-time.Second), f.At.Add(took), 16)
	}
}

func printFinding(w io.Writer, f finding, faults []fault) {
	at := "before the first fault"
	if n := blame(faults, f.At); n >= 0 {
		at = "after " + faults[n].Name
	}
	fmt.Fprintf(w, "- %s, %s, job %s: %s\n", f.Invariant, at, f.Job, f.Detail)
}
