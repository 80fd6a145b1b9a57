// Package driver is the launcher's contract with container runtimes: what an
// instance is (Spec, Ref), what can be asked of a runtime (Driver) and how a
// runtime is configured (per-type config, validation, redaction).
//
// It owns no implementation and must not import any of them, nor any runtime
// SDK: the API service validates plugin configs with this package alone. The
// implementations live in the sub-packages kubernetes, docker, local and
// simulated; registry wires them explicitly.
package driver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Role is the part an instance plays in a job or deployment.
type Role string

// The roles the launcher starts.
const (
	RoleController     Role = "controller"
	RoleWorker         Role = "worker"
	RolePostController Role = "post-controller"
	RoleReplica        Role = "replica"
)

// Ref identifies one instance. JobID is a deployment id for replicas.
type Ref struct {
	JobID string
	Role  Role
	Index int
}

func (r Ref) String() string {
	return r.JobID + "/" + string(r.Role) + "/" + strconv.Itoa(r.Index)
}

// maxNameLen is the length limit of a DNS-1123 label, which Kubernetes
// imposes on pod names that become hostnames, and which Docker accepts.
const maxNameLen = 63

// Name returns a unique DNS-1123 label (lower-case alphanumerics and '-', at
// most 63 characters, alphanumeric at both ends) for the instance:
// "<job>-<role>-<index>". When the job id is not already a valid label part
// or is too long, it is sanitized and shortened and a hash of the original id
// is appended, so that distinct refs never share a name.
func (r Ref) Name() string {
	suffix := "-" + SanitizeName(string(r.Role), 20) + "-" + strconv.Itoa(r.Index)
	job := r.JobID
	if isNamePart(job) && len(job)+len(suffix) <= maxNameLen {
		return job + suffix
	}
	sum := sha256.Sum256([]byte(r.JobID))
	hash := hex.EncodeToString(sum[:])[:8]
	room := maxNameLen - len(suffix) - len(hash) - 1
	prefix := SanitizeName(job, room)
	if prefix == "" {
		return "i" + hash + suffix
	}
	return prefix + "-" + hash + suffix
}

// isNamePart reports whether s is usable verbatim as the start of a name.
func isNamePart(s string) bool {
	if s == "" || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// SanitizeName lower-cases s, replaces every character outside [a-z0-9-] by
// '-', cuts it to max characters and trims '-' at both ends. It may return "".
func SanitizeName(s string, max int) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			b[i] = '-'
		}
	}
	if len(b) > max {
		b = b[:max]
	}
	return strings.Trim(string(b), "-")
}

// Spec is everything a driver needs to start one instance. The launcher
// builds it; drivers use what their runtime can express and ignore the rest
// (the local driver has no image, the simulated one runs nothing).
type Spec struct {
	Ref
	// Name is Ref.Name() (empty means that); drivers name containers and
	// pods after it and find them again through Ref.Name().
	Name string
	// Queue is the queue id, used for labels.
	Queue string

	Image      string
	Command    []string // entrypoint; empty keeps the image's
	Args       []string
	WorkingDir string
	// Env is the final merged environment (RM_JOB_ID etc. already in it).
	Env map[string]string

	Resources      Resources
	Storages       []Storage
	NodeSelector   map[string]string
	Tolerations    []Toleration
	Labels         map[string]string
	Annotations    map[string]string
	ServiceAccount string

	// Owner, when set, is the instance whose removal removes this one too
	// (kubernetes: workers are owned by the controller pod so deleting it
	// cascades). The owner must have been started first.
	Owner *Ref

	// RunSeconds overrides the simulated driver's run_seconds for this job.
	RunSeconds *float64
}

// Resources are per-instance limits. CPU and Memory are Kubernetes
// quantities ("500m", "4Gi"); empty means no limit, as does GPU 0.
type Resources struct {
	CPU    string
	Memory string
	GPU    int
}

// StorageType is how a storage is provided.
type StorageType string

// The storage types a queue may declare.
const (
	StoragePVC      StorageType = "pvc"
	StorageHostPath StorageType = "host_path"
	StorageEmptyDir StorageType = "empty_dir"
	StorageNFS      StorageType = "nfs"
)

// Storage is a volume mounted into an instance. Source is the claim name
// (pvc), the host path (host_path), "server:/path" (nfs) or empty (empty_dir).
type Storage struct {
	Name      string
	Type      StorageType
	Source    string
	MountPath string
	ReadOnly  bool
}

// Toleration mirrors a Kubernetes toleration.
type Toleration struct {
	Key      string
	Operator string // Equal or Exists
	Value    string
	Effect   string // NoSchedule, PreferNoSchedule or NoExecute
}

// State is the lifecycle state of an instance.
type State string

// Instance states. Succeeded and Failed are final.
const (
	Pending   State = "Pending"
	Running   State = "Running"
	Succeeded State = "Succeeded"
	Failed    State = "Failed"
)

// Final reports whether no further change follows s.
func (s State) Final() bool { return s == Succeeded || s == Failed }

// Status is what a driver knows about one instance. ExitCode is set once
// the instance has ended with a known code; a stopped instance is Failed.
type Status struct {
	Ref
	State    State
	ExitCode *int
	Message  string
	// Reason, when set, is a machine-readable cause of the state, one of
	// the Reason constants; Message says more.
	Reason     string
	StartedAt  time.Time
	FinishedAt time.Time
	// Removed: the ended instance no longer exists in the runtime (a
	// Reaper removed it); the rest is its final status, repeated. Only a
	// Reaper reports it.
	Removed bool
}

// Reasons a driver may report in Status.Reason.
const (
	// ReasonImagePullFailed: the instance is Pending because its image
	// cannot be pulled yet (kubernetes: ErrImagePull, ImagePullBackOff,
	// ErrImageInspect). The launcher reports it as the job condition
	// reason of the same name.
	ReasonImagePullFailed = "ImagePullFailed"
	// ReasonLost: the instance ended Failed because it no longer exists
	// in the runtime, removed before it ended by someone else than the
	// launcher (a container removed by hand). The launcher records it
	// lost, as one no driver knows any more.
	ReasonLost = "Lost"
	// ReasonNeverRuns: the instance ended Failed without starting because
	// the runtime will never run its spec as it stands (kubernetes: an
	// image name the kubelet cannot parse, InvalidImageName, or pull
	// policy Never and the image not on the node, ErrImageNeverPull). A
	// job fails with it as with any failed start; a deployment's replica
	// shows state failed, not restarting.
	ReasonNeverRuns = "NeverRuns"
	// ReasonExited: the instance ended Failed on its own, before any stop
	// of the driver's reached it. The launcher records it failed even when
	// it is stopping the job's instances meanwhile (the others of a failed
	// job, a cancelled job's); a driver that cannot tell leaves Reason
	// empty, and a failure while stopping is recorded stopped.
	ReasonExited = "Exited"
)

// Driver runs instances on one container runtime. All methods are safe for
// concurrent use.
type Driver interface {
	// Start creates and starts the instance. Starting an instance that
	// exists (running or ended) is a no-op.
	Start(ctx context.Context, s Spec) error
	// Stop kills the instance; it then ends Failed. Stopping an ended or
	// unknown instance returns nil.
	Stop(ctx context.Context, r Ref) error
	// Cleanup stops and removes everything of the job: containers, pods,
	// processes and files, except logs. It is idempotent.
	Cleanup(ctx context.Context, jobID string) error
	// List returns every instance the driver manages that still exists,
	// including those started before a launcher restart, so that the
	// launcher can reconcile.
	List(ctx context.Context) ([]Status, error)
	// Watch first sends the current status of every existing instance, then
	// every state change of every instance (re-attached ones included),
	// until ctx ends or the driver is closed; then the channel is closed.
	// Events are never dropped; a slow reader only delays its own channel.
	Watch(ctx context.Context) (<-chan Status, error)
	// Logs returns the instance's combined stdout and stderr so far, or an
	// error wrapping ErrNotSupported where the runtime cannot provide them.
	Logs(ctx context.Context, r Ref) (io.ReadCloser, error)
	// Close releases the driver's resources. Instances keep running: a new
	// driver on the same backend re-attaches to them.
	Close() error
}

// Reaper is implemented by drivers whose runtime should not keep an
// instance once it has ended (kubernetes: a finished pod still shows in the
// namespace, so a queue's limit would not bound the pods users see). The
// launcher calls Reap for an ended instance once the job record holds how
// it ended (exit code, message), and writes the job's final status only
// after the driver reported every such instance Removed; so the leases of
// a job, and the next job's start, wait until its instances are gone.
type Reaper interface {
	// Reap removes the instance r if it has ended; when it is gone, Watch
	// reports its final status once more with Removed set, and List no
	// longer returns it. Reaping an instance that runs (or is already
	// removed, or unknown) does nothing and returns nil.
	Reap(ctx context.Context, r Ref) error
}

// Purger is implemented by drivers that keep something of a job after its
// Cleanup (the local driver keeps its instances' logs, to be read after the
// cleanup). Purge removes the job's everything, that too; the launcher
// calls it once the job itself is deleted, when nothing can read it any
// more. It is idempotent, and cheap when there is nothing of the job.
type Purger interface {
	Purge(ctx context.Context, jobID string) error
}

// Unordered is implemented by drivers on which a job's instances may start
// in any order: none needs another to exist first (kubernetes does: a
// worker's owner reference names the controller pod, Spec.Owner; docker's
// containers may look each other up by name). The launcher starts such a
// job's controller together with its workers, not before them, so the
// workers do not wait for the controller's start after the job is admitted.
type Unordered interface {
	// UnorderedStarts marks the driver; it is never called.
	UnorderedStarts()
}

// Options are what every driver gets from the launcher besides its config.
type Options struct {
	// DataDir is the launcher's data directory; drivers that keep files
	// use a sub-directory named after their type.
	DataDir string
	// Logger defaults to slog.Default() when nil.
	Logger *slog.Logger
	// Installation identifies the installation (the store) the launcher
	// belongs to. Drivers whose runtime several installations may share
	// (docker) label what they make with it and see nothing else; the
	// docker driver requires it.
	Installation string
}

// Log returns o.Logger, or slog.Default() when it is nil.
func (o Options) Log() *slog.Logger {
	if o.Logger == nil {
		return slog.Default()
	}
	return o.Logger
}

// Factory builds a driver from its plugin config.
type Factory func(config json.RawMessage, opts Options) (Driver, error)

// Sentinel errors of the contract.
var (
	ErrNotSupported  = errors.New("driver: not supported")
	ErrInvalidConfig = errors.New("driver: invalid config")
	ErrInvalidSpec   = errors.New("driver: invalid spec")
	ErrNotFound      = errors.New("driver: instance not found")
	// ErrImagePull: Start failed because the image cannot be pulled (no
	// such image, registry unreachable). The launcher retries it with
	// back-off and reports it as the job's Started condition, reason
	// ImagePullFailed, until the queue's start timeout.
	ErrImagePull = errors.New("driver: image cannot be pulled")
	// ErrUnavailable: Start failed because the runtime cannot be reached;
	// reported as reason RuntimeUnavailable, retried likewise.
	ErrUnavailable = errors.New("driver: runtime unavailable")
)

// Mark returns err marked as kind (ErrImagePull, ErrUnavailable...):
// errors.Is(Mark(kind, err), kind) holds, and its text is err's alone,
// so that what the runtime said reaches the job as it is.
func Mark(kind, err error) error {
	if err == nil {
		return nil
	}
	return marked{kind: kind, err: err}
}

type marked struct{ kind, err error }

func (m marked) Error() string   { return m.err.Error() }
func (m marked) Unwrap() []error { return []error{m.kind, m.err} }
