// Package kubernetes is a driver that runs each instance as a Pod in one
// namespace, through client-go.
//
// A pod is named Spec.Name (a DNS-1123 label), restartPolicy Never, with one
// container "instance" (Command, Args, WorkingDir, Env, requests = limits
// from the CPU and memory quantities, GPUs as nvidia.com/gpu), the node
// selector, tolerations, service account and volumes of the spec (pvc →
// PersistentVolumeClaim, host_path → HostPath, empty_dir → EmptyDir, nfs →
// NFS from "server:/path"). Labels rm.avxrm.io/{managed,job-id,role,index,
// queue} select pods; label values are sanitized to the 63-character label
// syntax, so the exact job id and queue are kept in annotations of the same
// names, and those are what the driver reads back. A worker (Spec.Owner
// set) carries an owner reference to its controller's pod, so that the
// garbage collector deletes the workers when someone else deletes the
// controller. Without blockOwnerDeletion: the driver never deletes in the
// foreground, and setting it would need update on pods/finalizers where the
// OwnerReferencesPermissionEnforcement admission plugin runs (OpenShift).
// The launcher needs create, get, list, watch and delete on pods and get
// on pods/log, nothing more.
//
// Status comes from a shared informer on the managed pods: Pending →
// Running (the container runs) → Succeeded or Failed with the exit code of
// the terminated container; a pod that is deleted, or starts terminating,
// before it ended is Failed with a message, and lost (driver.ReasonLost)
// when the driver did not ask for it (kubectl delete, a drain's eviction,
// the taint manager, a preemption: deletions). Stop and Cleanup delete pods
// (background propagation); a terminating pod no longer counts in List,
// and Start refuses to take one for a new instance of its name.
//
// Errors of a pod's creation: 422 (the API server's validation) is
// driver.ErrInvalidSpec, no answer, 429, 500, 503 and 504 are
// driver.ErrUnavailable, others (403: RBAC, quota, LimitRange, webhooks)
// plain, retried by the launcher; all carry the server's words.
// The driver is a driver.Reaper: Reap deletes a pod that has ended (the
// launcher asks once the job record holds how it ended), and when the pod
// is gone Watch repeats its final status with Removed set; so a finished
// job leaves no pod behind, and its logs go with its pods.
// Stopping a controller deletes its workers itself: the driver never
// relies on the garbage collector (the owner references only make a
// deletion of the controller by someone else cascade).
//
// New checks with SelfSubjectAccessReviews that its identity may do all
// of the above (CheckAccess) and fails naming what is missing, or at once
// when the API server cannot be reached (driver.ErrUnavailable) or refuses
// the credentials. A waiting
// container whose image cannot be pulled is reported Pending with
// Reason driver.ReasonImagePullFailed and the kubelet's message; one whose
// image the kubelet will never try (InvalidImageName, ErrImageNeverPull)
// is reported Failed with Reason driver.ReasonNeverRuns and the kubelet's
// reason and message, not started: the pod's StartTime is when the
// kubelet took it, not when its container started.
//
// Restart policy: pods outlive the launcher. A new driver's informer lists
// the managed pods, so List and Watch report them like its own.
//
// It imports the driver contract and client-go only.
package kubernetes

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
	"math"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/distribution/reference"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/internal/hub"
)

var (
	_ driver.Driver = (*Driver)(nil)
	_ driver.Reaper = (*Driver)(nil)
)

// Labels (and, for job id and queue, annotations) of managed pods.
const (
	LabelManaged = "rm.avxrm.io/managed"
	LabelJobID   = "rm.avxrm.io/job-id"
	LabelRole    = "rm.avxrm.io/role"
	LabelIndex   = "rm.avxrm.io/index"
	LabelQueue   = "rm.avxrm.io/queue"

	// ContainerName is the name of the one container of an instance pod.
	ContainerName = "instance"
	// GPUResource is how GPUs are requested.
	GPUResource corev1.ResourceName = "nvidia.com/gpu"
)

// Option customizes a Driver.
type Option func(*Driver)

// WithGracePeriod sets the grace period of pod deletions by Stop and
// Cleanup; without it the pod's own (30s by default) applies.
func WithGracePeriod(d time.Duration) Option {
	return func(dr *Driver) {
		secs := int64(d / time.Second)
		dr.grace = &secs
	}
}

// WithSyncTimeout bounds how long NewWithClient waits for the first list
// of pods (default 30s); after it, statuses follow once the list succeeds.
func WithSyncTimeout(d time.Duration) Option {
	return func(dr *Driver) { dr.syncTimeout = d }
}

// Driver is the kubernetes driver.
type Driver struct {
	cs          kubernetes.Interface
	ns          string
	log         *slog.Logger
	grace       *int64
	syncTimeout time.Duration

	tracker   hub.Tracker
	pulls     pullFailures // failed image pulls per pod, for the messages
	deletions deletions    // the pods this driver deleted, to tell lost ones
	// retired are the pods Cleanup removed, until they are gone: what
	// they still report (a stopped program's 137 at the end of its grace
	// period) is no longer their instance's, whose name a job's next
	// attempt starts afresh.
	retired   deletions
	owners    owners // the controllers' UIDs, for their workers' starts
	factory   informers.SharedInformerFactory
	pods      listersv1.PodNamespaceLister // the informer's cache
	stopInf   chan struct{}
	closeOnce sync.Once
}

// New is the driver.Factory of the kubernetes driver: it connects in
// cluster or with the kubeconfig (content or path) of the config.
func New(config json.RawMessage, opts driver.Options) (driver.Driver, error) {
	cfg, err := driver.ParseKubernetesConfig(config)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	rc, err := restConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: create clientset: %w", err)
	}
	ns := cfg.Namespace
	if ns == "" && cfg.InCluster {
		if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
			ns = strings.TrimSpace(string(b))
		}
	}
	if ns == "" {
		ns = "default"
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return nil, fmt.Errorf("kubernetes: %w", &driver.FieldError{Field: "namespace", Message: strings.Join(errs, "; ")})
	}
	// The access check comes first: it is also the first request, and an
	// API server that cannot be reached, or refuses the credentials, fails
	// New at once with why. Before, New waited the informer's 30 s sync
	// timeout, then succeeded with a driver whose every call failed.
	probe := &Driver{cs: cs, ns: ns, log: opts.Log().With("driver", "kubernetes", "namespace", ns)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := probe.CheckAccess(ctx); err != nil {
		return nil, err
	}
	return NewWithClient(cs, ns, opts)
}

// unreachable reports whether err is a failure to get any answer from the
// API server (refused or reset connections, a name that does not resolve,
// a certificate not trusted, no answer in time), not an answer.
func unreachable(err error) bool {
	var st apierrors.APIStatus
	return err != nil && !errors.As(err, &st)
}

// unavailable reports whether err says the API server cannot serve the
// request now but may later: unreachable, or answering 429 (priority and
// fairness), 500 (etcd, or a webhook that fails closed), 503 or 504.
// Start marks such errors driver.ErrUnavailable, which the launcher
// reports as RuntimeUnavailable and retries, and Logs too (503 to the
// API's client, with Retry-After, not 500).
func unavailable(err error) bool {
	return unreachable(err) || apierrors.IsTooManyRequests(err) || apierrors.IsInternalError(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err)
}

// access is one permission the driver uses in its namespace.
type access struct {
	verb, resource, subresource string
}

func (a access) String() string {
	if a.subresource != "" {
		return a.verb + " " + a.resource + "/" + a.subresource
	}
	return a.verb + " " + a.resource
}

// needed lists every API call the driver makes, as RBAC sees them.
var needed = []access{
	{verb: "create", resource: "pods"},
	{verb: "get", resource: "pods"},
	{verb: "list", resource: "pods"},
	{verb: "watch", resource: "pods"},
	{verb: "delete", resource: "pods"},
	{verb: "get", resource: "pods", subresource: "log"},
}

// CheckAccess asks the API server (SelfSubjectAccessReview) whether the
// driver's identity may do everything the driver does in its namespace,
// and returns an error naming each missing verb and resource, so that a
// Role lacking a rule fails when the plugin is loaded rather than at the
// first job (or, for list and watch, silently in the informer). When the
// server does not answer the reviews, it logs that and returns nil: the
// operations themselves still fail with the server's Forbidden error.
func (d *Driver) CheckAccess(ctx context.Context) error {
	var missing []string
	for _, a := range needed {
		r, err := d.cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
			Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{
				Namespace: d.ns, Verb: a.verb, Resource: a.resource, Subresource: a.subresource,
			}},
		}, metav1.CreateOptions{})
		switch {
		case unreachable(err):
			return driver.Mark(driver.ErrUnavailable, fmt.Errorf("kubernetes: cannot reach the API server: %w", err))
		case apierrors.IsUnauthorized(err):
			return fmt.Errorf("kubernetes: the API server refused the driver's credentials (the kubeconfig's user, or in cluster the service account's token): %w", err)
		case err != nil:
			d.log.Warn("cannot check the driver's permissions; operations will tell", "err", err)
			return nil
		}
		if !r.Status.Allowed {
			missing = append(missing, a.String())
		}
	}
	if len(missing) == 0 {
		return nil
	}
	who := "the driver's identity"
	if r, err := d.cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{}); err == nil && r.Status.UserInfo.Username != "" {
		who = r.Status.UserInfo.Username
	}
	hint := "grant them in the Role bound to it"
	if len(missing) == len(needed) {
		// Nothing at all: most often the plugin's namespace is not the
		// one of the Role and RoleBinding, or does not exist (which the
		// driver cannot tell: namespaces are not its to read).
		hint = "none is granted: check that the namespace exists and is the one of the Role and RoleBinding of " + who
	}
	return fmt.Errorf("kubernetes: %s may not %s in namespace %s (RBAC); %s",
		who, strings.Join(missing, ", "), d.ns, hint)
}

// clientQPS is the driver's limit on its own requests to the API server, a
// second, unless the plugin's config sets api_qps; the burst is twice the
// rate unless it sets api_burst. These are kube-scheduler's defaults, a
// client that also acts for every pod; the API server's priority and
// fairness still shields it from any one client. client-go's own default,
// 5 a second in bursts of 10, made a job of a controller and 100 workers
// take 38 s to start (201 requests then) and 20 s to clean up, where the
// same API server with no client limit took 0.13 and 0.31 s
// (BenchmarkAPIServerStartGang, docs/benchmarks.md).
const clientQPS = 50

func restConfig(cfg driver.KubernetesConfig) (*rest.Config, error) {
	rc, err := loadRestConfig(cfg)
	if err != nil {
		return nil, err
	}
	rc.QPS = clientQPS
	if cfg.APIQPS > 0 {
		rc.QPS = float32(cfg.APIQPS)
	}
	rc.Burst = cfg.APIBurst
	if rc.Burst == 0 {
		rc.Burst = max(1, int(math.Ceil(2*float64(rc.QPS))))
	}
	return rc, nil
}

func loadRestConfig(cfg driver.KubernetesConfig) (*rest.Config, error) {
	if cfg.InCluster {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config: %w", err)
		}
		return rc, nil
	}
	if kubeconfigContent(cfg.Kubeconfig) {
		rc, err := clientcmd.RESTConfigFromKubeConfig([]byte(cfg.Kubeconfig))
		if err != nil {
			return nil, fmt.Errorf("kubeconfig: %w", err)
		}
		return rc, nil
	}
	path := strings.TrimSpace(cfg.Kubeconfig)
	if _, err := os.Stat(path); err != nil && (path == "" || !strings.ContainsAny(path[:1], "/.~")) {
		// Not a file, and nothing like a path either: a secret pasted
		// whole (a token, a key), which the error must not repeat.
		return nil, errors.New("kubeconfig: neither the content of a kubeconfig (YAML, or JSON starting with '{') nor the path of an existing file")
	}
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig file: %w", err)
	}
	return rc, nil
}

// kubeconfigContent reports whether the config's kubeconfig is the content
// of a kubeconfig rather than a path to one: content in block YAML has
// several lines, and content in JSON (which kubectl reads too, and which a
// JSON plugin config may well carry on one line) or in flow YAML starts
// with '{'. No file path does either. Before, a one-line JSON kubeconfig
// was taken for a path, and the error ("stat {...}: no such file or
// directory") carried the whole secret, token and keys, into the logs and
// the job's conditions.
func kubeconfigContent(s string) bool {
	s = strings.TrimSpace(s)
	return strings.Contains(s, "\n") || strings.HasPrefix(s, "{")
}

// NewWithClient builds a driver on cs in namespace ("default" when empty)
// and waits (up to 30s, WithSyncTimeout) for its informer to list the
// existing pods.
func NewWithClient(cs kubernetes.Interface, namespace string, opts driver.Options, options ...Option) (*Driver, error) {
	if namespace == "" {
		namespace = "default"
	}
	if errs := validation.IsDNS1123Label(namespace); len(errs) > 0 {
		return nil, fmt.Errorf("kubernetes: %w", &driver.FieldError{Field: "namespace", Message: strings.Join(errs, "; ")})
	}
	d := &Driver{cs: cs, ns: namespace, log: opts.Log().With("driver", "kubernetes", "namespace", namespace), stopInf: make(chan struct{}), syncTimeout: 30 * time.Second}
	for _, o := range options {
		o(d)
	}
	d.factory = informers.NewSharedInformerFactoryWithOptions(cs, 0,
		informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = LabelManaged + "=true" }))
	inf := d.factory.Core().V1().Pods().Informer()
	d.pods = d.factory.Core().V1().Pods().Lister().Pods(namespace)
	// The reflector recovers by itself (it resumes a closed watch from its
	// resource version and re-lists after 410 Gone, logging nothing); it
	// calls this when a list or watch fails, e.g. Forbidden after a Role
	// changed under a running launcher, which would otherwise reach klog
	// only.
	if err := inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
		d.log.Warn("pod list/watch failed; statuses are stale until it recovers", "err", err)
	}); err != nil {
		return nil, fmt.Errorf("kubernetes: watch pods: %w", err)
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    d.observe,
		UpdateFunc: func(_, obj any) { d.observe(obj) },
		DeleteFunc: d.deleted,
	}); err != nil {
		return nil, fmt.Errorf("kubernetes: watch pods: %w", err)
	}
	d.factory.Start(d.stopInf)
	timeout := make(chan struct{})
	timer := time.AfterFunc(d.syncTimeout, func() { close(timeout) })
	defer timer.Stop()
	if !cache.WaitForCacheSync(timeout, inf.HasSynced) {
		d.log.Warn("pod informer not synced yet; statuses will follow")
	}
	return d, nil
}

var labelValueRE = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)

// LabelValue returns s when it is a valid label value, else a valid,
// unique stand-in: s with invalid characters replaced, cut, and a hash of
// s appended.
func LabelValue(s string) string {
	if len(s) <= validation.LabelValueMaxLength && labelValueRE.MatchString(s) {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '-'
		}
	}
	sum := sha256.Sum256([]byte(s))
	hash := hex.EncodeToString(sum[:])[:8]
	prefix := strings.Trim(string(b[:min(len(b), validation.LabelValueMaxLength-len(hash)-1)]), "-_.")
	if prefix == "" {
		return hash
	}
	return prefix + "-" + hash
}

func jobSelector(jobID string) string {
	return labels.Set{LabelManaged: "true", LabelJobID: LabelValue(jobID)}.String()
}

// refOf reads a managed pod's Ref back (annotations hold exact values).
func refOf(p *corev1.Pod) (driver.Ref, bool) {
	if p.Labels[LabelManaged] != "true" {
		return driver.Ref{}, false
	}
	job := p.Annotations[LabelJobID]
	idx, err := strconv.Atoi(p.Labels[LabelIndex])
	if job == "" || err != nil {
		return driver.Ref{}, false
	}
	return driver.Ref{JobID: job, Role: driver.Role(p.Labels[LabelRole]), Index: idx}, true
}

// podFor maps a Spec to its Pod. owner, when not nil, becomes the pod's
// owner reference.
func podFor(s driver.Spec, namespace string, owner *corev1.Pod) (*corev1.Pod, error) {
	name := s.Name
	if name == "" {
		name = s.Ref.Name()
	}
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return nil, fmt.Errorf("%w: pod name %q: %s", driver.ErrInvalidSpec, name, strings.Join(errs, "; "))
	}
	if s.Image == "" {
		return nil, fmt.Errorf("%w: no image", driver.ErrInvalidSpec)
	}
	// The kubelet parses the image as a name (pkg/kubelet/images) and leaves
	// a pod whose image it cannot parse waiting as InvalidImageName for ever:
	// refused here, the job fails at once with the reason instead of at its
	// start timeout. A bare 64-hex image id is one (Docker runs it); the API
	// refuses it on a kubernetes queue, but a queue's plugin may change.
	if _, err := reference.ParseNormalizedNamed(s.Image); err != nil {
		return nil, fmt.Errorf("%w: image %q: Kubernetes cannot run it (%v); give a name such as registry.example/sim:1.2 or registry.example/sim@sha256:<digest>",
			driver.ErrInvalidSpec, s.Image, err)
	}
	lbls := maps.Clone(s.Labels)
	if lbls == nil {
		lbls = map[string]string{}
	}
	for k, v := range lbls {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return nil, fmt.Errorf("%w: label key %q: %s", driver.ErrInvalidSpec, k, strings.Join(errs, "; "))
		}
		lbls[k] = LabelValue(v)
	}
	lbls[LabelManaged] = "true"
	lbls[LabelJobID] = LabelValue(s.JobID)
	lbls[LabelRole] = LabelValue(string(s.Role))
	lbls[LabelIndex] = strconv.Itoa(s.Index)
	lbls[LabelQueue] = LabelValue(s.Queue)
	ann := maps.Clone(s.Annotations)
	if ann == nil {
		ann = map[string]string{}
	}
	ann[LabelJobID] = s.JobID
	ann[LabelQueue] = s.Queue

	res, err := resourcesFor(s.Resources)
	if err != nil {
		return nil, err
	}
	env := make([]corev1.EnvVar, 0, len(s.Env))
	for k, v := range s.Env {
		env = append(env, corev1.EnvVar{Name: k, Value: v})
	}
	sort.Slice(env, func(i, j int) bool { return env[i].Name < env[j].Name })
	vols, mounts, err := volumesFor(s.Storages)
	if err != nil {
		return nil, err
	}
	tols, err := tolerationsFor(s.Tolerations)
	if err != nil {
		return nil, err
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: lbls, Annotations: ann},
		Spec: corev1.PodSpec{
			RestartPolicy:      corev1.RestartPolicyNever,
			NodeSelector:       maps.Clone(s.NodeSelector),
			Tolerations:        tols,
			ServiceAccountName: s.ServiceAccount,
			Volumes:            vols,
			Containers: []corev1.Container{{
				Name:         ContainerName,
				Image:        s.Image,
				Command:      s.Command,
				Args:         s.Args,
				WorkingDir:   s.WorkingDir,
				Env:          env,
				Resources:    res,
				VolumeMounts: mounts,
			}},
		},
	}
	if owner != nil {
		if owner.UID == "" {
			return nil, fmt.Errorf("owner pod %s has no uid", owner.Name)
		}
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: owner.Name, UID: owner.UID}}
	}
	return p, nil
}

func resourcesFor(r driver.Resources) (corev1.ResourceRequirements, error) {
	list := corev1.ResourceList{}
	for name, v := range map[corev1.ResourceName]string{corev1.ResourceCPU: r.CPU, corev1.ResourceMemory: r.Memory} {
		if v == "" {
			continue
		}
		q, err := resource.ParseQuantity(v)
		if err != nil || q.Sign() < 0 {
			return corev1.ResourceRequirements{}, fmt.Errorf("%w: %s %q is not a quantity", driver.ErrInvalidSpec, name, v)
		}
		if name == corev1.ResourceMemory && q.MilliValue()%1000 != 0 {
			// The API server takes "100m" of memory, a tenth of a byte
			// (m is milli): a limit no container can start under.
			return corev1.ResourceRequirements{}, fmt.Errorf("%w: memory %q is not a whole number of bytes (m is milli: 100m is a tenth of a byte); give e.g. 100Mi or 100M",
				driver.ErrInvalidSpec, v)
		}
		list[name] = q
	}
	if r.GPU < 0 {
		return corev1.ResourceRequirements{}, fmt.Errorf("%w: gpu %d is negative", driver.ErrInvalidSpec, r.GPU)
	}
	if r.GPU > 0 {
		list[GPUResource] = *resource.NewQuantity(int64(r.GPU), resource.DecimalSI)
	}
	if len(list) == 0 {
		return corev1.ResourceRequirements{}, nil
	}
	// Requests = limits: the instance is guaranteed what it may use, and
	// extended resources (GPUs) require it anyway.
	return corev1.ResourceRequirements{Requests: list, Limits: list.DeepCopy()}, nil
}

func volumesFor(storages []driver.Storage) ([]corev1.Volume, []corev1.VolumeMount, error) {
	var vols []corev1.Volume
	var mounts []corev1.VolumeMount
	used := map[string]bool{}
	for i, st := range storages {
		if !strings.HasPrefix(st.MountPath, "/") {
			return nil, nil, fmt.Errorf("%w: storage %q: mount path %q is not absolute", driver.ErrInvalidSpec, st.Name, st.MountPath)
		}
		name := driver.SanitizeName(st.Name, validation.DNS1123LabelMaxLength)
		if name == "" || used[name] {
			name = "storage-" + strconv.Itoa(i)
		}
		used[name] = true
		v := corev1.Volume{Name: name}
		switch st.Type {
		case driver.StoragePVC:
			if st.Source == "" {
				return nil, nil, fmt.Errorf("%w: storage %q: pvc needs a claim name as source", driver.ErrInvalidSpec, st.Name)
			}
			v.PersistentVolumeClaim = &corev1.PersistentVolumeClaimVolumeSource{ClaimName: st.Source, ReadOnly: st.ReadOnly}
		case driver.StorageHostPath:
			if !strings.HasPrefix(st.Source, "/") {
				return nil, nil, fmt.Errorf("%w: storage %q: host path %q is not absolute", driver.ErrInvalidSpec, st.Name, st.Source)
			}
			v.HostPath = &corev1.HostPathVolumeSource{Path: st.Source}
		case driver.StorageEmptyDir:
			v.EmptyDir = &corev1.EmptyDirVolumeSource{}
		case driver.StorageNFS:
			server, path, ok := strings.Cut(st.Source, ":")
			if !ok || server == "" || !strings.HasPrefix(path, "/") {
				return nil, nil, fmt.Errorf("%w: storage %q: nfs source %q is not server:/path", driver.ErrInvalidSpec, st.Name, st.Source)
			}
			v.NFS = &corev1.NFSVolumeSource{Server: server, Path: path, ReadOnly: st.ReadOnly}
		default:
			return nil, nil, fmt.Errorf("%w: storage %q: unknown type %q", driver.ErrInvalidSpec, st.Name, st.Type)
		}
		vols = append(vols, v)
		mounts = append(mounts, corev1.VolumeMount{Name: name, MountPath: st.MountPath, ReadOnly: st.ReadOnly})
	}
	return vols, mounts, nil
}

func tolerationsFor(ts []driver.Toleration) ([]corev1.Toleration, error) {
	var out []corev1.Toleration
	for _, t := range ts {
		op := corev1.TolerationOperator(t.Operator)
		switch op {
		case corev1.TolerationOpEqual, corev1.TolerationOpExists, "":
		default:
			return nil, fmt.Errorf("%w: toleration %q: operator %q", driver.ErrInvalidSpec, t.Key, t.Operator)
		}
		if op == corev1.TolerationOpExists && t.Value != "" {
			return nil, fmt.Errorf("%w: toleration %q: operator Exists takes no value", driver.ErrInvalidSpec, t.Key)
		}
		eff := corev1.TaintEffect(t.Effect)
		switch eff {
		case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute, "":
		default:
			return nil, fmt.Errorf("%w: toleration %q: effect %q", driver.ErrInvalidSpec, t.Key, t.Effect)
		}
		out = append(out, corev1.Toleration{Key: t.Key, Operator: op, Value: t.Value, Effect: eff})
	}
	return out, nil
}

// statusOf maps a pod to the status of its instance, taking a deletion of
// the pod for the driver's own.
func statusOf(ref driver.Ref, p *corev1.Pod) driver.Status { return podStatus(ref, p, true) }

// status maps a pod to the status of its instance as this driver sees it:
// a pod that started terminating before it ended, at the request of
// someone else than the driver, is lost (lostStatus).
func (d *Driver) status(ref driver.Ref, p *corev1.Pod) driver.Status {
	return podStatus(ref, p, d.deletions.has(p.UID))
}

// podStatus maps a pod to the status of its instance; ours says that a
// deletion of the pod is the driver's own (Stop, Cleanup, Reap).
func podStatus(ref driver.Ref, p *corev1.Pod, ours bool) driver.Status {
	// The pod's own StartTime is not the instance's start: the kubelet
	// sets it when it takes the pod, before it pulls the image, so a pod
	// waiting for a pull (or one that never will) has it. Only the
	// container's running or terminated state says it started.
	st := driver.Status{Ref: ref, State: driver.Pending}
	var cs *corev1.ContainerStatus
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == ContainerName {
			cs = &p.Status.ContainerStatuses[i]
		}
	}
	if cs != nil {
		switch s := cs.State; {
		case s.Terminated != nil:
			code := int(s.Terminated.ExitCode)
			st.ExitCode = &code
			st.State = driver.Succeeded
			if code != 0 || oomKilled(cs) {
				st.State = driver.Failed
			}
			if !s.Terminated.StartedAt.IsZero() {
				st.StartedAt = s.Terminated.StartedAt.Time
			}
			st.FinishedAt = s.Terminated.FinishedAt.Time
			st.Message = joinReason(s.Terminated.Reason, s.Terminated.Message)
			// The kubelet's words for any exit, 0 or not, say no more than
			// the code; a reason such as OOMKilled is kept.
			if st.Message == "Completed" || st.Message == "Error" {
				st.Message = ""
			}
		case s.Running != nil:
			st.State = driver.Running
			st.StartedAt = s.Running.StartedAt.Time
		case s.Waiting != nil:
			st.Message = joinReason(s.Waiting.Reason, s.Waiting.Message)
			switch {
			case imageNeverReasons[s.Waiting.Reason]:
				// The kubelet tries no more for this spec: the instance
				// fails now, not at the job's start timeout.
				st.State, st.Reason = driver.Failed, driver.ReasonNeverRuns
			case imagePullReasons[s.Waiting.Reason]:
				st.Reason = driver.ReasonImagePullFailed
			}
		}
	}
	switch p.Status.Phase {
	case corev1.PodFailed: // evicted, deadline exceeded... even after exit 0
		st.State = driver.Failed
		if msg := joinReason(p.Status.Reason, p.Status.Message); msg != "" {
			st.Message = msg
		} else if msg := failedInit(p); msg != "" && st.ExitCode == nil {
			// The instance never ran: an init container that a webhook
			// added (istio-init, vault-agent-init...) failed, and with
			// restart policy Never the pod failed with it. The instance's
			// own container only says PodInitializing.
			st.Message = msg
		}
	case corev1.PodSucceeded:
		if st.ExitCode == nil {
			zero := 0
			st.ExitCode = &zero
		}
		if !oomKilled(cs) {
			st.State = driver.Succeeded
		}
	case corev1.PodPending:
		if st.Message == "" {
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
					st.Message = joinReason(c.Reason, c.Message)
				}
			}
		}
	}
	if st.State.Final() && st.FinishedAt.IsZero() {
		st.FinishedAt = time.Now()
	}
	if p.DeletionTimestamp != nil && !st.State.Final() {
		st.State, st.Message, st.FinishedAt = driver.Failed, "pod deleted", deletionAsked(p)
		if !ours {
			st.Reason, st.Message = driver.ReasonLost, lostMessage(p)
		}
	}
	return st
}

// deletionAsked is when p's deletion was asked for. The API server sets a
// gracefully deleted pod's deletionTimestamp to the end of its grace
// period (30 s ahead by default), not to the request; that was the
// instance's FinishedAt, a time to come.
func deletionAsked(p *corev1.Pod) time.Time {
	t := p.DeletionTimestamp.Time
	if g := p.DeletionGracePeriodSeconds; g != nil && *g > 0 {
		t = t.Add(-time.Duration(*g) * time.Second)
	}
	return t
}

// lostMessage says why the pod p, deleted before it ended, was deleted by
// someone else than the driver: what its DisruptionTarget condition says
// (the eviction API of a node drain, the taint manager on a lost node,
// the scheduler's preemption, the pod garbage collector), else that it
// was deleted (kubectl delete pod, or a deletion of its owner).
func lostMessage(p *corev1.Pod) string {
	msg := "pod deleted by someone else than the launcher"
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
			msg += " (" + joinReason(c.Reason, c.Message) + ")"
		}
	}
	return msg
}

// failedInit says which init container of p failed, "" if none did.
func failedInit(p *corev1.Pod) string {
	for _, c := range p.Status.InitContainerStatuses {
		if t := c.State.Terminated; t != nil && t.ExitCode != 0 {
			msg := fmt.Sprintf("init container %s exited with code %d", c.Name, t.ExitCode)
			if why := joinReason(t.Reason, t.Message); why != "" && why != "Error" {
				msg += ": " + why
			}
			return msg
		}
	}
	return ""
}

// imagePullReasons are the kubelet's waiting reasons for an image that
// cannot be had yet (pkg/kubelet/images) and may be once it is pushed or
// the registry answers; ContainerCreating, PodInitializing and the like
// are not among them.
var imagePullReasons = map[string]bool{
	"ErrImagePull":     true,
	"ImagePullBackOff": true,
	"ErrImageInspect":  true,
}

// imageNeverReasons are the kubelet's waiting reasons for an image that
// the pod's spec can never have: a name it cannot parse, or pull policy
// Never and the image absent from the node. The kubelet does not pull for
// either, so the pod would wait for ever.
var imageNeverReasons = map[string]bool{
	"InvalidImageName":  true,
	"ErrImageNeverPull": true,
}

// oomKilled reports whether the container ended with a process of it
// killed at its memory limit. containerd's CRI gives the reason OOMKilled
// whatever the exit code, so a container whose main process went on and
// exited 0 has it too (its pod succeeded): it did not do all its work, and
// fails the instance, as on docker.
func oomKilled(cs *corev1.ContainerStatus) bool {
	return cs != nil && cs.State.Terminated != nil && cs.State.Terminated.Reason == "OOMKilled"
}

func joinReason(reason, message string) string {
	switch {
	case reason == "":
		return message
	case message == "":
		return reason
	}
	return reason + ": " + message
}

// observe handles an added or updated pod.
func (d *Driver) observe(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if d.retired.has(p.UID) {
		return
	}
	if ref, ok := refOf(p); ok {
		st := d.status(ref, p)
		d.pulls.note(p, &st, true)
		d.tracker.Update(st)
	}
}

// deleted handles a deleted pod, possibly seen only as a tombstone.
func (d *Driver) deleted(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	d.pulls.forget(p)
	d.owners.forget(p.Name, p.UID)
	ours := d.deletions.has(p.UID)
	d.deletions.forget(p.UID)
	retired := d.retired.has(p.UID)
	d.retired.forget(p.UID)
	ref, ok := refOf(p)
	switch {
	case !ok, retired:
		// A pod Cleanup removed: its instance is forgotten already, and
		// its ref may be a new pod's (a job's next attempt).
	case ours || podStatus(ref, p, true).State.Final():
		// Ended, or seen terminating (then reported already, lost or
		// not): its final status again, Removed.
		d.tracker.Remove(ref, "pod deleted")
	default:
		// Gone at once, before it ended, and not by the driver: a forced
		// deletion (grace 0), or one of a pod no node had taken.
		d.tracker.Lost(ref, lostMessage(p))
	}
}

// deletions are the UIDs of the pods this driver asked the API server to
// delete (Stop, Cleanup, Reap), until the watch sees them go. A pod that
// starts terminating, or goes, before it ended and without being among
// them was deleted by someone else: kubectl delete, the eviction of a node
// drain, the taint manager when its node is lost, the scheduler's
// preemption, the garbage collector after its controller's deletion. Its
// instance is then lost (driver.ReasonLost; the job's retry_on "lost"
// retries it), not failed. Before, every deletion read "pod deleted" and
// failed the job like an exit of the program. A new driver knows none of
// its predecessor's deletions: a pod still terminating from one reads as
// lost, which the launcher, stopping it then, records stopped.
type deletions struct {
	mu   sync.Mutex
	uids map[types.UID]struct{}
}

func (s *deletions) add(uid types.UID) {
	if uid == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.uids == nil {
		s.uids = map[types.UID]struct{}{}
	}
	s.uids[uid] = struct{}{}
}

func (s *deletions) has(uid types.UID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.uids[uid]
	return ok
}

func (s *deletions) forget(uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.uids, uid)
}

// owners are the UIDs of the controller pods this driver created, by pod
// name. A worker's owner reference needs its controller's UID, and reading
// the controller for every worker was half of a job's requests: 101 of the
// 201 that start a controller and 100 workers. An entry goes when the watch
// sees its pod deleted; a controller made again under the same name is
// remembered anew, or read. A controller someone else deleted, in the
// moment before the watch tells, still lends its UID: the worker is then
// made with an owner that is gone and the garbage collector removes it,
// where the read would have failed the start; the job fails on its lost
// controller either way.
type owners struct {
	mu  sync.Mutex
	uid map[string]types.UID
}

func (o *owners) remember(name string, uid types.UID) {
	if uid == "" {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.uid == nil {
		o.uid = map[string]types.UID{}
	}
	o.uid[name] = uid
}

func (o *owners) lookup(name string) (types.UID, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	uid, ok := o.uid[name]
	return uid, ok
}

// forget drops name's entry if it is still uid's: the deletion of an
// earlier pod of that name, seen late, leaves a newer one's alone.
func (o *owners) forget(name string, uid types.UID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.uid[name] == uid {
		delete(o.uid, name)
	}
}

// ownerOf returns the pod that s's pod is to be owned by: as this driver
// created it, or as the API server has it.
func (d *Driver) ownerOf(ctx context.Context, s driver.Spec) (*corev1.Pod, error) {
	name := s.Owner.Name()
	if uid, ok := d.owners.lookup(name); ok {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, UID: uid}}, nil
	}
	o, err := d.cs.CoreV1().Pods(d.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get owner pod %s: %w", name, err)
	}
	return o, nil
}

// Start creates the pod; a pod that exists already is success. A worker's
// owner (the controller) must exist.
func (d *Driver) Start(ctx context.Context, s driver.Spec) error {
	var owner *corev1.Pod
	if s.Owner != nil {
		o, err := d.ownerOf(ctx, s)
		if unavailable(err) {
			return driver.Mark(driver.ErrUnavailable, fmt.Errorf("kubernetes: start %s: %w", s.Ref, err))
		}
		if err != nil {
			return fmt.Errorf("kubernetes: start %s: %w", s.Ref, err)
		}
		owner = o
	}
	p, err := podFor(s, d.ns, owner)
	if err != nil {
		return fmt.Errorf("kubernetes: start %s: %w", s.Ref, err)
	}
	created, err := d.cs.CoreV1().Pods(d.ns).Create(ctx, p, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		created, err = d.checkExisting(ctx, s.Ref, p.Name)
	case apierrors.IsInvalid(err):
		// 422: the API server's validation (or a ValidatingAdmissionPolicy)
		// refuses the pod as specified, and would refuse it again: the
		// start fails now, with the server's words, instead of being
		// retried until the queue's start timeout. Forbidden (RBAC, a
		// quota, a LimitRange, a webhook) may pass later and is retried.
		err = driver.Mark(driver.ErrInvalidSpec, fmt.Errorf("kubernetes: start %s: create pod: %w", s.Ref, err))
	case unavailable(err):
		err = driver.Mark(driver.ErrUnavailable, fmt.Errorf("kubernetes: start %s: create pod: %w", s.Ref, err))
	case err != nil:
		err = fmt.Errorf("kubernetes: start %s: create pod: %w", s.Ref, err)
	}
	if err != nil {
		return err
	}
	if s.Ref.Role == driver.RoleController {
		d.owners.remember(created.Name, created.UID)
	}
	return nil
}

// checkExisting makes sure an existing pod of that name is this instance,
// and returns it.
func (d *Driver) checkExisting(ctx context.Context, ref driver.Ref, name string) (*corev1.Pod, error) {
	p, err := d.cs.CoreV1().Pods(d.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("kubernetes: start %s: get existing pod: %w", ref, err)
	}
	if got, ok := refOf(p); !ok || got != ref {
		return nil, fmt.Errorf("kubernetes: start %s: pod name %s is taken by another pod", ref, name)
	}
	if p.DeletionTimestamp != nil {
		// An earlier pod of the instance, stopped or cleaned up and still
		// terminating (its program has up to its grace period to exit, or
		// its node is lost): it will not run the instance, and it goes
		// soon. Taken for the instance, it made the start a no-op whose
		// pod then vanished, and the program's end under the stop (137)
		// read as the new start's: a job retried after one of its
		// instances failed failed again. The launcher retries the start.
		return nil, fmt.Errorf("kubernetes: start %s: pod %s of an earlier start is still terminating (deletion asked at %s); the start is retried once it is gone",
			ref, name, deletionAsked(p).UTC().Format(time.RFC3339))
	}
	return p, nil
}

// Stop deletes the instance's pod (the kubelet sends SIGTERM, then SIGKILL
// after the grace period). Deleting a controller deletes its workers.
func (d *Driver) Stop(ctx context.Context, r driver.Ref) error {
	p, err := d.cs.CoreV1().Pods(d.ns).Get(ctx, r.Name(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("kubernetes: stop %s: %w", r, err)
	}
	if got, ok := refOf(p); !ok || got != r {
		return nil // not ours
	}
	if err := d.delete(ctx, p); err != nil {
		return fmt.Errorf("kubernetes: stop %s: %w", r, err)
	}
	if err := d.deleteOwned(ctx, p); err != nil {
		return fmt.Errorf("kubernetes: stop %s: %w", r, err)
	}
	return nil
}

// deleteOwned deletes the job's pods that owner owns (a controller's
// workers). The garbage collector would too, through their owner
// references, but the driver does not rely on one running.
func (d *Driver) deleteOwned(ctx context.Context, owner *corev1.Pod) error {
	ref, _ := refOf(owner)
	if ref.Role != driver.RoleController {
		return nil
	}
	pods, err := d.cs.CoreV1().Pods(d.ns).List(ctx, metav1.ListOptions{LabelSelector: jobSelector(ref.JobID)})
	if err != nil {
		return fmt.Errorf("list the workers: %w", err)
	}
	var errs []error
	for i := range pods.Items {
		p := &pods.Items[i]
		for _, o := range p.OwnerReferences {
			if o.UID == owner.UID && p.DeletionTimestamp == nil {
				errs = append(errs, d.delete(ctx, p))
				break
			}
		}
	}
	return errors.Join(errs...)
}

func (d *Driver) delete(ctx context.Context, p *corev1.Pod) error {
	bg := metav1.DeletePropagationBackground
	uid := p.UID
	opts := metav1.DeleteOptions{GracePeriodSeconds: d.grace, PropagationPolicy: &bg}
	if ended(p) {
		// Nothing runs any more: remove the object at once instead of
		// waiting for a kubelet to confirm (none may be left on the node).
		zero := int64(0)
		opts.GracePeriodSeconds = &zero
	}
	if uid != "" {
		// Never delete a newer pod that took the name meanwhile.
		opts.Preconditions = &metav1.Preconditions{UID: &uid}
	}
	// Noted before the request: the watch may tell of the deletion before
	// the answer comes.
	d.deletions.add(uid)
	err := d.cs.CoreV1().Pods(d.ns).Delete(ctx, p.Name, opts)
	if err != nil {
		// Not deleted by this request: gone already, a newer pod of the
		// name (Conflict), or a failure.
		d.deletions.forget(uid)
	}
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete pod %s: %w", p.Name, err)
	}
	return nil
}

// Cleanup deletes every pod of the job.
func (d *Driver) Cleanup(ctx context.Context, jobID string) error {
	pods, err := d.cs.CoreV1().Pods(d.ns).List(ctx, metav1.ListOptions{LabelSelector: jobSelector(jobID)})
	if err != nil {
		return fmt.Errorf("kubernetes: cleanup %s: list pods: %w", jobID, err)
	}
	var errs []error
	for i := range pods.Items {
		p := &pods.Items[i]
		ref, ok := refOf(p)
		if !ok || ref.JobID != jobID {
			continue // a job whose sanitized id collides
		}
		if err := d.delete(ctx, p); err != nil {
			errs = append(errs, err)
			continue
		}
		d.tracker.Gone(ref, "removed by cleanup")
		d.retired.add(p.UID)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kubernetes: cleanup %s: %w", jobID, err)
	}
	return nil
}

// List asks the API server for the managed pods that are not terminating.
func (d *Driver) List(ctx context.Context) ([]driver.Status, error) {
	pods, err := d.cs.CoreV1().Pods(d.ns).List(ctx, metav1.ListOptions{LabelSelector: LabelManaged + "=true"})
	if err != nil {
		return nil, fmt.Errorf("kubernetes: list pods: %w", err)
	}
	out := make([]driver.Status, 0, len(pods.Items))
	for i := range pods.Items {
		p := &pods.Items[i]
		ref, ok := refOf(p)
		if !ok || p.DeletionTimestamp != nil {
			continue
		}
		st := d.status(ref, p)
		d.pulls.note(p, &st, false)
		out = append(out, st)
	}
	return out, nil
}

// Watch reports the pods the informer knows, then every change.
func (d *Driver) Watch(ctx context.Context) (<-chan driver.Status, error) {
	return d.tracker.Subscribe(ctx), nil
}

// Logs streams the instance container's log.
func (d *Driver) Logs(ctx context.Context, r driver.Ref) (io.ReadCloser, error) {
	rc, err := d.cs.CoreV1().Pods(d.ns).GetLogs(r.Name(), &corev1.PodLogOptions{Container: ContainerName}).Stream(ctx)
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("kubernetes: logs of %s: %w", r, driver.ErrNotFound)
	case apierrors.IsBadRequest(err) && d.neverRan(r):
		// The kubelet answers 400 for a container that has not run
		// ("container "instance" in pod … is waiting to start:
		// ContainerCreating", image pulls included): an instance that has
		// printed nothing yet, as a docker container created and not
		// started. Before, the launcher answered such a request 500.
		return io.NopCloser(strings.NewReader("")), nil
	case unavailable(err):
		return nil, driver.Mark(driver.ErrUnavailable, fmt.Errorf("kubernetes: logs of %s: %w", r, err))
	case err != nil:
		return nil, fmt.Errorf("kubernetes: logs of %s: %w", r, err)
	}
	return rc, nil
}

// neverRan reports whether the informer knows r's pod and its instance
// container has never run: no running or terminated state, nor an earlier
// termination, with a container behind it.
func (d *Driver) neverRan(r driver.Ref) bool {
	p, err := d.pods.Get(r.Name())
	if err != nil {
		return false
	}
	if got, ok := refOf(p); !ok || got != r {
		return false
	}
	for _, c := range p.Status.ContainerStatuses {
		if c.Name != ContainerName {
			continue
		}
		if c.State.Running != nil || c.ContainerID != "" ||
			c.State.Terminated != nil && c.State.Terminated.ContainerID != "" ||
			c.LastTerminationState.Terminated != nil && c.LastTerminationState.Terminated.ContainerID != "" {
			return false
		}
	}
	return true
}

// Close stops the informer; pods keep running.
func (d *Driver) Close() error {
	d.closeOnce.Do(func() {
		d.tracker.Close()
		close(d.stopInf)
		d.factory.Shutdown()
	})
	return nil
}
