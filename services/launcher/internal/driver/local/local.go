// Package local is a driver that runs instances as processes on the
// launcher's machine (Linux), for the zero-setup all-in-one.
//
// An instance runs its Command followed by its Args (no image: the command
// must exist on the machine) with only Spec.Env plus PATH and HOME (taken
// from the launcher unless Spec.Env sets them), in Spec.WorkingDir when it
// is an absolute existing directory, else in its own directory
// <work_dir>/<job>/<role>-<index>/work (work_dir defaults to
// <data dir>/local). Its stdout and stderr go to output.log next to it.
//
// Each instance is its own process group, led by a small /bin/sh wrapper
// that records its pid, runs the command in the foreground and writes the
// command's exit code to a file. The wrapper traps SIGTERM, SIGINT and
// SIGHUP (its child does not inherit the trap), so a group-wide SIGTERM
// reaches the command and the wrapper still records its status (128+signal).
// Because the code lands in a file and output goes to a file, not a pipe,
// instances outlive the launcher.
//
// Restart policy: nothing is killed when the launcher stops or Close is
// called. New re-adopts every instance directory it finds: an instance whose
// wrapper is still alive (pid from the instance directory, identity checked
// through /proc/<pid>/cmdline, which holds the instance directory) is
// Running and polled until it ends, then its exit file is read; one that
// ended meanwhile reports its recorded code; one that ended without a code
// (killed with SIGKILL) is Failed. When an instance's wrapper ends, the
// driver kills what is left of its process group, so no orphans survive.
//
// Stop sends SIGTERM to the group, then SIGKILL after the grace period.
// Cleanup stops the job's instances and removes their files except
// output.log.
//
// It imports only the driver contract.
package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/internal/hub"
)

var _ driver.Driver = (*Driver)(nil)

// Files of an instance directory.
const (
	specFile  = "spec.json"  // the instance exists (written before it starts)
	stateFile = "state.json" // pid and start time (written once started)
	pidFile   = "pid"        // written by the wrapper: covers a crash before state.json
	exitFile  = "exit"       // written by the wrapper when the command ends
	logFile   = "output.log" // kept by Cleanup
	workDir   = "work"       // default working directory
)

// wrapper is run as: /bin/sh -c wrapper sh <instance dir> <command> <args>...
// It writes the pid and exit files with the shell's own redirection, not
// through a temporary file and mv: that would start a process before the
// command starts and another after it ends, both on the way from one job's
// end to the next one's start. A reader that finds a file empty (created,
// not yet written, or the wrapper killed in between) treats it as absent,
// which is what it would have seen a moment earlier: the pid file is read
// only when state.json is missing, and the exit file only once the wrapper
// is gone.
const wrapper = `d=$1; shift
echo $$ > "$d/` + pidFile + `"
trap ':' TERM INT HUP
"$@"
rc=$?
echo "$rc" > "$d/` + exitFile + `"
exit "$rc"`

// Option customizes a Driver.
type Option func(*Driver)

// WithGracePeriod sets how long Stop waits after SIGTERM before SIGKILL
// (default 10s).
func WithGracePeriod(d time.Duration) Option { return func(dr *Driver) { dr.grace = d } }

// WithPollInterval sets how often re-adopted instances are checked
// (default 1s).
func WithPollInterval(d time.Duration) Option { return func(dr *Driver) { dr.poll = d } }

// Driver is the local driver.
type Driver struct {
	root  string
	log   *slog.Logger
	grace time.Duration
	poll  time.Duration

	// launching admits launch calls, at most one per CPU (launchSlots).
	launching chan struct{}

	mu     sync.Mutex // guards insts and closed, orders hub publications
	insts  map[driver.Ref]*instance
	hub    hub.Hub
	closed bool

	quit     chan struct{} // closed by Close: stops pollLoop
	pollDone chan struct{}
}

type instance struct {
	ref driver.Ref
	dir string
	// started is closed once the start attempt is over; pid is set then.
	started chan struct{}
	// done is closed once the wrapper has ended and st is final.
	done    chan struct{}
	pid     int // pid of the wrapper, which is also the process group id
	adopted bool
	stopped bool // Stop was called: report "stopped"
	st      driver.Status
}

type specRecord struct {
	JobID     string    `json:"job_id"`
	Role      string    `json:"role"`
	Index     int       `json:"index"`
	Name      string    `json:"name"`
	Queue     string    `json:"queue"`
	CreatedAt time.Time `json:"created_at"`
}

type stateRecord struct {
	PID       int       `json:"pid"`
	PGID      int       `json:"pgid"`
	StartedAt time.Time `json:"started_at"`
}

// New is the driver.Factory of the local driver.
func New(config json.RawMessage, opts driver.Options) (driver.Driver, error) {
	cfg, err := driver.ParseLocalConfig(config)
	if err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	return NewDriver(cfg, opts)
}

// NewDriver builds a driver from a parsed config and re-adopts the
// instances found under its directory.
func NewDriver(cfg driver.LocalConfig, opts driver.Options, options ...Option) (*Driver, error) {
	root := cfg.WorkDir
	if root == "" {
		if opts.DataDir == "" {
			return nil, fmt.Errorf("local: %w", &driver.FieldError{Field: "work_dir", Message: "required when the launcher has no data directory"})
		}
		root = filepath.Join(opts.DataDir, "local")
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("local: work dir: %w", err)
	}
	if err := os.MkdirAll(root, 0o750); err != nil {
		return nil, fmt.Errorf("local: create work dir: %w", err)
	}
	d := &Driver{
		root:      root,
		log:       opts.Log().With("driver", "local"),
		grace:     10 * time.Second,
		poll:      time.Second,
		insts:     make(map[driver.Ref]*instance),
		launching: make(chan struct{}, launchSlots()),
		quit:      make(chan struct{}),
		pollDone:  make(chan struct{}),
	}
	for _, o := range options {
		o(d)
	}
	dirs, err := filepath.Glob(filepath.Join(root, "*", "*", specFile))
	if err != nil {
		return nil, fmt.Errorf("local: scan %s: %w", root, err)
	}
	for _, f := range dirs {
		if _, err := d.adopt(filepath.Dir(f)); err != nil {
			d.log.Warn("cannot re-adopt instance", "dir", filepath.Dir(f), "err", err)
		}
	}
	go d.pollLoop()
	return d, nil
}

var plainSegment = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// instanceDir is <root>/<job>/<role>-<index>. Job ids that are not plain
// file names are replaced by the (unique) name of their ref's job part.
func (d *Driver) instanceDir(r driver.Ref) string {
	job := r.JobID
	if !plainSegment.MatchString(job) {
		job = strings.TrimSuffix(driver.Ref{JobID: r.JobID, Role: "x"}.Name(), "-x-0")
	}
	role := driver.SanitizeName(string(r.Role), 40)
	if role == "" {
		role = "instance"
	}
	return filepath.Join(d.root, job, role+"-"+strconv.Itoa(r.Index))
}

// UnorderedStarts: a local instance needs no other one to exist first
// (driver.Unordered).
func (d *Driver) UnorderedStarts() {}

var _ driver.Unordered = (*Driver)(nil)

// Start runs the instance's command; an instance that exists is left alone.
func (d *Driver) Start(ctx context.Context, s driver.Spec) error {
	argv := append(append([]string(nil), s.Command...), s.Args...)
	if len(argv) == 0 {
		return fmt.Errorf("local: start %s: %w: no command", s.Ref, driver.ErrInvalidSpec)
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return fmt.Errorf("local: start %s: driver closed", s.Ref)
	}
	if _, ok := d.insts[s.Ref]; ok {
		d.mu.Unlock()
		return nil
	}
	inst := &instance{
		ref:     s.Ref,
		dir:     d.instanceDir(s.Ref),
		started: make(chan struct{}),
		done:    make(chan struct{}),
		st:      driver.Status{Ref: s.Ref, State: driver.Pending},
	}
	d.insts[s.Ref] = inst
	d.mu.Unlock()

	cmd, err := d.launch(ctx, inst, s, argv)
	if err != nil {
		d.mu.Lock()
		delete(d.insts, s.Ref)
		d.mu.Unlock()
		close(inst.started)
		os.Remove(filepath.Join(inst.dir, specFile))
		return fmt.Errorf("local: start %s: %w", s.Ref, err)
	}
	d.mu.Lock()
	inst.pid = cmd.Process.Pid
	inst.st.State = driver.Running
	inst.st.StartedAt = time.Now()
	d.hub.Publish(inst.st)
	d.mu.Unlock()
	close(inst.started)

	// Written in place, not through a temporary file: a torn state.json
	// (the launcher killed mid-write) reads as absent, and the wrapper's pid
	// file stands in for it, as it does before this write.
	if err := writeFile(filepath.Join(inst.dir, stateFile), stateRecord{PID: inst.pid, PGID: inst.pid, StartedAt: inst.st.StartedAt}); err != nil {
		// The wrapper's pid file still lets a new driver find it.
		d.log.Warn("cannot record instance state", "ref", s.Ref.String(), "err", err)
	}
	go d.wait(inst, cmd)
	return nil
}

// launchSlots is how many launch calls run at once. The launcher starts a
// job's instances 16 at a time, which suits runtimes behind an API; here
// every one ends in a fork and exec, which Go serializes
// (syscall.ForkLock), after file operations in the same job directory,
// which the kernel serializes on it. More launches at once than CPUs only
// made each one wait for the others. BenchmarkStartGang on 2 CPUs, five
// runs of each alternating: the first instance of a 21-instance job
// started after 3.3–5.9 ms with 16 at once, 2.4–3.0 ms with 2; the last
// after 52–59 ms, 48–53 ms; the launcher's CPU 34–48 ms, 28–36 ms.
func launchSlots() int { return max(2, runtime.GOMAXPROCS(0)) }

// launch waits for a launch slot, prepares the instance directory and
// starts the wrapper. Every file operation here lies between the job's
// admission and its processes' start, for each instance of the job, so it
// makes no more than it needs.
func (d *Driver) launch(ctx context.Context, inst *instance, s driver.Spec, argv []string) (*exec.Cmd, error) {
	select {
	case d.launching <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-d.launching }()
	fresh, err := makeDir(inst.dir)
	if err != nil {
		return nil, fmt.Errorf("create instance dir: %w", err)
	}
	// Files of an earlier run of the same ref (after a Cleanup) must not
	// be mistaken for this one's; a directory just made holds none.
	stale := []string{exitFile, pidFile, stateFile}
	if fresh {
		stale = nil
	}
	for _, f := range stale {
		if err := os.Remove(filepath.Join(inst.dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("remove stale %s: %w", f, err)
		}
	}
	rec := specRecord{JobID: s.JobID, Role: string(s.Role), Index: s.Index, Name: s.Name, Queue: s.Queue, CreatedAt: time.Now()}
	if err := writeJSON(filepath.Join(inst.dir, specFile), rec); err != nil {
		return nil, fmt.Errorf("record spec: %w", err)
	}
	wd := s.WorkingDir
	if fi, err := os.Stat(wd); wd == "" || !filepath.IsAbs(wd) || err != nil || !fi.IsDir() {
		wd = filepath.Join(inst.dir, workDir)
		if err := os.Mkdir(wd, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("create working dir: %w", err)
		}
	}
	out, err := os.OpenFile(filepath.Join(inst.dir, logFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	defer out.Close() // the child has its own descriptor

	cmd := exec.Command("/bin/sh", append([]string{"-c", wrapper, "sh", inst.dir}, argv...)...)
	cmd.Dir = wd
	cmd.Env = environ(s.Env)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run wrapper: %w", err)
	}
	return cmd, nil
}

// environ is env plus PATH and HOME from the launcher when env lacks them.
func environ(env map[string]string) []string {
	out := make([]string, 0, len(env)+2)
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	for _, k := range []string{"PATH", "HOME"} {
		if _, ok := env[k]; ok {
			continue
		}
		v := os.Getenv(k)
		if v == "" && k == "PATH" {
			v = "/usr/local/bin:/usr/bin:/bin"
		}
		if v != "" {
			out = append(out, k+"="+v)
		}
	}
	sort.Strings(out)
	return out
}

// wait reaps the wrapper this driver started and records how it ended.
func (d *Driver) wait(inst *instance, cmd *exec.Cmd) {
	waitErr := cmd.Wait()
	var fallback *int
	msg := ""
	if ps := cmd.ProcessState; ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code := 128 + int(ws.Signal())
			fallback = &code
			msg = "killed by signal " + ws.Signal().String()
		} else if ps.Exited() {
			code := ps.ExitCode()
			fallback = &code
		}
	} else if waitErr != nil {
		msg = waitErr.Error()
	}
	d.ended(inst, fallback, msg)
}

// ended finalizes inst after its wrapper is gone: the exit file wins over
// what the caller could observe.
func (d *Driver) ended(inst *instance, fallback *int, msg string) {
	killGroup(inst.pid, syscall.SIGKILL) // leftovers of the command
	// The end is timed by the clock that timed the start (this process's),
	// not by the exit file's modification time: the kernel stamps files
	// from a coarse clock, up to a few milliseconds behind, so a command
	// that ends at once would finish before it started.
	finished := time.Now()
	code, _, ok := readExit(inst.dir)
	if !ok {
		code = fallback
		if code == nil && msg == "" {
			msg = "ended without recording an exit code"
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	finished = notBefore(finished, inst.st.StartedAt)
	if inst.stopped {
		msg = "stopped"
	}
	inst.st.State = driver.Succeeded
	if code == nil || *code != 0 {
		inst.st.State = driver.Failed
	}
	inst.st.ExitCode = code
	inst.st.Message = msg
	inst.st.FinishedAt = finished
	if !d.closed {
		d.hub.Publish(inst.st)
	}
	close(inst.done)
}

// notBefore returns t, or start if t is before it: an instance's
// timestamps are ordered whatever clocks they came from.
func notBefore(t, start time.Time) time.Time {
	if t.Before(start) {
		return start
	}
	return t
}

// readExit reads the exit file; ok is false when there is none.
func readExit(dir string) (code *int, at time.Time, ok bool) {
	f := filepath.Join(dir, exitFile)
	b, err := os.ReadFile(f)
	if err != nil {
		return nil, time.Time{}, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, time.Time{}, false
	}
	at = time.Now()
	if fi, err := os.Stat(f); err == nil {
		at = fi.ModTime()
	}
	return &n, at, true
}

// adopt loads an instance directory left by an earlier driver (or a
// failed start) unless its ref is known already.
func (d *Driver) adopt(dir string) (*instance, error) {
	var rec specRecord
	if err := readJSON(filepath.Join(dir, specFile), &rec); err != nil {
		return nil, err
	}
	ref := driver.Ref{JobID: rec.JobID, Role: driver.Role(rec.Role), Index: rec.Index}
	d.mu.Lock()
	defer d.mu.Unlock()
	if inst, ok := d.insts[ref]; ok {
		return inst, nil
	}
	inst := &instance{ref: ref, dir: dir, started: make(chan struct{}), done: make(chan struct{}), adopted: true}
	close(inst.started)
	inst.st = driver.Status{Ref: ref, State: driver.Running}
	var state stateRecord
	if err := readJSON(filepath.Join(dir, stateFile), &state); err == nil {
		inst.pid = state.PID
		inst.st.StartedAt = state.StartedAt
	} else if b, err := os.ReadFile(filepath.Join(dir, pidFile)); err == nil {
		inst.pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		if fi, err := os.Stat(filepath.Join(dir, pidFile)); err == nil {
			inst.st.StartedAt = fi.ModTime()
		}
	}
	if inst.pid <= 0 || !alive(inst.pid, dir) {
		code, at, ok := readExit(dir)
		inst.st.State = driver.Failed
		inst.st.FinishedAt = at
		switch {
		case ok:
			inst.st.ExitCode = code
			if *code == 0 {
				inst.st.State = driver.Succeeded
			}
		case inst.pid <= 0:
			inst.st.Message = "never started"
		default:
			inst.st.Message = "ended without recording an exit code while the launcher was away"
		}
		if inst.st.FinishedAt.IsZero() {
			inst.st.FinishedAt = time.Now()
		}
		// Ended while the launcher was away: the exit file's time is all
		// there is, and its coarse clock may read before the recorded start.
		inst.st.FinishedAt = notBefore(inst.st.FinishedAt, inst.st.StartedAt)
		if inst.pid > 0 {
			killGroup(inst.pid, syscall.SIGKILL)
		}
		close(inst.done)
	}
	d.insts[ref] = inst
	d.hub.Publish(inst.st)
	return inst, nil
}

// alive reports whether pid is a live (not zombie) process running the
// wrapper of the instance in dir, which guards against pid reuse.
func alive(pid int, dir string) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and may
	// itself contain them.
	if i := strings.LastIndexByte(string(stat), ')'); i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' || stat[i+2] == 'X' {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	for _, arg := range strings.Split(string(cmdline), "\x00") {
		if arg == dir {
			return true
		}
	}
	return false
}

// pollLoop watches re-adopted instances, which this process cannot wait for.
func (d *Driver) pollLoop() {
	defer close(d.pollDone)
	t := time.NewTicker(d.poll)
	defer t.Stop()
	for {
		select {
		case <-d.quit:
			return
		case <-t.C:
		}
		d.mu.Lock()
		var watched []*instance
		for _, inst := range d.insts {
			if inst.adopted && !inst.st.State.Final() {
				watched = append(watched, inst)
			}
		}
		d.mu.Unlock()
		for _, inst := range watched {
			if !alive(inst.pid, inst.dir) {
				select {
				case <-inst.done:
				default:
					d.ended(inst, nil, "")
				}
			}
		}
	}
}

// killGroup signals the process group led by pgid; a group that is gone is
// not an error.
func killGroup(pgid int, sig syscall.Signal) error {
	if pgid <= 1 {
		return nil
	}
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// Stop sends SIGTERM to the instance's process group, then SIGKILL after the
// grace period, and returns once the instance has ended or ctx ends.
func (d *Driver) Stop(ctx context.Context, r driver.Ref) error {
	d.mu.Lock()
	inst, ok := d.insts[r]
	d.mu.Unlock()
	if !ok {
		return nil
	}
	if err := d.stop(ctx, inst); err != nil {
		return fmt.Errorf("local: stop %s: %w", r, err)
	}
	return nil
}

func (d *Driver) stop(ctx context.Context, inst *instance) error {
	select {
	case <-inst.started:
	case <-ctx.Done():
		return ctx.Err()
	}
	d.mu.Lock()
	if inst.st.State.Final() || inst.pid <= 0 {
		d.mu.Unlock()
		return nil
	}
	inst.stopped = true
	d.mu.Unlock()
	if err := killGroup(inst.pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("terminate process group %d: %w", inst.pid, err)
	}
	grace := time.NewTimer(d.grace)
	defer grace.Stop()
	select {
	case <-inst.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-grace.C:
	}
	if err := killGroup(inst.pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill process group %d: %w", inst.pid, err)
	}
	select {
	case <-inst.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Cleanup stops the job's instances and removes their files except logs.
func (d *Driver) Cleanup(ctx context.Context, jobID string) error {
	jobDir := filepath.Dir(d.instanceDir(driver.Ref{JobID: jobID}))
	// Directories this driver does not know (a start that crashed halfway)
	// are adopted first so that their processes are stopped too.
	specs, _ := filepath.Glob(filepath.Join(jobDir, "*", specFile))
	for _, f := range specs {
		if _, err := d.adopt(filepath.Dir(f)); err != nil {
			d.log.Warn("cleanup: cannot adopt instance", "dir", filepath.Dir(f), "err", err)
		}
	}
	d.mu.Lock()
	var insts []*instance
	for ref, inst := range d.insts {
		if ref.JobID == jobID {
			insts = append(insts, inst)
		}
	}
	d.mu.Unlock()

	errs := make([]error, len(insts))
	var wg sync.WaitGroup
	for i, inst := range insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = d.stop(ctx, inst)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("local: cleanup %s: %w", jobID, err)
	}
	d.mu.Lock()
	for _, inst := range insts {
		if d.insts[inst.ref] == inst {
			delete(d.insts, inst.ref)
		}
	}
	d.mu.Unlock()

	entries, err := os.ReadDir(jobDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("local: cleanup %s: %w", jobID, err)
	}
	for _, e := range entries {
		if err := removeAllBut(filepath.Join(jobDir, e.Name()), logFile); err != nil {
			return fmt.Errorf("local: cleanup %s: %w", jobID, err)
		}
	}
	return nil
}

// removeAllBut removes everything in dir except the file named keep, and
// dir itself when nothing is kept.
func removeAllBut(dir, keep string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return os.RemoveAll(dir)
	}
	kept := false
	for _, e := range entries {
		if e.Name() == keep && e.Type().IsRegular() {
			kept = true
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	if !kept {
		return os.Remove(dir)
	}
	return nil
}

// List returns every instance not cleaned up.
func (d *Driver) List(context.Context) ([]driver.Status, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.snapshotLocked(), nil
}

func (d *Driver) snapshotLocked() []driver.Status {
	out := make([]driver.Status, 0, len(d.insts))
	for _, inst := range d.insts {
		out = append(out, inst.st)
	}
	return out
}

// Watch reports the current instances, then every change.
func (d *Driver) Watch(ctx context.Context) (<-chan driver.Status, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hub.Subscribe(ctx, d.snapshotLocked()), nil
}

// Logs opens the instance's output.log, which survives Cleanup.
func (d *Driver) Logs(_ context.Context, r driver.Ref) (io.ReadCloser, error) {
	f, err := os.Open(filepath.Join(d.instanceDir(r), logFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("local: logs of %s: %w", r, driver.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("local: logs of %s: %w", r, err)
	}
	return f, nil
}

// Close stops watching; running instances are left running for the next
// driver to re-adopt.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.hub.Close()
	close(d.quit)
	d.mu.Unlock()
	<-d.pollDone
	// Wait goroutines of still-running children are not waited for: they
	// end with their child and only reap it.
	return nil
}

// makeDir makes dir (and its parents) and reports whether it made dir
// itself, that is, whether dir was not there before.
func makeDir(dir string) (fresh bool, err error) {
	err = os.Mkdir(dir, 0o750)
	if errors.Is(err, fs.ErrNotExist) { // the job's directory, for its first instance
		if err = os.MkdirAll(filepath.Dir(dir), 0o750); err == nil {
			err = os.Mkdir(dir, 0o750)
		}
	}
	if errors.Is(err, fs.ErrExist) {
		if fi, serr := os.Stat(dir); serr == nil && fi.IsDir() {
			return false, nil
		}
	}
	return err == nil, err
}

// writeFile writes v as JSON to path in place.
func writeFile(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o640)
}

// writeJSON writes v as JSON to path through a temporary file, so that a
// reader never sees it torn.
func writeJSON(path string, v any) error {
	tmp := path + ".tmp"
	if err := writeFile(tmp, v); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// Root is the directory holding the instance directories.
func (d *Driver) Root() string { return d.root }
