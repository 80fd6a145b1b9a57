// Package local is a driver that runs instances as processes on the
// launcher's machine (Linux), for the zero-setup all-in-one.
//
// An instance runs its Command followed by its Args (no image: the command
// must exist on the machine) with only Spec.Env plus PATH and HOME (taken
// from the launcher unless Spec.Env sets them) and InstanceVar, in Spec.WorkingDir when it
// is an absolute existing directory, else in its own directory
// <work_dir>/<job>/<role>-<index>/work (work_dir defaults to
// <data dir>/local). Its stdout and stderr go to output.log next to it.
//
// Each instance is its own process group, led by a small /bin/sh wrapper
// that records its pid, runs the command in the foreground and records the
// command's exit code, both in the instance's record, a file. The wrapper
// traps SIGTERM, SIGINT and SIGHUP (its child does not inherit the trap), so
// a group-wide SIGTERM reaches the command and the wrapper still records its
// status (128+signal), after a line saying a signal came: a command that
// failed on its own while its job's others were being stopped is told from
// one the stop ended (driver.ReasonExited). Because the code lands in a file and output goes to a
// file, not a pipe, instances outlive the launcher.
//
// An instance directory holds the record (recordFile), the log and the
// default working directory, nothing else: each file is an inode allocated
// on the way from the job's admission to its processes' start and freed by
// Cleanup. On a file system without a journal, ext4 steps over the inodes
// freed in the last minute (five while their inode table block is unwritten)
// at every allocation, so each inode an instance makes costs more the more
// were freed shortly before, by Cleanup or by anything else on the file
// system (docs/benchmarks.md). So the driver also keeps instance directories
// made ahead of need, between jobs' starts (WithSpareDirs), and a start
// renames one into place.
//
// Restart policy: nothing is killed when the launcher stops or Close is
// called. New re-adopts every instance directory it finds: an instance whose
// wrapper is still alive (pid from the record, identity checked through
// /proc/<pid>/cmdline, which holds the instance directory) is Running and
// polled until it ends, then its exit code is read from the record; one that
// ended meanwhile reports its recorded code; one that ended without a code
// (killed with SIGKILL) is Failed. Directories a driver made before the
// record (spec.json, state.json, pid and exit files) are re-adopted too.
// When an instance's wrapper ends, the driver kills what is left of its
// process group and the processes that left the group (setsid, a daemon),
// so no orphans survive; Stop sends them SIGTERM with the group. Where it
// may, the driver starts each instance in a cgroup of its own (cgroupTree),
// which holds all of them; elsewhere it finds those that carry the
// instance's InstanceVar in their environment (within about a second, in a
// pass over /proc shared by the instances that ended meanwhile: strayLoop),
// and one started with an environment of its own escapes.
//
// Stop sends SIGTERM to the group, then SIGKILL after the grace period.
// Cleanup stops the job's instances and removes their files except
// output.log.
//
// It imports only the driver contract.
package local

import (
	"bytes"
	"cmp"
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
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/internal/gate"
	"github.com/avxrm/rm/services/launcher/internal/driver/internal/hub"
)

var _ driver.Driver = (*Driver)(nil)

// Files of an instance directory.
const (
	recordFile = "record"     // the instance's facts, one line each (below)
	logFile    = "output.log" // kept by Cleanup
	workDir    = "work"       // default working directory
)

// The record's lines, each appended with one write, in this order:
//
//	spec <JSON specRecord>   the driver, when it makes the instance
//	pid <pid>                the wrapper, when it starts
//	state <JSON stateRecord> the driver, once the wrapper has started
//	cannot find|execute      the wrapper, when the command could not be run
//	signal                   the wrapper, when a stop signal reached it
//	exit <code>              the wrapper, when the command has ended
//
// A signal line before the exit line says the command ended after a stop
// signal came (or just before: the trap runs once the command has ended);
// with none, the command ended on its own, whatever the driver did, if the
// spec says its wrapper writes signal lines (specRecord.Signals).
//
// A line cut short (its writer killed) has no newline and reads as absent,
// which is what a reader would have seen a moment earlier: the pid line is
// read only when the state line is missing, and the exit line only once the
// wrapper is gone. A reader ignores a line it does not know, so a driver of
// an earlier version re-adopts a record with a cannot line.
const (
	specLine   = "spec"
	pidLine    = "pid"
	stateLine  = "state"
	cannotLine = "cannot"
	signalLine = "signal"
	exitLine   = "exit"
)

// What a cannot line says: the shell found no command of the spec's name
// (exit code 127), or found one it could not execute (126).
const (
	cannotFind    = "find"
	cannotExecute = "execute"
)

// InstanceVar is set in every instance's environment to its directory. It
// is how the driver finds the processes of an instance that left its
// process group (setsid, a daemon): they inherit it (killStrays).
const InstanceVar = "RM_LOCAL_INSTANCE"

// Files of an instance directory made by a driver before the record
// (re-adopted; see readLegacy).
const (
	legacySpecFile  = "spec.json"
	legacyStateFile = "state.json"
	legacyPIDFile   = "pid"
	legacyExitFile  = "exit"
)

// wrapper is run as: /bin/sh -c wrapper sh <instance dir> <command> <args>...
// It appends its lines to the record with the shell's own redirection, so
// that no process starts before the command or after it ends, both on the
// way from one job's end to the next one's start.
//
// The shell exits 127 when it finds no command to run and 126 when it finds
// one it cannot execute, and says why only on the instance's stderr, in the
// log. A command may exit with those codes too, so after either code, and
// only then, the wrapper asks the shell's builtins (no process) whether the
// command was there to run, and records a cannot line when it was not:
// command -v finds no executable file of the name in PATH, or no file at all
// at a path (a name with a '/'); a path command -v finds but that is no
// executable file ([ -x ], [ -d ]) is one the shell could not execute (dash
// reports a file in PATH that is not executable with 127, and command -v does
// not find it). An interpreter missing for a script (#!) reads as the
// script's own 127.
const wrapper = `d=$1; shift
echo "` + pidLine + ` $$" >> "$d/` + recordFile + `"
trap 'echo ` + signalLine + ` >> "$d/` + recordFile + `"' TERM INT HUP
"$@"
rc=$?
case $rc in
127) command -v -- "$1" > /dev/null || echo "` + cannotLine + ` ` + cannotFind + `" >> "$d/` + recordFile + `" ;;
126) case $1 in */*) [ -x "$1" ] && [ ! -d "$1" ] || echo "` + cannotLine + ` ` + cannotExecute + `" >> "$d/` + recordFile + `" ;; esac ;;
esac
echo "` + exitLine + ` $rc" >> "$d/` + recordFile + `"
exit "$rc"`

// Option customizes a Driver.
type Option func(*Driver)

// WithGracePeriod sets how long Stop waits after SIGTERM before SIGKILL
// (default 10s).
func WithGracePeriod(d time.Duration) Option { return func(dr *Driver) { dr.grace = d } }

// WithPollInterval sets how often re-adopted instances are checked
// (default 1s).
func WithPollInterval(d time.Duration) Option { return func(dr *Driver) { dr.poll = d } }

// WithCgroups sets whether the driver puts each instance in a cgroup of its
// own where it can (default true); without, it finds the processes an
// instance left by their environment only (cgroupTree).
func WithCgroups(on bool) Option { return func(dr *Driver) { dr.useCgroups = on } }

// WithSpareDirs sets how many instance directories the driver keeps made
// ahead of need (default 32; 0 makes each when its instance starts).
func WithSpareDirs(n int) Option { return func(dr *Driver) { dr.spareCount = max(0, n) } }

// defaultSpareDirs covers a job of 20 workers and its controller, and some.
const defaultSpareDirs = 32

// Driver is the local driver.
type Driver struct {
	root  string
	log   *slog.Logger
	grace time.Duration
	poll  time.Duration

	// Where each instance gets a cgroup of its own; nil where none can be
	// made (or useCgroups is off).
	useCgroups bool
	cg         *cgroupTree

	// launching admits launch calls, and the making of spare directories,
	// at most one per CPU (launchSlots), job by job.
	launching *gate.Gate

	// Instance directories made ahead of need (spareDir), each with its
	// work directory, an empty record and an empty log: a launch renames
	// one into place instead of making four inodes.
	spareCount int
	spares     chan string
	spareTaken chan struct{} // a launch wanted one
	lastTake   atomic.Int64  // when, in UnixNano
	spareSeq   atomic.Int64
	spareStamp string // a prefix of this driver's spare names

	mu     sync.Mutex // guards insts and closed, orders hub publications
	insts  map[driver.Ref]*instance
	hub    hub.Hub
	closed bool

	quit     chan struct{} // closed by Close: stops pollLoop and spareLoop
	pollDone chan struct{}
	fillDone chan struct{}

	// Instances whose stray processes are to be killed (strayLoop), each
	// with the channel to close once they are.
	strayMu     sync.Mutex
	strayQueue  []strayKill
	strayClosed bool // strayLoop has ended: callers kill their own
	strayWake   chan struct{}
	strayDone   chan struct{}
	strayPasses atomic.Int64 // strayLoop's passes over /proc, for the benchmarks
	// Stop calls under way, which wait for their instances' strays: while
	// there are any, strayLoop leaves no gap between passes (strayHurry
	// cuts one short).
	strayWaiters atomic.Int32
	strayHurry   chan struct{}
	strayGap     func(took time.Duration) time.Duration // strayGap, or a test's
}

// strayKill asks strayLoop to send sig to the stray processes of the
// instance in dir, and to close done (if not nil) once it has.
type strayKill struct {
	dir string
	sig syscall.Signal
	// except is a process group whose processes are left alone (the
	// caller signalled the group itself); 0: none.
	except int
	done   chan struct{}
}

type instance struct {
	ref driver.Ref
	dir string
	// started is closed once the start attempt is over; pid is set then.
	started chan struct{}
	// done is closed once the wrapper has ended and st is final.
	done chan struct{}
	pid  int // pid of the wrapper, which is also the process group id
	// cgroup is the instance's own cgroup (cgroupTree), "" when it has none.
	cgroup  string
	adopted bool
	stopped bool // Stop was called: report "stopped"
	st      driver.Status
}

type specRecord struct {
	JobID string `json:"job_id"`
	Role  string `json:"role"`
	Index int    `json:"index"`
	Name  string `json:"name"`
	Queue string `json:"queue"`
	// Command is the command run (the spec's first argument), named by
	// the status of an instance whose command could not be run.
	Command   string    `json:"command,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// Signals: the instance's wrapper writes a signal line when a stop
	// signal reaches it. Those of earlier drivers (either layout) wrote
	// none, so how their instances ended cannot be told from a stop.
	Signals bool `json:"signals,omitempty"`
}

type stateRecord struct {
	PID       int       `json:"pid"`
	PGID      int       `json:"pgid"`
	StartedAt time.Time `json:"started_at"`
	// Cgroup is the instance's own cgroup, where it has one.
	Cgroup string `json:"cgroup,omitempty"`
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
	root, err := cfg.Root(opts)
	if err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	if err := os.MkdirAll(root, 0o750); err != nil {
		return nil, fmt.Errorf("local: create work dir: %w", err)
	}
	d := &Driver{
		root:       root,
		log:        opts.Log().With("driver", "local"),
		grace:      10 * time.Second,
		poll:       time.Second,
		useCgroups: true,
		insts:      make(map[driver.Ref]*instance),
		launching:  gate.New(launchSlots()),
		spareCount: defaultSpareDirs,
		spareTaken: make(chan struct{}, 1),
		spareStamp: strconv.FormatInt(time.Now().UnixNano(), 36),
		quit:       make(chan struct{}),
		pollDone:   make(chan struct{}),
		fillDone:   make(chan struct{}),
		strayWake:  make(chan struct{}, 1),
		strayHurry: make(chan struct{}, 1),
		strayGap:   strayGap,
		strayDone:  make(chan struct{}),
	}
	for _, o := range options {
		o(d)
	}
	d.spares = make(chan string, d.spareCount)
	d.keepSpares()
	if d.useCgroups {
		cg, err := openCgroupTree(root)
		if err != nil {
			d.log.Info("instances get no cgroup of their own: processes they leave are found by their environment", "reason", err)
		} else {
			d.cg = cg
			d.log.Info("each instance runs in a cgroup of its own", "cgroup", cg.base)
			if n := cg.removeOrphans(); n > 0 {
				d.log.Info("removed the empty cgroups of drivers whose work_dir is gone", "count", n)
			}
		}
	}
	dirs, err := instanceDirs(filepath.Join(root, "*"))
	if err != nil {
		return nil, fmt.Errorf("local: scan %s: %w", root, err)
	}
	var ended []string
	adopted := map[string]bool{}
	for _, dir := range dirs {
		inst, err := d.adopt(dir)
		if err != nil {
			d.log.Warn("cannot re-adopt instance", "dir", dir, "err", err)
			continue
		}
		switch {
		case inst.cgroup != "":
			adopted[inst.cgroup] = true // adopt killed its strays if it ended
		case inst.st.State.Final():
			ended = append(ended, inst.dir)
		}
	}
	// What the instances without a cgroup that ended while no driver
	// watched left behind, and what the cgroups of instances not
	// re-adopted hold.
	signalStrays(killAll(ended)...)
	if d.cg != nil {
		d.cg.sweep(adopted)
	}
	go d.pollLoop()
	go d.spareLoop()
	go d.strayLoop()
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

// cgroupOf is the cgroup of the instance in dir (d.cg is not nil).
func (d *Driver) cgroupOf(dir string) string {
	return d.cg.of(strings.TrimPrefix(dir, d.root+string(filepath.Separator)))
}

// withNUL names the first argument or environment variable with a NUL byte,
// "" if none has one.
func withNUL(argv []string, env map[string]string) string {
	for i, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			return "argument " + strconv.Itoa(i)
		}
	}
	for k, v := range env {
		if strings.IndexByte(k, 0) >= 0 || strings.IndexByte(v, 0) >= 0 {
			return "environment variable " + strings.ReplaceAll(k, "\x00", "\\x00")
		}
	}
	return ""
}

// UnorderedStarts: a local instance needs no other one to exist first
// (driver.Unordered).
func (d *Driver) UnorderedStarts() {}

var _ driver.Unordered = (*Driver)(nil)

// Start runs the instance's command; an instance that exists is left alone.
func (d *Driver) Start(ctx context.Context, s driver.Spec) error {
	argv := append(append([]string(nil), s.Command...), s.Args...)
	if len(argv) == 0 {
		return fmt.Errorf("local: start %s: %w: no command: the local driver starts command and args as a process "+
			"and has no image to take them from; give them in the job, the app-runtime-config or the application", s.Ref, driver.ErrInvalidSpec)
	}
	if what := withNUL(argv, s.Env); what != "" {
		// No process can be given it; retrying would fail the same way
		// until the start timeout. (The API refuses it; a job stored
		// before it did may still carry one.)
		return fmt.Errorf("local: start %s: %w: %s contains a NUL byte", s.Ref, driver.ErrInvalidSpec, what)
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

	cmd, rec, err := d.launch(ctx, inst, s, argv)
	if err != nil {
		d.mu.Lock()
		delete(d.insts, s.Ref)
		d.mu.Unlock()
		close(inst.started)
		os.Remove(filepath.Join(inst.dir, recordFile))
		return fmt.Errorf("local: start %s: %w", s.Ref, err)
	}
	d.mu.Lock()
	inst.pid = cmd.Process.Pid
	inst.st.State = driver.Running
	inst.st.StartedAt = time.Now()
	d.hub.Publish(inst.st)
	d.mu.Unlock()
	close(inst.started)

	// A torn state line (the launcher killed mid-write) reads as absent,
	// and the wrapper's pid line stands in for it, as it does before.
	err = appendLine(rec, stateLine, stateRecord{PID: inst.pid, PGID: inst.pid, StartedAt: inst.st.StartedAt, Cgroup: inst.cgroup})
	if cerr := rec.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// The wrapper's pid line still lets a new driver find it.
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
// starts the wrapper. It returns the record, open for the state line. Every
// file operation here lies between the job's admission and its processes'
// start, for each instance of the job, so it makes no more than it needs.
func (d *Driver) launch(ctx context.Context, inst *instance, s driver.Spec, argv []string) (_ *exec.Cmd, rec *os.File, err error) {
	if err := d.launching.Acquire(ctx, s.JobID); err != nil {
		return nil, nil, err
	}
	defer d.launching.Release(s.JobID)
	fresh, err := d.placeDir(inst.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("create instance dir: %w", err)
	}
	if !fresh {
		// A directory made before may hold the files of a run that a
		// launcher of the earlier layout left there; none may stand in for
		// this run's. The record is truncated below.
		for _, f := range []string{legacyExitFile, legacyPIDFile, legacyStateFile, legacySpecFile} {
			if err := os.Remove(filepath.Join(inst.dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, nil, fmt.Errorf("remove stale %s: %w", f, err)
			}
		}
	}
	rec, err = os.OpenFile(filepath.Join(inst.dir, recordFile), os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("create record: %w", err)
	}
	defer func() {
		if err != nil {
			rec.Close()
		}
	}()
	spec := specRecord{JobID: s.JobID, Role: string(s.Role), Index: s.Index, Name: s.Name, Queue: s.Queue, Command: argv[0], CreatedAt: time.Now(), Signals: true}
	if err := appendLine(rec, specLine, spec); err != nil {
		return nil, nil, fmt.Errorf("record spec: %w", err)
	}
	wd := s.WorkingDir
	if fi, err := os.Stat(wd); wd == "" || !filepath.IsAbs(wd) || err != nil || !fi.IsDir() {
		wd = filepath.Join(inst.dir, workDir)
		if err := os.Mkdir(wd, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, nil, fmt.Errorf("create working dir: %w", err)
		}
	}
	out, err := os.OpenFile(filepath.Join(inst.dir, logFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("open log: %w", err)
	}
	defer out.Close() // the child has its own descriptor

	cmd := exec.Command("/bin/sh", append([]string{"-c", wrapper, "sh", inst.dir}, argv...)...)
	cmd.Dir = wd
	cmd.Env = append(environ(s.Env), InstanceVar+"="+inst.dir)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if d.cg != nil {
		// Started into it (clone3), so that no process of the instance
		// is ever outside it.
		path := d.cgroupOf(inst.dir)
		if f, err := d.cg.make(path); err != nil {
			d.log.Warn("instance gets no cgroup of its own", "ref", s.Ref.String(), "err", err)
		} else {
			defer f.Close()
			inst.cgroup = path
			cmd.SysProcAttr.UseCgroupFD = true
			cmd.SysProcAttr.CgroupFD = int(f.Fd())
		}
	}
	if err := cmd.Start(); err != nil {
		if inst.cgroup != "" {
			os.Remove(inst.cgroup)
			inst.cgroup = ""
		}
		return nil, nil, fmt.Errorf("run wrapper: %w", err)
	}
	return cmd, rec, nil
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

// ended finalizes inst after its wrapper is gone: the exit line wins over
// what the caller could observe.
func (d *Driver) ended(inst *instance, fallback *int, msg string) {
	killGroup(inst.pid, syscall.SIGKILL) // leftovers of the command
	// The end is timed by the clock that timed the start (this process's),
	// not by the record's modification time: the kernel stamps files from
	// a coarse clock, up to a few milliseconds behind, so a command that
	// ends at once would finish before it started.
	finished := time.Now()
	var code *int
	r, err := readRecord(inst.dir)
	ok := err == nil && r.exit != nil
	// The command ended with its exit recorded and no stop signal before
	// it: on its own, though Stop may have been called since.
	onItsOwn := ok && r.endedOnItsOwn()
	if ok {
		code = r.exit
		if why := r.cannotRun(); why != "" {
			msg = why
		}
	} else {
		code = fallback
		if code == nil && msg == "" {
			msg = "ended without recording an exit code"
		}
	}
	d.mu.Lock()
	finished = notBefore(finished, inst.st.StartedAt)
	if inst.stopped && !onItsOwn {
		msg = "stopped"
	}
	inst.st.State = driver.Succeeded
	if code == nil || *code != 0 {
		inst.st.State = driver.Failed
		if onItsOwn {
			inst.st.Reason = driver.ReasonExited
		}
	}
	inst.st.ExitCode = code
	inst.st.Message = msg
	inst.st.FinishedAt = finished
	if !d.closed {
		d.hub.Publish(inst.st)
	}
	d.mu.Unlock()
	// After the publication, which need not wait for it; Stop waits for
	// done.
	if inst.cgroup != "" {
		endCgroup(inst.cgroup)
		close(inst.done)
		return
	}
	d.killStrays(inst.dir, inst.done)
}

// killStrays has strayLoop kill the stray processes of the instance in dir
// and close done then; after Close it does so itself.
func (d *Driver) killStrays(dir string, done chan struct{}) {
	d.signalStraysLater(strayKill{dir: dir, sig: syscall.SIGKILL, done: done})
}

// signalStraysLater hands k to strayLoop, or does it at once once the loop
// has ended.
func (d *Driver) signalStraysLater(k strayKill) {
	d.strayMu.Lock()
	if d.strayClosed {
		d.strayMu.Unlock()
		signalStrays(k)
		if k.done != nil {
			close(k.done)
		}
		return
	}
	d.strayQueue = append(d.strayQueue, k)
	d.strayMu.Unlock()
	select {
	case d.strayWake <- struct{}{}:
	default:
	}
}

// Passes over /proc are spaced so that they take at most 1/strayGapFactor
// of a CPU, and a stray outlives its instance by at most maxStrayGap: a pass
// reads every process's environment (1.3–2.4 ms over 90 processes on the
// 2-CPU machine of docs/benchmarks.md, BenchmarkSignalStrays; more on a
// machine running more), and a trivial job's controller and worker ending
// one after the other made two passes a job (BenchmarkStrayPassesPerJob).
const (
	strayGapFactor = 50
	maxStrayGap    = time.Second
)

// strayGap is how long strayLoop waits after a pass that took took before
// the next one, gathering what ends meanwhile.
func strayGap(took time.Duration) time.Duration {
	return min(strayGapFactor*took, maxStrayGap)
}

// strayLoop signals the stray processes of ended and stopped instances,
// those of all the instances asked for since its last pass in one pass over
// /proc, and leaves strayGap after a pass before the next, unless a Stop
// waits for one (a cancellation is not held up).
func (d *Driver) strayLoop() {
	defer close(d.strayDone)
	for {
		closing := false
		select {
		case <-d.strayWake:
		case <-d.quit:
			closing = true
		}
		d.strayMu.Lock()
		batch := d.strayQueue
		d.strayQueue = nil
		d.strayClosed = closing
		d.strayMu.Unlock()
		var gap time.Duration
		if len(batch) > 0 {
			start := time.Now()
			signalStrays(batch...)
			d.strayPasses.Add(1)
			if d.strayWaiters.Load() == 0 {
				gap = d.strayGap(time.Since(start))
			}
		}
		for _, k := range batch {
			if k.done != nil {
				close(k.done)
			}
		}
		if closing {
			return
		}
		select { // after Close, the next round gathers the rest at once
		case <-time.After(gap):
		case <-d.strayHurry:
		case <-d.quit:
		}
	}
}

// signalStrays sends each kill's signal to every process that has the
// InstanceVar of its dir in its environment but those of its except group
// (SIGKILL before another signal for the same dir): the processes of those instances that left their
// process group (setsid, a daemon), which signals to the group miss. A
// process that started with an environment of its own (env -i) is not
// found.
//
// A process in the middle of an exec shows no environment for a moment
// (the kernel sets the new image's up first; here one read in eleven of a
// shell's `setsid sleep 0` children, read in a loop for 5 s), longer on a
// busy machine: such a process is read again, a millisecond apart, until
// it shows one or ends, for strayExecWait and at least strayExecRereads
// times, so a stray caught starting its command is not passed over (a
// process started with an empty environment costs a pass that wait).
// After a pass that signalled a process /proc is read again, for what it
// may have forked meanwhile.
func signalStrays(kills ...strayKill) {
	if len(kills) == 0 {
		return
	}
	kills = slices.Clone(kills)
	slices.SortStableFunc(kills, func(a, b strayKill) int {
		return cmp.Compare(strength(b.sig), strength(a.sig))
	})
	marks := make([][]byte, len(kills))
	for i, k := range kills {
		marks[i] = []byte("\x00" + InstanceVar + "=" + k.dir + "\x00")
	}
	self := os.Getpid()
	signalled := map[int]bool{self: true}
	env := []byte{0}
	var killed []int
	pids, reads := procPIDs(), 1
	var rereadSince time.Time // the first reread of processes in an exec
	rereads := 0
	for len(pids) > 0 {
		var unsure []int
		more := false
		for _, pid := range pids {
			if signalled[pid] {
				continue
			}
			b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
			if err != nil {
				continue // gone, or another user's
			}
			if len(b) == 0 {
				if execing(pid) {
					unsure = append(unsure, pid)
				}
				continue // a kernel thread, or ending
			}
			env = append(append(env[:1], b...), 0)
			for i, m := range marks {
				if bytes.Contains(env, m) {
					signalled[pid] = true
					if kills[i].except > 0 && inGroup(pid, kills[i].except) {
						break
					}
					more = true
					if syscall.Kill(pid, kills[i].sig) == nil && kills[i].sig == syscall.SIGKILL {
						killed = append(killed, pid)
					}
					break
				}
			}
		}
		switch {
		case more && reads < strayRounds:
			pids, reads = procPIDs(), reads+1
		case len(unsure) > 0 && (rereads < strayExecRereads || time.Since(rereadSince) < strayExecWait):
			if rereads++; rereads == 1 {
				rereadSince = time.Now()
			}
			time.Sleep(time.Millisecond)
			pids = unsure
		default:
			pids = nil
		}
	}
	// A signal is delivered after kill returns: those who wait for the
	// pass (Stop, Close) are to find the killed gone.
	for deadline := time.Now().Add(strayDeathWait); len(killed) > 0 && time.Now().Before(deadline); {
		killed = slices.DeleteFunc(killed, func(pid int) bool { return !running(pid) })
		if len(killed) > 0 {
			time.Sleep(time.Millisecond)
		}
	}
}

// strayRounds bounds the reads of /proc one signalStrays makes: a stray
// that forks faster than it is read again is not followed forever. The
// processes that showed no environment are read again for strayExecWait
// and at least strayExecRereads times: on a busy machine a millisecond's
// sleep may last tens, and a stray caught in an exec at each of a few
// rereads was passed over (2 runs in 50 of
// TestSignalStraysFindsAProcessInAnExec beside two busy loops).
const (
	strayRounds      = 20
	strayExecWait    = 100 * time.Millisecond
	strayExecRereads = 10
)

// procPIDs lists the processes in /proc.
func procPIDs() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	pids := make([]int, 0, len(entries))
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// execing reports whether pid, which showed no environment, may show one
// in a moment: it has not ended and is neither a kernel thread nor ending.
func execing(pid int) bool {
	state, flags, ok := procStat(pid)
	const pfExiting, pfKthread = 0x4, 0x200000
	return ok && state != 'Z' && state != 'X' && flags&(pfExiting|pfKthread) == 0
}

// procStat reads pid's state and flags (PF_*) from /proc/PID/stat.
func procStat(pid int) (state byte, flags uint64, ok bool) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// After the command's name, which is in parentheses and may itself
	// contain them: state, ppid, pgrp, session, tty_nr, tpgid, flags.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := bytes.Fields(stat[i+1:])
	if len(f) < 7 || len(f[0]) != 1 {
		return 0, 0, false
	}
	flags, err = strconv.ParseUint(string(f[6]), 10, 64)
	return f[0][0], flags, err == nil
}

// strayDeathWait bounds how long signalStrays waits for the processes it
// sent SIGKILL to end (one in uninterruptible sleep ends when it wakes).
const strayDeathWait = 500 * time.Millisecond

// running reports whether pid is a process that has not ended (not a
// zombie).
func running(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != 'Z' && state != 'X'
}

// strength orders signals for signalStrays: SIGKILL first.
func strength(sig syscall.Signal) int {
	if sig == syscall.SIGKILL {
		return 1
	}
	return 0
}

// killAll is a SIGKILL for the strays of each of dirs.
func killAll(dirs []string) []strayKill {
	kills := make([]strayKill, len(dirs))
	for i, dir := range dirs {
		kills[i] = strayKill{dir: dir, sig: syscall.SIGKILL}
	}
	return kills
}

// notBefore returns t, or start if t is before it: an instance's
// timestamps are ordered whatever clocks they came from.
func notBefore(t, start time.Time) time.Time {
	if t.Before(start) {
		return start
	}
	return t
}

// record is what an instance directory says about its instance.
type record struct {
	spec  specRecord
	pid   int          // from the pid line; 0 when none
	state *stateRecord // nil when none
	exit  *int         // nil when none
	// cannot is what the cannot line says (cannotFind, cannotExecute);
	// "" without one.
	cannot string
	// signalled: a signal line comes before the exit line (or there is
	// no exit line yet).
	signalled bool
	// modTime is when the exit code was written, read with it; zero
	// without one.
	modTime time.Time
}

// readRecord reads the instance directory's record, or the files of the
// earlier layout when it has none.
func readRecord(dir string) (record, error) {
	f, err := os.Open(filepath.Join(dir, recordFile))
	if errors.Is(err, fs.ErrNotExist) {
		return readLegacy(dir)
	}
	if err != nil {
		return record{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return record{}, err
	}
	var r record
	hasSpec := false
	// The text after the last newline is a line cut short: absent.
	for text := string(b); ; {
		line, rest, ok := strings.Cut(text, "\n")
		if !ok {
			break
		}
		text = rest
		key, val, _ := strings.Cut(line, " ")
		switch key {
		case specLine:
			if json.Unmarshal([]byte(val), &r.spec) == nil {
				hasSpec = true
			}
		case pidLine:
			if n, err := strconv.Atoi(val); err == nil {
				r.pid = n
			}
		case stateLine:
			var st stateRecord
			if json.Unmarshal([]byte(val), &st) == nil {
				r.state = &st
			}
		case cannotLine:
			r.cannot = val
		case signalLine:
			if r.exit == nil {
				r.signalled = true
			}
		case exitLine:
			if n, err := strconv.Atoi(val); err == nil {
				r.exit = &n
			}
		}
	}
	if !hasSpec {
		return record{}, fmt.Errorf("%s: no spec line", f.Name())
	}
	if r.exit != nil {
		if fi, err := f.Stat(); err == nil {
			r.modTime = fi.ModTime() // the exit line is the last one written
		}
	}
	return r, nil
}

// endedOnItsOwn reports whether the record tells that the command ended on
// its own: its exit recorded by a wrapper that writes signal lines, with
// none before it. An instance of an earlier driver's wrapper (started
// before an upgrade) cannot tell, so its failure while its job's
// instances are stopped is a stop, as that driver recorded it.
func (r record) endedOnItsOwn() bool {
	return r.exit != nil && r.spec.Signals && !r.signalled
}

// cannotRun says why the shell could not run the recorded command, "" when
// it ran (or no exit code is recorded yet): the message of its status.
func (r record) cannotRun() string {
	if r.exit == nil {
		return ""
	}
	name := "command"
	if r.spec.Command != "" {
		name += " " + strconv.Quote(r.spec.Command)
	}
	switch {
	case r.cannot == cannotFind && !strings.Contains(r.spec.Command, "/"):
		return name + " not found: no executable file of that name in PATH"
	case r.cannot == cannotFind:
		return name + " not found"
	case r.cannot == cannotExecute:
		return name + " is not an executable file"
	}
	return ""
}

// readLegacy reads the instance files a driver wrote before the record:
// spec.json (through a temporary file), the wrapper's pid and exit files
// and state.json, each a fact of the record. Instances it started may
// still run when the launcher is replaced by one of this layout.
func readLegacy(dir string) (record, error) {
	var r record
	b, err := os.ReadFile(filepath.Join(dir, legacySpecFile))
	if err != nil {
		return record{}, err
	}
	if err := json.Unmarshal(b, &r.spec); err != nil {
		return record{}, fmt.Errorf("%s: %w", legacySpecFile, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, legacyStateFile)); err == nil {
		var st stateRecord
		if json.Unmarshal(b, &st) == nil {
			r.state = &st
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, legacyPIDFile)); err == nil {
		r.pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if b, err := os.ReadFile(filepath.Join(dir, legacyExitFile)); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			r.exit = &n
			if fi, err := os.Stat(filepath.Join(dir, legacyExitFile)); err == nil {
				r.modTime = fi.ModTime()
			}
		}
	}
	return r, nil
}

// instanceDirs lists the instance directories of the job directories that
// match jobs (a glob): those with a record or a legacy spec.json.
func instanceDirs(jobs string) ([]string, error) {
	var dirs []string
	seen := map[string]bool{}
	for _, f := range []string{recordFile, legacySpecFile} {
		found, err := filepath.Glob(filepath.Join(jobs, "*", f))
		if err != nil {
			return nil, err
		}
		for _, p := range found {
			if strings.HasPrefix(filepath.Base(filepath.Dir(filepath.Dir(p))), ".") {
				continue // the spare directories, no job's
			}
			if dir := filepath.Dir(p); !seen[dir] {
				seen[dir] = true
				dirs = append(dirs, dir)
			}
		}
	}
	return dirs, nil
}

// adopt loads an instance directory left by an earlier driver (or a
// failed start) unless its ref is known already.
func (d *Driver) adopt(dir string) (*instance, error) {
	r, err := readRecord(dir)
	if err != nil {
		return nil, err
	}
	ref := driver.Ref{JobID: r.spec.JobID, Role: driver.Role(r.spec.Role), Index: r.spec.Index}
	d.mu.Lock()
	if inst, ok := d.insts[ref]; ok {
		d.mu.Unlock()
		return inst, nil
	}
	inst := &instance{ref: ref, dir: dir, started: make(chan struct{}), done: make(chan struct{}), adopted: true}
	close(inst.started)
	inst.st = driver.Status{Ref: ref, State: driver.Running}
	if r.state != nil {
		inst.pid = r.state.PID
		inst.st.StartedAt = r.state.StartedAt
		inst.cgroup = r.state.Cgroup
	} else if r.pid > 0 {
		// Started, the launcher gone before it recorded when: the time
		// the instance was made is the closest one recorded, and the
		// cgroup it was started into is where this driver would put it.
		inst.pid = r.pid
		inst.st.StartedAt = r.spec.CreatedAt
		if d.cg != nil {
			if p := d.cgroupOf(dir); isDir(p) {
				inst.cgroup = p
			}
		}
	}
	if inst.pid <= 0 || !alive(inst.pid, dir) {
		// The wrapper may have ended since the first read.
		if r.exit == nil {
			if again, err := readRecord(dir); err == nil {
				r = again
			}
		}
		inst.st.State = driver.Failed
		if r.exit != nil {
			inst.st.FinishedAt = r.modTime
		}
		switch {
		case r.exit != nil:
			inst.st.ExitCode = r.exit
			inst.st.Message = r.cannotRun()
			if *r.exit == 0 {
				inst.st.State = driver.Succeeded
			} else if r.endedOnItsOwn() {
				inst.st.Reason = driver.ReasonExited
			}
		case inst.pid <= 0:
			inst.st.Message = "never started"
		default:
			inst.st.Message = "ended without recording an exit code while the launcher was away"
		}
		if inst.st.FinishedAt.IsZero() {
			inst.st.FinishedAt = time.Now()
		}
		// Ended while the launcher was away: the record's time is all
		// there is, and its coarse clock may read before the recorded start.
		inst.st.FinishedAt = notBefore(inst.st.FinishedAt, inst.st.StartedAt)
		if inst.pid > 0 {
			killGroup(inst.pid, syscall.SIGKILL)
		}
		if inst.cgroup == "" {
			close(inst.done)
		}
	}
	d.insts[ref] = inst
	d.hub.Publish(inst.st)
	d.mu.Unlock()
	if inst.st.State.Final() && inst.cgroup != "" {
		// Ended while no driver watched: what it left is killed now (not
		// under d.mu: this waits for the cgroup to empty).
		endCgroup(inst.cgroup)
		close(inst.done)
	}
	return inst, nil
}

// alive reports whether pid is a live (not zombie) process running the
// wrapper of the instance in dir, which guards against pid reuse.
func alive(pid int, dir string) bool {
	if !running(pid) {
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
	// Whatever happens below waits for the instance's strays (done):
	// strayLoop is not to hold them back.
	d.strayWaiters.Add(1)
	defer d.strayWaiters.Add(-1)
	select {
	case d.strayHurry <- struct{}{}:
	default:
	}
	d.mu.Lock()
	if inst.pid <= 0 {
		d.mu.Unlock()
		return nil
	}
	if inst.st.State.Final() {
		d.mu.Unlock()
		// Its strays may still be being killed (ended).
		select {
		case <-inst.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	inst.stopped = true
	d.mu.Unlock()
	if err := killGroup(inst.pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("terminate process group %d: %w", inst.pid, err)
	}
	// Then those that left the group, and only those: a process signalled
	// twice took a program that reads a second SIGTERM as "stop now" (as
	// many do a second Ctrl-C) out of its grace period at once.
	if inst.cgroup != "" {
		signalCgroup(inst.cgroup, syscall.SIGTERM, inst.pid)
	} else {
		d.signalStraysLater(strayKill{dir: inst.dir, sig: syscall.SIGTERM, except: inst.pid})
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
	dirs, _ := instanceDirs(jobDir)
	for _, dir := range dirs {
		if _, err := d.adopt(dir); err != nil {
			d.log.Warn("cleanup: cannot adopt instance", "dir", dir, "err", err)
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

	if d.cg != nil {
		// Its instances' are gone with them (fails while one is not).
		os.Remove(d.cg.of(filepath.Base(jobDir)))
	}
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

// Purge removes everything of the job, its instances' logs too
// (driver.Purger): the launcher calls it once the job is deleted.
func (d *Driver) Purge(ctx context.Context, jobID string) error {
	if err := d.Cleanup(ctx, jobID); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Dir(d.instanceDir(driver.Ref{JobID: jobID}))); err != nil {
		return fmt.Errorf("local: purge %s: %w", jobID, err)
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
	<-d.fillDone // spares left are taken up by the next driver
	<-d.strayDone
	if d.cg != nil {
		d.cg.tidy()
	}
	// Wait goroutines of still-running children are not waited for: they
	// end with their child, reap it and kill what its cgroup holds.
	return nil
}

// spareDir holds the instance directories made ahead of need. Its name
// starts with a dot, which no job's directory does (plainSegment).
const spareDir = ".spare"

// keepSpares takes up the spare directories an earlier driver left, as
// many as the pool holds, and removes the others.
func (d *Driver) keepSpares() {
	entries, err := os.ReadDir(filepath.Join(d.root, spareDir))
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(d.root, spareDir, e.Name())
		if strings.HasSuffix(e.Name(), ".tmp") || !e.IsDir() {
			os.RemoveAll(p)
			continue
		}
		select {
		case d.spares <- p:
		default:
			os.RemoveAll(p)
		}
	}
}

// spareQuiet is how long no launch takes a spare before more are made:
// the spares are made between jobs' starts, not in the middle of one.
const spareQuiet = 20 * time.Millisecond

// spareLoop keeps the pool of spare directories full, making one at a
// time in a launch slot once launches have been quiet for spareQuiet.
func (d *Driver) spareLoop() {
	defer close(d.fillDone)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-d.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		for len(d.spares) < cap(d.spares) {
			if wait := spareQuiet - time.Since(time.Unix(0, d.lastTake.Load())); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-d.quit:
					t.Stop()
					return
				}
				continue
			}
			if d.launching.Acquire(ctx, "") != nil {
				return // quit
			}
			p, err := d.makeSpare()
			d.launching.Release("")
			if err != nil {
				d.log.Warn("cannot make a spare instance directory", "err", err)
				break
			}
			select {
			case d.spares <- p: // room, unless a start put one back meanwhile
			case <-d.quit:
				return // p stays for the next driver
			}
		}
		select {
		case <-d.spareTaken:
		case <-d.quit:
			return
		}
	}
}

// makeSpare makes a spare instance directory under a temporary name, then
// gives it its own, so that a directory of the pool is always whole.
func (d *Driver) makeSpare() (string, error) {
	name := d.spareStamp + "-" + strconv.FormatInt(d.spareSeq.Add(1), 10)
	final := filepath.Join(d.root, spareDir, name)
	tmp := final + ".tmp"
	if err := os.MkdirAll(tmp, 0o750); err != nil {
		return "", err
	}
	err := os.Mkdir(filepath.Join(tmp, workDir), 0o750)
	for _, f := range []string{recordFile, logFile} {
		if err != nil {
			break
		}
		var file *os.File
		if file, err = os.OpenFile(filepath.Join(tmp, f), os.O_CREATE|os.O_WRONLY, 0o640); err == nil {
			err = file.Close()
		}
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	return final, nil
}

// placeDir puts a spare directory at dir, or makes dir when there is no
// spare or dir exists; it reports whether dir is new.
func (d *Driver) placeDir(dir string) (fresh bool, err error) {
	d.lastTake.Store(time.Now().UnixNano())
	var spare string
	select {
	case spare = <-d.spares:
	default:
	}
	// Wakes the loop that makes spares: it has one fewer, or it could not
	// make one before and tries again. Only after the take: woken before
	// it, the loop could find the pool still full and wait again, one
	// short until the next start.
	select {
	case d.spareTaken <- struct{}{}:
	default:
	}
	if spare == "" {
		return makeDir(dir)
	}
	if err = inJobDir(dir, func() error { return os.Rename(spare, dir) }); err == nil {
		return true, nil
	}
	// dir exists (a job started again after its Cleanup): the spare goes
	// back, unless it is gone (another driver on the same directory took
	// it).
	if _, serr := os.Stat(spare); serr == nil {
		select {
		case d.spares <- spare:
		default:
			os.RemoveAll(spare)
		}
	}
	return makeDir(dir)
}

// makeDir makes dir (and its parents) and reports whether it made dir
// itself, that is, whether dir was not there before.
func makeDir(dir string) (fresh bool, err error) {
	err = inJobDir(dir, func() error { return os.Mkdir(dir, 0o750) })
	if errors.Is(err, fs.ErrExist) {
		if fi, serr := os.Stat(dir); serr == nil && fi.IsDir() {
			return false, nil
		}
	}
	return err == nil, err
}

// inJobDir runs place, which puts the instance directory dir in place, and
// once more after making dir's parent, the job's directory, if that is
// missing: it is, for the job's first instance.
func inJobDir(dir string, place func() error) error {
	err := place()
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(dir), 0o750); err == nil {
			err = place()
		}
	}
	return err
}

// appendLine appends "key JSON(v)\n" to the record in one write.
func appendLine(f *os.File, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = f.Write(append(append([]byte(key+" "), b...), '\n'))
	return err
}

// Root is the directory holding the instance directories.
func (d *Driver) Root() string { return d.root }
