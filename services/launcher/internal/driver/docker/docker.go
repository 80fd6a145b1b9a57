// Package docker is a driver that runs each instance as a container on a
// Docker Engine, through the official client (API version negotiated, so
// older engines work).
//
// A container is named Spec.Name and labelled rm.managed=<installation id>
// (driver.Options.Installation), rm.job-id, rm.role, rm.index and rm.queue
// (plus Spec.Labels, which cannot override these). Command becomes the entrypoint and Args the cmd; CPU and memory
// quantities become NanoCPUs and a memory limit; GPUs a device request;
// storages become mounts: host_path a bind mount, empty_dir an anonymous
// volume (removed with the container), pvc a named volume, nfs a named
// volume of the local driver with NFS options. Containers are never removed
// automatically, so exit codes and logs stay readable until Cleanup.
// An image the engine has not and cannot pull makes Start fail with
// driver.ErrImagePull, an engine that cannot be reached with
// driver.ErrUnavailable; the launcher reports them on the job. A container
// the engine refuses as invalid (a malformed image reference, an entrypoint
// missing from the image), or an image no pull can get (a bare image id the
// engine has not), is driver.ErrInvalidSpec: the job fails at once.
// A pull outlives the start that began it (a later start of the image
// waits for it again) and fails with driver.ErrUnavailable when the engine
// says nothing of its progress for 2 minutes.
//
// Status comes from the Engine's event stream (start, die, destroy),
// confirmed by inspecting the container for its exit code. A container
// that was created and has not started is not reported (neither by its
// create event nor by List): it does not start on its own, and a start
// that failed removes it, which is no loss of a running instance. A
// failure seen to start with no kill event before its die ended on its own
// (driver.ReasonExited). The stream is reconnected after errors, replaying from the last event seen, and each
// (re)connection is followed by a full resync of the labelled containers.
//
// Restart policy: containers outlive the launcher. A new driver finds them
// by the rm.managed label: List reports them and Watch follows them like
// its own.
//
// Installations: several installations (or test processes) may share one
// engine. A driver sees, stops, removes and reports only the containers
// whose rm.managed label is its own installation id; those of other
// installations, and containers made before installation ids existed
// (rm.managed=true), do not exist for it, and launchers of those older
// versions (which look for rm.managed=true) do not see its containers.
//
// It imports the driver contract, the Docker client and the drivers' own
// helpers (internal/hub, internal/gate) only.
package docker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/internal/gate"
	"github.com/avxrm/rm/services/launcher/internal/driver/internal/hub"
)

var _ driver.Driver = (*Driver)(nil)

// Labels every managed container carries.
const (
	// LabelManaged carries the installation id (driver.Options.Installation).
	LabelManaged = "rm.managed"
	LabelJobID   = "rm.job-id"
	LabelRole    = "rm.role"
	LabelIndex   = "rm.index"
	LabelQueue   = "rm.queue"
)

// legacyManaged is the rm.managed value of containers made before
// installation ids existed; no installation has it as its id.
const legacyManaged = "true"

// Option customizes a Driver.
type Option func(*Driver)

// WithStopTimeout sets how long Stop waits after SIGTERM before SIGKILL
// (default 10s).
func WithStopTimeout(d time.Duration) Option { return func(dr *Driver) { dr.grace = d } }

// WithAnswerTimeout sets how long NewDriver waits for the engine to answer
// (default 10s).
func WithAnswerTimeout(d time.Duration) Option { return func(dr *Driver) { dr.answerTimeout = d } }

// WithPullIdle sets how long a pull may go without a word from the engine
// before it fails with driver.ErrUnavailable (default pullIdle).
func WithPullIdle(d time.Duration) Option { return func(dr *Driver) { dr.pullIdle = d } }

// WithStartSlots sets how many container starts may be under way at once
// (default startSlots).
func WithStartSlots(n int) Option { return func(dr *Driver) { dr.starting = gate.New(max(1, n)) } }

// Driver is the docker driver.
type Driver struct {
	cli     *client.Client
	network string
	// installation is the value of LabelManaged on every container this
	// driver makes and the only one it looks at.
	installation string
	log          *slog.Logger
	grace        time.Duration
	// answerTimeout bounds NewDriver's wait for the engine's answer.
	answerTimeout time.Duration

	tracker hub.Tracker // last status of every container seen

	// unkilled holds, by container id, the containers whose start event
	// the event loop saw and no kill event since: their die is their own
	// (driver.ReasonExited). Only the event loop uses it.
	unkilled map[string]bool

	// starting admits container starts, startSlots at a time, job by job.
	starting *gate.Gate

	// pulls are the pulls under way, by image reference (pull).
	pullMu   sync.Mutex
	pulls    map[string]*pulling
	pullIdle time.Duration

	closeOnce sync.Once

	stopLoop context.CancelFunc
	loopDone chan struct{}
}

// New is the driver.Factory of the docker driver.
func New(config json.RawMessage, opts driver.Options) (driver.Driver, error) {
	cfg, err := driver.ParseDockerConfig(config)
	if err != nil {
		return nil, fmt.Errorf("docker: %w", err)
	}
	return NewDriver(cfg, opts)
}

// NewDriver connects to the engine named by cfg.Host (the environment's
// DOCKER_HOST etc. when empty) and starts following its events. An engine
// that refuses the connection, or does not answer within the answer
// timeout (an accepted connection and no reply), fails it with
// driver.ErrUnavailable: the launcher tries again for a later job. Once
// the engine has answered, a failing event stream is retried by the event
// loop.
func NewDriver(cfg driver.DockerConfig, opts driver.Options, options ...Option) (*Driver, error) {
	if opts.Installation == "" || opts.Installation == legacyManaged {
		// Without it the driver would take every installation's containers
		// on the engine for its own, and the launcher would remove them.
		return nil, errors.New("docker: no installation id (driver.Options.Installation)")
	}
	copts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.Host != "" {
		copts = append(copts, client.WithHost(cfg.Host))
	}
	cli, err := client.NewClientWithOpts(copts...)
	if err != nil {
		return nil, fmt.Errorf("docker: create client: %w", err)
	}
	d := &Driver{
		cli:           cli,
		network:       cfg.Network,
		installation:  opts.Installation,
		log:           opts.Log().With("driver", "docker"),
		grace:         10 * time.Second,
		answerTimeout: 10 * time.Second,
		starting:      gate.New(startSlots()),
		pulls:         map[string]*pulling{},
		pullIdle:      pullIdle,
		unkilled:      map[string]bool{},
		loopDone:      make(chan struct{}),
	}
	for _, o := range options {
		o(d)
	}
	// The client negotiates its API version on its first request, with a
	// ping it makes holding a lock that every later request waits for
	// without its context: a ping to an engine that does not answer held
	// List, and the launcher's worker that asked, for good. So the ping is
	// made here, bounded, and negotiates; later requests make none.
	pctx, cancelPing := context.WithTimeout(context.Background(), d.answerTimeout)
	ping, err := cli.Ping(pctx)
	cancelPing()
	if err != nil {
		cli.Close()
		return nil, driver.Mark(driver.ErrUnavailable, fmt.Errorf("docker: engine %s: %w", cli.DaemonHost(), err))
	}
	cli.NegotiateAPIVersionPing(ping)
	ctx, cancel := context.WithCancel(context.Background())
	d.stopLoop = cancel
	tried := make(chan struct{})
	go d.eventLoop(ctx, tried)
	// Give the first resync a chance so that Watch starts with what
	// exists; an engine that stops answering must not block the launcher.
	select {
	case <-tried:
	case <-time.After(d.answerTimeout):
		d.log.Warn("docker engine not reachable yet; will keep trying")
	}
	return d, nil
}

// startSlots bounds the container starts under way. Sent all at once, the
// starts of jobs admitted together interleave in the engine and every job
// holds its workers until all have started: three jobs of 11 containers
// started together on the 2-CPU machine of docs/benchmarks.md ("Launches
// job by job on the local and Docker drivers") waited 11.4–11.9 s on average,
// the last 11.4–12.0 s. Four at a time, job by job, they waited 8.3–8.4 s on
// average, the last 11.8 s.
func startSlots() int { return max(4, runtime.NumCPU()) }

// Start creates and starts the container; an existing one is left alone
// (started if it was only created).
func (d *Driver) Start(ctx context.Context, s driver.Spec) error {
	if s.Name == "" {
		s.Name = s.Ref.Name()
	}
	cfg, hc, err := containerSpec(s, d.network, d.installation)
	if err != nil {
		return fmt.Errorf("docker: start %s: %w", s.Ref, err)
	}
	if err := d.starting.Acquire(ctx, s.JobID); err != nil {
		return fmt.Errorf("docker: start %s: %w", s.Ref, err)
	}
	resp, err := d.cli.ContainerCreate(ctx, cfg, hc, nil, nil, s.Name)
	if cerrdefs.IsNotFound(err) {
		// A pull may take minutes: other starts do not wait for it.
		d.starting.Release(s.JobID)
		if perr := d.pull(ctx, s.Image); perr != nil {
			return perr // "pull image x: …", marked for the launcher
		}
		if err := d.starting.Acquire(ctx, s.JobID); err != nil {
			return fmt.Errorf("docker: start %s: %w", s.Ref, err)
		}
		resp, err = d.cli.ContainerCreate(ctx, cfg, hc, nil, nil, s.Name)
	}
	defer d.starting.Release(s.JobID)
	if cerrdefs.IsConflict(err) {
		return d.startExisting(ctx, s)
	}
	if client.IsErrConnectionFailed(err) {
		return driver.Mark(driver.ErrUnavailable, fmt.Errorf("docker: create container for %s: %w", s.Ref, err))
	}
	if err != nil {
		return refused(fmt.Errorf("docker: create container for %s: %w", s.Ref, err))
	}
	return d.startCreated(ctx, s.Ref, resp.ID)
}

// startCreated starts the created container id of ref. One that cannot
// start (no such executable, no such network...) is removed so that a
// retry creates it afresh, from the spec and the plugin's config of then.
func (d *Driver) startCreated(ctx context.Context, ref driver.Ref, id string) error {
	if err := d.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		rmErr := d.cli.ContainerRemove(context.WithoutCancel(ctx), id, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if client.IsErrConnectionFailed(err) {
			err = driver.Mark(driver.ErrUnavailable, err)
		}
		return errors.Join(refused(fmt.Errorf("docker: start container of %s: %w", ref, err)), rmErr)
	}
	return nil
}

// refused marks err driver.ErrInvalidSpec when the engine refused the
// container as invalid (HTTP 400): an image reference it cannot parse, a
// limit it does not allow, an entrypoint missing from the image or not
// executable ("exec: …: no such file or directory", which docker run
// reports with exit code 127). The same spec would be refused again, so
// the launcher fails the job at once with the engine's words instead of
// retrying until the start timeout.
func refused(err error) error {
	if cerrdefs.IsInvalidArgument(err) {
		return driver.Mark(driver.ErrInvalidSpec, err)
	}
	return err
}

// startExisting handles a name conflict: the instance exists unless the
// name belongs to a container that is not ours.
func (d *Driver) startExisting(ctx context.Context, s driver.Spec) error {
	// A concurrent create reserves the name before the container can be
	// inspected: retry briefly.
	info, err := d.cli.ContainerInspect(ctx, s.Name)
	for i := 0; cerrdefs.IsNotFound(err) && i < 50; i++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		info, err = d.cli.ContainerInspect(ctx, s.Name)
	}
	if err != nil {
		return fmt.Errorf("docker: inspect existing container %s: %w", s.Name, err)
	}
	if ref, ok := d.refFromLabels(info.Config.Labels); !ok || ref != s.Ref {
		return fmt.Errorf("docker: start %s: container name %s is taken by another container", s.Ref, s.Name)
	}
	if info.State != nil && info.State.Status == container.StateCreated {
		return d.startCreated(ctx, s.Ref, info.ID)
	}
	return nil
}

// pullIdle bounds a pull's silence: an engine that sends no word of its
// progress for that long does not answer any more, and the pull fails.
const pullIdle = 2 * time.Minute

// pulling is a pull under way; err is set before done is closed.
type pulling struct {
	done chan struct{}
	err  error
}

// errPullSilent is the cause of a pull ended by pullIdle.
var errPullSilent = errors.New("no word of its progress")

// pull fetches an image that is not on the engine. An image the engine
// cannot get is driver.ErrImagePull (an unreachable engine ErrUnavailable),
// so that the launcher reports it as such; one it refuses to pull as
// invalid is driver.ErrInvalidSpec, so that the job fails at once.
//
// The pull goes on without ctx, bounded by pullIdle, and starts of the
// same image join it: a big image takes longer than the launcher gives a
// start (its calls to a driver are bounded so that a hung engine does not
// hold its workers), and a pull cancelled with each start would begin
// again, its layer under way lost, at every retry. When ctx ends first,
// the error says the pull is under way: a later start waits for it again.
func (d *Driver) pull(ctx context.Context, ref string) error {
	if _, err := reference.ParseNormalizedNamed(ref); err != nil {
		// No registry has it, such as a bare 64-hex image id the engine has
		// not: no pull will ever get it.
		return driver.Mark(driver.ErrInvalidSpec, fmt.Errorf("pull image %s: %w", ref, err))
	}
	d.pullMu.Lock()
	p := d.pulls[ref]
	if p == nil {
		p = &pulling{done: make(chan struct{})}
		d.pulls[ref] = p
		go func() {
			err := d.pullNow(context.WithoutCancel(ctx), ref)
			d.pullMu.Lock()
			delete(d.pulls, ref)
			d.pullMu.Unlock()
			p.err = err
			close(p.done)
		}()
	}
	d.pullMu.Unlock()
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		// Not ctx's error: the engine answers, the pull is slow.
		return fmt.Errorf("pull image %s: still under way; the next start waits for it again", ref)
	}
}

// pullNow pulls ref, failing once the engine has said nothing for
// d.pullIdle.
func (d *Driver) pullNow(ctx context.Context, ref string) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := time.AfterFunc(d.pullIdle, func() { cancel(errPullSilent) })
	defer idle.Stop()
	silent := func(err error) error {
		if context.Cause(ctx) == errPullSilent {
			return driver.Mark(driver.ErrUnavailable, fmt.Errorf("pull image %s: the engine gave %s within %s: %w", ref, errPullSilent, d.pullIdle, err))
		}
		return nil
	}
	rc, err := d.cli.ImagePull(ctx, ref, image.PullOptions{})
	if serr := silent(err); serr != nil {
		return serr
	}
	if client.IsErrConnectionFailed(err) {
		return driver.Mark(driver.ErrUnavailable, fmt.Errorf("pull image %s: %w", ref, err))
	}
	if err != nil {
		return driver.Mark(driver.ErrImagePull, fmt.Errorf("pull image %s: %w", ref, err))
	}
	defer rc.Close()
	if err := jsonStreamError(progress{r: rc, idle: idle, d: d.pullIdle}); err != nil {
		if serr := silent(err); serr != nil {
			return serr
		}
		return driver.Mark(driver.ErrImagePull, fmt.Errorf("pull image %s: %w", ref, err))
	}
	return nil
}

// progress is a pull's stream of progress, each read of which gives the
// pull idle more time.
type progress struct {
	r    io.Reader
	idle *time.Timer
	d    time.Duration
}

func (p progress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.idle.Reset(p.d)
	}
	return n, err
}

// jsonStreamError reads a JSON message stream (pull, build) to its end and
// returns the error it reports, if any.
func jsonStreamError(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
	}
}

// containerSpec maps a Spec to the engine's container and host configs.
func containerSpec(s driver.Spec, network, installation string) (*container.Config, *container.HostConfig, error) {
	if s.Image == "" {
		return nil, nil, fmt.Errorf("%w: no image", driver.ErrInvalidSpec)
	}
	if s.Name == "" {
		return nil, nil, fmt.Errorf("%w: no name", driver.ErrInvalidSpec)
	}
	labels := maps.Clone(s.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelManaged] = installation
	labels[LabelJobID] = s.JobID
	labels[LabelRole] = string(s.Role)
	labels[LabelIndex] = strconv.Itoa(s.Index)
	labels[LabelQueue] = s.Queue
	env := make([]string, 0, len(s.Env))
	for k, v := range s.Env {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	cfg := &container.Config{
		Image:      s.Image,
		Entrypoint: s.Command,
		Cmd:        s.Args,
		WorkingDir: s.WorkingDir,
		Env:        env,
		Labels:     labels,
	}
	hc := &container.HostConfig{NetworkMode: container.NetworkMode(network)}
	if s.Resources.CPU != "" {
		q, err := resource.ParseQuantity(s.Resources.CPU)
		if err != nil || q.Sign() < 0 {
			return nil, nil, fmt.Errorf("%w: cpu %q is not a quantity", driver.ErrInvalidSpec, s.Resources.CPU)
		}
		hc.NanoCPUs = q.MilliValue() * 1_000_000
	}
	if s.Resources.Memory != "" {
		q, err := resource.ParseQuantity(s.Resources.Memory)
		if err != nil || q.Sign() < 0 {
			return nil, nil, fmt.Errorf("%w: memory %q is not a quantity", driver.ErrInvalidSpec, s.Resources.Memory)
		}
		hc.Memory = q.Value()
	}
	if s.Resources.GPU > 0 {
		hc.DeviceRequests = []container.DeviceRequest{{Count: s.Resources.GPU, Capabilities: [][]string{{"gpu"}}}}
	}
	for _, st := range s.Storages {
		m, err := mountFor(st)
		if err != nil {
			return nil, nil, err
		}
		hc.Mounts = append(hc.Mounts, m)
	}
	return cfg, hc, nil
}

func mountFor(st driver.Storage) (mount.Mount, error) {
	if !strings.HasPrefix(st.MountPath, "/") {
		return mount.Mount{}, fmt.Errorf("%w: storage %q: mount path %q is not absolute", driver.ErrInvalidSpec, st.Name, st.MountPath)
	}
	m := mount.Mount{Target: st.MountPath, ReadOnly: st.ReadOnly}
	switch st.Type {
	case driver.StorageHostPath:
		if !strings.HasPrefix(st.Source, "/") {
			return mount.Mount{}, fmt.Errorf("%w: storage %q: host path %q is not absolute", driver.ErrInvalidSpec, st.Name, st.Source)
		}
		m.Type, m.Source = mount.TypeBind, st.Source
	case driver.StorageEmptyDir:
		m.Type = mount.TypeVolume // anonymous: removed with the container
	case driver.StoragePVC:
		if st.Source == "" {
			return mount.Mount{}, fmt.Errorf("%w: storage %q: pvc needs a volume name as source", driver.ErrInvalidSpec, st.Name)
		}
		m.Type, m.Source = mount.TypeVolume, st.Source
	case driver.StorageNFS:
		server, path, ok := strings.Cut(st.Source, ":")
		if !ok || server == "" || !strings.HasPrefix(path, "/") {
			return mount.Mount{}, fmt.Errorf("%w: storage %q: nfs source %q is not server:/path", driver.ErrInvalidSpec, st.Name, st.Source)
		}
		opts := "addr=" + server
		if st.ReadOnly {
			opts += ",ro"
		}
		// One named volume per export and mode, shared by the instances
		// that mount it: the engine creates it on first use.
		m.Type, m.Source = mount.TypeVolume, "rm-nfs-"+nfsHash(st.Source+"|"+opts)
		m.VolumeOptions = &mount.VolumeOptions{DriverConfig: &mount.Driver{
			Name:    "local",
			Options: map[string]string{"type": "nfs", "o": opts, "device": ":" + path},
		}}
	default:
		return mount.Mount{}, fmt.Errorf("%w: storage %q: unknown type %q", driver.ErrInvalidSpec, st.Name, st.Type)
	}
	return m, nil
}

func nfsHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:12]
}

// refFromLabels recovers a Ref from the labels of a container of this
// driver's installation; another's is not ok.
func (d *Driver) refFromLabels(l map[string]string) (driver.Ref, bool) {
	if l[LabelManaged] != d.installation || l[LabelJobID] == "" {
		return driver.Ref{}, false
	}
	idx, err := strconv.Atoi(l[LabelIndex])
	if err != nil {
		return driver.Ref{}, false
	}
	return driver.Ref{JobID: l[LabelJobID], Role: driver.Role(l[LabelRole]), Index: idx}, true
}

// oomInside is the message of a container that exited 0 after the kernel
// killed one of its processes at its memory limit.
const oomInside = "out of memory: the kernel killed a process of the container at its memory limit"

// statusOf maps an inspected container to a Status.
func statusOf(ref driver.Ref, info container.InspectResponse) driver.Status {
	st := driver.Status{Ref: ref, State: driver.Pending}
	if info.ContainerJSONBase == nil || info.State == nil {
		return st
	}
	s := info.State
	st.StartedAt = parseTime(s.StartedAt)
	switch s.Status {
	case container.StateRunning, container.StatePaused, container.StateRestarting:
		st.State = driver.Running
	case container.StateExited, container.StateDead:
		code := s.ExitCode
		st.ExitCode = &code
		st.FinishedAt = parseTime(s.FinishedAt)
		st.State = driver.Succeeded
		// The engine sets OOMKilled when the kernel killed any process of
		// the container at its memory limit: the instance did not do all
		// its work even when its main process went on and exited 0.
		if code != 0 || s.Status == container.StateDead || s.OOMKilled {
			st.State = driver.Failed
		}
		switch {
		case s.OOMKilled && code == 0:
			st.Message = oomInside
		case s.OOMKilled:
			st.Message = "out of memory"
		case s.Error != "":
			st.Message = s.Error
		}
	case container.StateRemoving:
		// Killed to be removed: by Cleanup (the launcher stops it then),
		// else by hand; how it would have ended is not known.
		st.State, st.Message, st.Reason = driver.Failed, "container removed", driver.ReasonLost
		if st.FinishedAt = parseTime(s.FinishedAt); st.FinishedAt.IsZero() {
			st.FinishedAt = time.Now()
		}
	default: // created
		if s.Error != "" {
			st.Message = s.Error
		}
	}
	return st
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t
}

// managedFilter selects the containers of this driver's installation.
func (d *Driver) managedFilter(extra ...filters.KeyValuePair) filters.Args {
	return filters.NewArgs(append([]filters.KeyValuePair{filters.Arg("label", LabelManaged+"="+d.installation)}, extra...)...)
}

// eventLoop follows the engine's events until ctx ends, reconnecting and
// resyncing after every error. It closes tried once the first resync has
// ended, well or not.
func (d *Driver) eventLoop(ctx context.Context, tried chan<- struct{}) {
	defer close(d.loopDone)
	since := time.Now()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		f := d.managedFilter(filters.Arg("type", string(events.ContainerEventType)))
		// Replaying from a little before now closes the gap between the
		// resync below and the stream being established.
		evs, errs := d.cli.Events(ctx, events.ListOptions{
			Since:   strconv.FormatFloat(float64(since.Add(-time.Second).UnixNano())/1e9, 'f', 9, 64),
			Filters: f,
		})
		err := d.resync(ctx)
		if tried != nil {
			close(tried)
			tried = nil
		}
		for err == nil {
			select {
			case <-ctx.Done():
				return
			case err = <-errs:
			case ev := <-evs:
				since = time.Unix(0, ev.TimeNano)
				d.handle(ctx, ev)
				backoff = 100 * time.Millisecond
			}
		}
		if ctx.Err() != nil {
			return
		}
		d.log.Warn("docker event stream interrupted; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// handle turns one container event into status updates.
func (d *Driver) handle(ctx context.Context, ev events.Message) {
	ref, ok := d.refFromLabels(ev.Actor.Attributes)
	if !ok {
		return
	}
	// A die after a start seen here with no kill in between is the
	// container's own end: every signal sent to it (a Stop's SIGTERM and
	// SIGKILL, docker stop or kill, a removal's kill) comes as a kill event
	// before its die, and the stream delivers them in order, replayed after
	// a reconnection. One that started before this driver watched (a
	// launcher started again) may have been sent its kill unseen: not told.
	exited := false
	switch ev.Action {
	case events.ActionStart:
		d.unkilled[ev.Actor.ID] = true
	case events.ActionKill, events.ActionDestroy:
		delete(d.unkilled, ev.Actor.ID)
	case events.ActionDie:
		exited = d.unkilled[ev.Actor.ID]
		delete(d.unkilled, ev.Actor.ID)
	}
	switch ev.Action {
	case events.ActionStart, events.ActionDie:
		info, err := d.cli.ContainerInspect(ctx, ev.Actor.ID)
		if err != nil {
			if cerrdefs.IsNotFound(err) {
				if code, err := strconv.Atoi(ev.Actor.Attributes["exitCode"]); err == nil && ev.Action == events.ActionDie {
					st := driver.Status{Ref: ref, State: driver.Succeeded, ExitCode: &code, FinishedAt: time.Unix(0, ev.TimeNano)}
					if code != 0 {
						st.State = driver.Failed
						if exited {
							st.Reason = driver.ReasonExited
						}
					}
					d.tracker.Update(st)
				}
				return
			}
			d.log.Warn("inspect container", "id", ev.Actor.ID, "err", err)
			return
		}
		st := statusOf(ref, info)
		if exited && ev.Action == events.ActionDie && st.State == driver.Failed && st.Reason == "" {
			st.Reason = driver.ReasonExited
		}
		if ev.Action == events.ActionStart && st.State != driver.Running {
			// It already ended: still report that it ran.
			d.tracker.Update(driver.Status{Ref: ref, State: driver.Running, StartedAt: st.StartedAt})
		}
		d.tracker.Update(st)
	case events.ActionDestroy:
		d.tracker.Lost(ref, "container removed")
	}
}

// resync brings known in line with the engine's containers.
func (d *Driver) resync(ctx context.Context) error {
	sts, err := d.list(ctx, d.managedFilter())
	if err != nil {
		return err
	}
	present := make(map[driver.Ref]bool, len(sts))
	for _, st := range sts {
		present[st.Ref] = true
		d.tracker.Update(st)
	}
	for _, ref := range d.tracker.Known() {
		if !present[ref] {
			d.tracker.Lost(ref, "container removed")
		}
	}
	return nil
}

// list inspects every container matching f.
func (d *Driver) list(ctx context.Context, f filters.Args) ([]driver.Status, error) {
	cs, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]driver.Status, 0, len(cs))
	for _, c := range cs {
		ref, ok := d.refFromLabels(c.Labels)
		if !ok || c.State == container.StateCreated {
			// Created and never started: Start left it so (the launcher
			// died between its create and its start), or is about to start
			// it or remove it. It does not start on its own, so it is not
			// reported: the instance is missing, and the launcher's next
			// Start starts it (startExisting).
			continue
		}
		info, err := d.cli.ContainerInspect(ctx, c.ID)
		if cerrdefs.IsNotFound(err) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("inspect container %s: %w", c.ID, err)
		}
		out = append(out, statusOf(ref, info))
	}
	return out, nil
}

// ownContainer returns the id of ref's container, or "" when there is none.
func (d *Driver) ownContainer(ctx context.Context, r driver.Ref) (string, error) {
	info, err := d.cli.ContainerInspect(ctx, r.Name())
	if cerrdefs.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if got, ok := d.refFromLabels(info.Config.Labels); !ok || got != r {
		return "", nil // a container of someone else with that name
	}
	return info.ID, nil
}

// Stop sends SIGTERM, then SIGKILL after the stop timeout, and returns when
// the container has ended.
func (d *Driver) Stop(ctx context.Context, r driver.Ref) error {
	id, err := d.ownContainer(ctx, r)
	if err != nil {
		return fmt.Errorf("docker: stop %s: %w", r, err)
	}
	if id == "" {
		return nil
	}
	secs := int((d.grace + time.Second - 1) / time.Second) // the engine counts whole seconds
	if err := d.cli.ContainerStop(ctx, id, container.StopOptions{Timeout: &secs}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("docker: stop %s: %w", r, err)
	}
	return nil
}

// Cleanup force-removes the job's containers and their anonymous volumes.
func (d *Driver) Cleanup(ctx context.Context, jobID string) error {
	cs, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: d.managedFilter(filters.Arg("label", LabelJobID+"="+jobID))})
	if err != nil {
		return fmt.Errorf("docker: cleanup %s: list containers: %w", jobID, err)
	}
	var errs []error
	for _, c := range cs {
		ref, ok := d.refFromLabels(c.Labels)
		if !ok || ref.JobID != jobID {
			continue
		}
		err := d.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !cerrdefs.IsNotFound(err) && !strings.Contains(err.Error(), "already in progress") {
			errs = append(errs, fmt.Errorf("remove container %s: %w", c.ID, err))
			continue
		}
		d.tracker.Gone(ref, "removed by cleanup")
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("docker: cleanup %s: %w", jobID, err)
	}
	return nil
}

// List asks the engine for every container of this installation.
func (d *Driver) List(ctx context.Context) ([]driver.Status, error) {
	sts, err := d.list(ctx, d.managedFilter())
	if err != nil {
		return nil, fmt.Errorf("docker: %w", err)
	}
	return sts, nil
}

// Watch reports the known containers, then every change.
func (d *Driver) Watch(ctx context.Context) (<-chan driver.Status, error) {
	return d.tracker.Subscribe(ctx), nil
}

// Logs returns the container's stdout and stderr, demultiplexed.
func (d *Driver) Logs(ctx context.Context, r driver.Ref) (io.ReadCloser, error) {
	id, err := d.ownContainer(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("docker: logs of %s: %w", r, err)
	}
	if id == "" {
		return nil, fmt.Errorf("docker: logs of %s: %w", r, driver.ErrNotFound)
	}
	rc, err := d.cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return nil, fmt.Errorf("docker: logs of %s: %w", r, err)
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := stdcopy.StdCopy(pw, pw, rc)
		rc.Close()
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// Close stops following events; containers keep running.
func (d *Driver) Close() error {
	var err error
	d.closeOnce.Do(func() {
		d.tracker.Close()
		d.stopLoop()
		<-d.loopDone
		if cerr := d.cli.Close(); cerr != nil {
			err = fmt.Errorf("docker: close client: %w", cerr)
		}
	})
	return err
}
