//go:build kube

// The tests in this file run the driver against a real kube-apiserver and
// etcd (make test-kube: go test -tags kube). The fake-clientset tests in
// the other files run in make test as before.

package kubernetes_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/drivertest"
	"github.com/avxrm/rm/services/launcher/internal/driver/kubernetes"
	"github.com/avxrm/rm/services/launcher/kubetest"
	"github.com/avxrm/rm/services/launcher/kubetest/kubeserver"
)

// srv is the package's API server, started by TestMain.
var (
	srv   *kubeserver.Server
	admin *k8s.Clientset
)

func TestMain(m *testing.M) {
	var err error
	srv, err = kubeserver.Start(kubeserver.Options{
		// As on clusters that enforce it (OpenShift): an owner reference
		// with blockOwnerDeletion would need update on the owner's
		// finalizers, which the chart's Role does not grant.
		ExtraArgs: []string{"--enable-admission-plugins=OwnerReferencesPermissionEnforcement"},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("kube-apiserver %s ready in %s\n", srv.URL, srv.StartTime.Round(time.Millisecond))
	admin, err = srv.Clientset()
	code := 1
	if err == nil {
		code = m.Run()
	} else {
		fmt.Fprintln(os.Stderr, err)
	}
	began := time.Now()
	srv.Stop()
	fmt.Printf("kube-apiserver and etcd stopped in %s\n", time.Since(began).Round(time.Millisecond))
	os.Exit(code)
}

// realEnv is one test's share of the server: a fresh namespace (deleted
// namespaces stay Terminating without a controller-manager, so names are
// never reused), the chart's RBAC objects in it (applyRBAC), a fake
// kubelet, and the kubeconfig of the launcher's ServiceAccount.
type realEnv struct {
	ns         string
	kubelet    *kubetest.Kubelet
	kubeconfig string
}

// launcherSA is the chart's release name in the tests, and so the name of
// its ServiceAccount; its Role is launcherSA + "-launcher".
const launcherSA = "avxrm-launcher"

func newNamespace(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	ns := "t-" + hex.EncodeToString(b)
	if _, err := admin.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		// The pods must be gone (the driver's cleanup, or the kubelet's
		// final delete); whatever is left is removed with grace 0, since
		// no namespace controller would.
		zero := int64(0)
		admin.CoreV1().Pods(ns).DeleteCollection(context.Background(), metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
		admin.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	return ns
}

var envFor = drivertest.PerTest(func(t *testing.T) *realEnv {
	return newRealEnv(t, kubetest.NodeShape{}, nil)
})

// newRealEnv makes a namespace with the launcher's RBAC objects (edit may
// change them first), a kubelet with the node shape, and a token for the
// ServiceAccount.
func newRealEnv(t testing.TB, shape kubetest.NodeShape, edit func(*rbacv1.Role)) *realEnv {
	t.Helper()
	ns := newNamespace(t)
	applyRBAC(t, ns, edit)
	return &realEnv{ns: ns, kubelet: kubetest.StartKubelet(t, srv, admin, ns, shape), kubeconfig: srv.Kubeconfig(saToken(t, ns), ns)}
}

// applyRBAC creates in ns the ServiceAccount, Role and RoleBinding that
// `helm template` of the chart renders for a release named launcherSA in
// ns (the jobs' namespace too); edit may change the Role first.
func applyRBAC(t testing.TB, ns string, edit func(*rbacv1.Role)) {
	t.Helper()
	ctx := context.Background()
	dec := yaml.NewYAMLReader(bufio.NewReader(strings.NewReader(renderChart(t, ns))))
	applied := map[string]bool{}
	for {
		doc, err := dec.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("rendered chart: %v", err)
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			_, err = admin.CoreV1().ServiceAccounts(ns).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.Role:
			if edit != nil {
				edit(o)
			}
			_, err = admin.RbacV1().Roles(ns).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			_, err = admin.RbacV1().RoleBindings(ns).Create(ctx, o, metav1.CreateOptions{})
		default:
			continue // the services' Deployments, Service, ConfigMap, Secret
		}
		if err != nil {
			t.Fatalf("apply the chart's %T: %v", obj, err)
		}
		applied[fmt.Sprintf("%T", obj)] = true
	}
	if len(applied) != 3 {
		t.Fatalf("the chart rendered %v; want a ServiceAccount, a Role and a RoleBinding", applied)
	}
}

// chartDir is the Helm chart of deploy/.
const chartDir = "../../../../../deploy/helm/avxrm"

// renderChart is `helm template` of the chart (helm's library, as the
// deploy module's tests use it): release launcherSA in namespace ns, the
// jobs in ns as well, and the values the chart requires.
func renderChart(t testing.TB, ns string) string {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	inst := action.NewInstall(&action.Configuration{})
	inst.DryRun, inst.ClientOnly, inst.Replace = true, true, true
	inst.ReleaseName, inst.Namespace = launcherSA, ns
	inst.KubeVersion = &chartutil.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}
	rel, err := inst.Run(ch, map[string]any{
		"mongo":         map[string]any{"uri": "mongodb://mongo:27017/"},
		"nats":          map[string]any{"url": "nats://nats:4222"},
		"jobsNamespace": ns,
	})
	if err != nil {
		t.Fatalf("helm template %s: %v", chartDir, err)
	}
	return rel.Manifest
}

// saToken asks the TokenRequest API for a token of the launcher's
// ServiceAccount, as a projected token volume gives one in a pod.
func saToken(t testing.TB, ns string) string {
	t.Helper()
	secs := int64(3600)
	tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), launcherSA,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s: %v", launcherSA, err)
	}
	return tr.Status.Token
}

// newLauncherDriver builds the driver the way the launcher does, from a
// plugin config whose kubeconfig authenticates as the ServiceAccount.
func newLauncherDriver(t testing.TB, e *realEnv) (driver.Driver, error) {
	cfg, _ := json.Marshal(driver.KubernetesConfig{Namespace: e.ns, Kubeconfig: e.kubeconfig})
	d, err := kubernetes.New(cfg, driver.Options{})
	if err == nil {
		t.Cleanup(func() { d.Close() })
	}
	return d, err
}

func newRealDriver(t *testing.T) driver.Driver {
	d, err := newLauncherDriver(t, envFor(t))
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	return d
}

func realBehave(_ *testing.T, s *driver.Spec, b drivertest.Behaviour) {
	s.Image = "registry.example/sim:1"
	s.Env["RM_TEST_SLEEP"] = strconv.FormatFloat(b.RunFor.Seconds(), 'f', 3, 64)
	s.Env["RM_TEST_EXIT"] = strconv.Itoa(b.Exit)
	s.Env["RM_TEST_PRINT"] = b.Print
}

// TestConformanceAPIServer runs the whole conformance suite against the
// real API server, the driver authenticated as the launcher's
// ServiceAccount with only the chart's Role.
func TestConformanceAPIServer(t *testing.T) {
	began := time.Now()
	t.Cleanup(func() {
		t.Logf("conformance suite against kube-apiserver took %s", time.Since(began).Round(time.Millisecond))
	})
	drivertest.Run(t, newRealDriver, drivertest.Features{
		Behave: realBehave, ExitCodes: true, Reattach: true, Logs: true, Timeout: 30 * time.Second,
	})
}

// The product documents' example queue: its pods go to one reserved node
// group, which is tainted so that nothing else lands there.
var (
	reservedSelector   = map[string]string{"node-group-reservation": "my-special-group"}
	reservedToleration = driver.Toleration{Key: "node-group-reservation", Operator: "Equal", Value: "my-special-group", Effect: "NoSchedule"}
	reservedNode       = kubetest.NodeShape{
		Labels: reservedSelector,
		Taints: []corev1.Taint{{Key: "node-group-reservation", Value: "my-special-group", Effect: corev1.TaintEffectNoSchedule}},
	}
)

// reservedPodToleration is reservedToleration as the pod has it.
var reservedPodToleration = []corev1.Toleration{{Key: "node-group-reservation", Operator: corev1.TolerationOpEqual, Value: "my-special-group", Effect: corev1.TaintEffectNoSchedule}}

// watchStatuses subscribes to d and returns a function that waits for the
// first status of ref that satisfies ok.
func watchStatuses(t *testing.T, d driver.Driver) func(ref driver.Ref, what string, ok func(driver.Status) bool) driver.Status {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := d.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var seen []driver.Status
	return func(ref driver.Ref, what string, ok func(driver.Status) bool) driver.Status {
		t.Helper()
		for _, st := range seen {
			if st.Ref == ref && ok(st) {
				return st
			}
		}
		timeout := time.After(30 * time.Second)
		for {
			select {
			case st := <-ch:
				seen = append(seen, st)
				if st.Ref == ref && ok(st) {
					return st
				}
			case <-timeout:
				var mine []string
				for _, st := range seen {
					if st.Ref == ref {
						mine = append(mine, fmt.Sprintf("%s(%s|%s)", st.State, st.Reason, st.Message))
					}
				}
				t.Fatalf("timeout waiting for %s of %s; seen %v", what, ref, mine)
			}
		}
	}
}

func final(st driver.Status) bool { return st.State.Final() }

// onReservedNode is a driver whose pods a kubelet of the reserved node
// group runs, and a wait on its statuses.
func onReservedNode(t *testing.T) (*realEnv, driver.Driver, func(driver.Ref, string, func(driver.Status) bool) driver.Status) {
	t.Helper()
	e := newRealEnv(t, reservedNode, nil)
	d, err := newLauncherDriver(t, e)
	if err != nil {
		t.Fatal(err)
	}
	return e, d, watchStatuses(t, d)
}

// TestAPIServerPodFields starts a controller and a worker with everything
// a queue and job can set, on a node reserved as in the product documents,
// and reads the pods back from the server: what the driver sends must be
// accepted as is and keep its meaning.
func TestAPIServerPodFields(t *testing.T) {
	ctx := context.Background()
	e, d, wait := onReservedNode(t)
	job := "Job 01/Δ" // not a label value: labels get a stand-in, annotations the exact id
	ctrl := driver.Ref{JobID: job, Role: driver.RoleController}
	worker := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: 7}
	spec := func(r driver.Ref, owner *driver.Ref) driver.Spec {
		return driver.Spec{
			Ref: r, Name: r.Name(), Queue: "Default queue", Owner: owner,
			Image: "registry.example/sim:1", Command: []string{"/bin/sim"}, Args: []string{"--fast"}, WorkingDir: "/work",
			Env:          map[string]string{"RM_TEST_SLEEP": "60", "RM_JOB_ID": job},
			Resources:    driver.Resources{CPU: "500m", Memory: "4Gi", GPU: 1},
			NodeSelector: reservedSelector,
			Tolerations:  []driver.Toleration{reservedToleration},
			Storages: []driver.Storage{
				{Name: "results", Type: driver.StoragePVC, Source: "sim-results", MountPath: "/results"},
				{Name: "Maps", Type: driver.StorageNFS, Source: "nfs.example:/exports/maps", MountPath: "/maps", ReadOnly: true},
				{Name: "scratch", Type: driver.StorageEmptyDir, MountPath: "/scratch"},
				{Name: "cache", Type: driver.StorageHostPath, Source: "/var/cache/sim", MountPath: "/cache"},
			},
			Labels:         map[string]string{"team": "adas", "app.example/tier": "sim run"},
			Annotations:    map[string]string{"rm.avxrm.io/submitted-by": "alice@example.com"},
			ServiceAccount: "sim-runner",
		}
	}
	if err := d.Start(ctx, spec(ctrl, nil)); err != nil {
		t.Fatalf("Start(controller) error = %v", err)
	}
	if err := d.Start(ctx, spec(worker, &ctrl)); err != nil {
		t.Fatalf("Start(worker) error = %v", err)
	}
	for _, r := range []driver.Ref{ctrl, worker} {
		if st := wait(r, "Running", func(st driver.Status) bool { return st.State == driver.Running }); st.StartedAt.IsZero() {
			t.Errorf("%s Running without StartedAt", r)
		}
	}
	cp, err := admin.CoreV1().Pods(e.ns).Get(ctx, ctrl.Name(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wp, err := admin.CoreV1().Pods(e.ns).Get(ctx, worker.Name(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(reservedSelector, wp.Spec.NodeSelector); diff != "" {
		t.Errorf("node selector (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(reservedPodToleration, kubetest.QueueTolerations(wp)); diff != "" {
		t.Errorf("tolerations (-want +got):\n%s", diff)
	}
	if wp.Spec.NodeName != e.kubelet.Node().Name {
		t.Errorf("worker bound to %q, want the reserved node %q", wp.Spec.NodeName, e.kubelet.Node().Name)
	}
	if wp.Spec.ServiceAccountName != "sim-runner" {
		t.Errorf("service account = %q", wp.Spec.ServiceAccountName)
	}
	c := wp.Spec.Containers[0]
	q := resource.MustParse
	wantRes := corev1.ResourceList{corev1.ResourceCPU: q("500m"), corev1.ResourceMemory: q("4Gi"), kubernetes.GPUResource: q("1")}
	for name, want := range wantRes {
		if got := c.Resources.Requests[name]; got.Cmp(want) != 0 {
			t.Errorf("request %s = %s, want %s", name, got.String(), want.String())
		}
		if got := c.Resources.Limits[name]; got.Cmp(want) != 0 {
			t.Errorf("limit %s = %s, want %s", name, got.String(), want.String())
		}
	}
	if wp.Status.QOSClass != corev1.PodQOSGuaranteed {
		t.Errorf("QoS class = %q, want Guaranteed (requests = limits)", wp.Status.QOSClass)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range wp.Spec.Volumes {
		vols[v.Name] = v
	}
	if v := vols["results"]; v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != "sim-results" {
		t.Errorf("results volume = %+v", v)
	}
	if v := vols["maps"]; v.NFS == nil || v.NFS.Server != "nfs.example" || v.NFS.Path != "/exports/maps" || !v.NFS.ReadOnly {
		t.Errorf("maps volume = %+v", v)
	}
	if v := vols["scratch"]; v.EmptyDir == nil {
		t.Errorf("scratch volume = %+v", v)
	}
	if v := vols["cache"]; v.HostPath == nil || v.HostPath.Path != "/var/cache/sim" {
		t.Errorf("cache volume = %+v", v)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	if diff := cmp.Diff(map[string]string{"results": "/results", "maps": "/maps", "scratch": "/scratch", "cache": "/cache"}, mounts); diff != "" {
		t.Errorf("mounts (-want +got):\n%s", diff)
	}
	for key, want := range map[string]string{"team": "adas", "app.example/tier": kubernetes.LabelValue("sim run"), kubernetes.LabelManaged: "true",
		kubernetes.LabelJobID: kubernetes.LabelValue(job), kubernetes.LabelRole: "worker", kubernetes.LabelIndex: "7"} {
		if wp.Labels[key] != want {
			t.Errorf("label %s = %q, want %q", key, wp.Labels[key], want)
		}
	}
	if wp.Annotations[kubernetes.LabelJobID] != job || wp.Annotations["rm.avxrm.io/submitted-by"] != "alice@example.com" {
		t.Errorf("annotations = %v", wp.Annotations)
	}
	wantOwner := []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: ctrl.Name(), UID: cp.UID}}
	if diff := cmp.Diff(wantOwner, wp.OwnerReferences); diff != "" {
		t.Errorf("worker owner references (-want +got):\n%s", diff)
	}

	// A pod without the toleration is not placed on the reserved node; the
	// scheduler's reason reaches its status.
	stray := driver.Ref{JobID: "stray", Role: driver.RoleWorker}
	sp := spec(stray, nil)
	sp.Tolerations = nil
	if err := d.Start(ctx, sp); err != nil {
		t.Fatal(err)
	}
	st := wait(stray, "unschedulable", func(st driver.Status) bool { return strings.Contains(st.Message, "untolerated taint") })
	if st.State != driver.Pending {
		t.Errorf("untolerated pod is %s, want Pending", st.State)
	}

	// Stopping the controller removes its worker too, without a garbage
	// collector (none runs here).
	if err := d.Stop(ctx, ctrl); err != nil {
		t.Fatal(err)
	}
	for _, r := range []driver.Ref{ctrl, worker} {
		if st := wait(r, "the end", final); st.State != driver.Failed {
			t.Errorf("%s after Stop(controller) = %s, want Failed", r, st.State)
		}
	}
	waitGone(t, e.ns, ctrl.Name(), worker.Name())
	for _, r := range []driver.Ref{ctrl, stray} {
		if err := d.Cleanup(ctx, r.JobID); err != nil {
			t.Fatal(err)
		}
	}
	waitGone(t, e.ns, stray.Name())
}

// waitGone waits until the pods no longer exist in the API server.
func waitGone(t *testing.T, ns string, names ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, name := range names {
		for {
			p, err := admin.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pod %s still exists (err %v, deletion %v)", name, err, p.DeletionTimestamp)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestAPIServerSeedExample plays the seed's example at the driver level: a
// queue limited to 10 workers, a job of 10 workers and a job of 8, on the
// product documents' reserved node group. The admission rule is the
// test's (the scheduler's part is not run here): a job's workers start
// when they fit in the limit beside those of the jobs whose pods still
// exist in the API server. The server's own watch then shows the order.
func TestAPIServerSeedExample(t *testing.T) {
	ctx := context.Background()
	e, d, wait := onReservedNode(t)
	const limit, queue = 10, "q-special"

	// Everything the server does to the namespace's pods, in its order.
	w, err := admin.CoreV1().Pods(e.ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	jobA, jobB := drivertest.JobID(t), drivertest.JobID(t)
	workers := func(job string, n int) []driver.Spec {
		var out []driver.Spec
		for i := range n {
			r := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: i}
			out = append(out, driver.Spec{Ref: r, Name: r.Name(), Queue: queue, Image: "registry.example/sim:1",
				Env:          map[string]string{"RM_TEST_SLEEP": "1", "RM_TEST_EXIT": "0"},
				NodeSelector: reservedSelector, Tolerations: []driver.Toleration{reservedToleration}})
		}
		return out
	}
	// As the scheduler does, a job holds its workers' share of the limit
	// from admission until it is cleaned up; here, until none of its pods
	// exists in the API server any more.
	var mu sync.Mutex
	holding := map[string]int{}
	inUse := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for job, workers := range holding {
			pods, err := admin.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{LabelSelector: kubernetes.LabelJobID + "=" + job})
			if err != nil {
				t.Error(err)
				return limit
			}
			if len(pods.Items) == 0 {
				delete(holding, job)
				continue
			}
			n += workers
		}
		return n
	}
	admit := func(specs []driver.Spec) (waited int) {
		for inUse()+len(specs) > limit {
			waited++
			time.Sleep(20 * time.Millisecond)
		}
		mu.Lock()
		holding[specs[0].JobID] = len(specs)
		mu.Unlock()
		for _, s := range specs {
			if err := d.Start(ctx, s); err != nil {
				t.Errorf("Start(%s) error = %v", s.Ref, err) // not Fatal: may run in a goroutine
			}
		}
		return waited
	}

	a, b := workers(jobA, 10), workers(jobB, 8)
	if waited := admit(a); waited != 0 {
		t.Fatalf("job A (10 workers) waited with the queue empty")
	}
	// Job B is admitted concurrently: it must wait for A's pods to be gone.
	bDone := make(chan int)
	go func() { bDone <- admit(b) }()
	for _, s := range a {
		if st := wait(s.Ref, "the end", final); st.State != driver.Succeeded {
			t.Errorf("%s ended %s (%s)", s.Ref, st.State, st.Message)
		}
	}
	// The launcher cleans a finished job up; that frees the queue.
	if err := d.Cleanup(ctx, jobA); err != nil {
		t.Fatal(err)
	}
	var waited int
	select {
	case waited = <-bDone:
	case <-time.After(30 * time.Second):
		t.Fatalf("job B never admitted; %d pods of the queue left", inUse())
	}
	if waited == 0 {
		t.Error("job B (8 workers) did not wait while job A's 10 workers held the queue")
	}
	for _, s := range b {
		if st := wait(s.Ref, "the end", final); st.State != driver.Succeeded {
			t.Errorf("%s ended %s (%s)", s.Ref, st.State, st.Message)
		}
	}
	if err := d.Cleanup(ctx, jobB); err != nil {
		t.Fatal(err)
	}

	// Read the server's event stream up to B's last deletion.
	lastDeletedA, firstAddedB, added, deletedB := -1, -1, map[string]int{}, 0
	timeout := time.After(30 * time.Second)
	for i := 0; deletedB < len(b); i++ {
		ev, ok := kubetest.NextPodEvent(t, w, timeout)
		if !ok {
			t.Fatalf("B's pods not all deleted: %d of %d", deletedB, len(b))
		}
		job := ev.Pod.Annotations[kubernetes.LabelJobID]
		switch {
		case ev.Type == "ADDED":
			added[job]++
			if job == jobB && firstAddedB < 0 {
				firstAddedB = i
			}
			if diff := cmp.Diff(reservedSelector, ev.Pod.Spec.NodeSelector); diff != "" {
				t.Errorf("%s node selector (-want +got):\n%s", ev.Pod.Name, diff)
			}
			if diff := cmp.Diff(reservedPodToleration, kubetest.QueueTolerations(ev.Pod)); diff != "" {
				t.Errorf("%s tolerations (-want +got):\n%s", ev.Pod.Name, diff)
			}
		case ev.Type == "DELETED" && job == jobA:
			lastDeletedA = i
		case ev.Type == "DELETED" && job == jobB:
			deletedB++
		}
	}
	if added[jobA] != 10 || added[jobB] != 8 {
		t.Errorf("pods created: %v, want 10 of A and 8 of B", added)
	}
	if firstAddedB <= lastDeletedA {
		t.Errorf("job B's first pod was created (event %d) before job A's last pod was deleted (event %d)", firstAddedB, lastDeletedA)
	}
	t.Logf("server events: A's last pod deleted at #%d, B's first pod created at #%d; B's admission checked the queue %d times while A held it", lastDeletedA, firstAddedB, waited)
}

// TestAPIServerRBACMissingVerb removes one rule's verb at a time from the
// launcher's Role and checks that the driver fails clearly, naming what is
// missing: when it is built (its access check) and, without that check,
// at the operation itself with the server's Forbidden error. The allowed
// direction is TestConformanceAPIServer: the whole suite runs as the
// ServiceAccount with the complete Role.
func TestAPIServerRBACMissingVerb(t *testing.T) {
	ctx := context.Background()
	ref := driver.Ref{JobID: "job-rbac", Role: driver.RoleController}
	spec := func(r driver.Ref, owner *driver.Ref) driver.Spec {
		return driver.Spec{Ref: r, Name: r.Name(), Image: "registry.example/sim:1", Owner: owner, Env: map[string]string{"RM_TEST_SLEEP": "60"}}
	}
	for _, tc := range []struct {
		verb, resource string
		// op exercises the driver built without the access check; it must
		// fail with an error containing opErr.
		op    func(d driver.Driver) error
		opErr string
	}{
		{verb: "create", resource: "pods", op: func(d driver.Driver) error { return d.Start(ctx, spec(ref, nil)) },
			opErr: `cannot create resource "pods"`},
		{verb: "delete", resource: "pods", op: func(d driver.Driver) error {
			if err := d.Start(ctx, spec(ref, nil)); err != nil {
				return fmt.Errorf("start: %w", err)
			}
			return d.Stop(ctx, ref)
		}, opErr: `cannot delete resource "pods"`},
		{verb: "list", resource: "pods", op: func(d driver.Driver) error { _, err := d.List(ctx); return err },
			opErr: `cannot list resource "pods"`},
		{verb: "get", resource: "pods", op: func(d driver.Driver) error { return d.Stop(ctx, ref) },
			opErr: `cannot get resource "pods"`},
		{verb: "watch", resource: "pods"},
		{verb: "get", resource: "pods/log", op: func(d driver.Driver) error { _, err := d.Logs(ctx, ref); return err },
			opErr: `cannot get resource "pods/log"`},
	} {
		name := tc.verb + " " + tc.resource
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			e := newRealEnv(t, kubetest.NodeShape{}, func(r *rbacv1.Role) { removeVerb(t, r, tc.verb, tc.resource) })
			_, err := newLauncherDriver(t, e)
			want := fmt.Sprintf("system:serviceaccount:%s:%s may not %s in namespace %s", e.ns, launcherSA, name, e.ns)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("New() error = %v, want one containing %q", err, want)
			}
			cs, err := k8s.NewForConfig(srv.ConfigWithToken(saToken(t, e.ns)))
			if err != nil {
				t.Fatal(err)
			}
			var logs eventstest.SyncBuffer
			d, err := kubernetes.NewWithClient(cs, e.ns, driver.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, kubernetes.WithSyncTimeout(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			if tc.op == nil {
				// The informer's watch is refused: no call fails, the log says so.
				if !strings.Contains(logs.String(), `pod list/watch failed`) || !strings.Contains(logs.String(), `cannot watch resource`) {
					t.Errorf("driver log without the access check = %q, want the refused watch", logs.String())
				}
				return
			}
			err = tc.op(d)
			if err == nil || !strings.Contains(err.Error(), tc.opErr) {
				t.Errorf("%s without it: error = %v, want one containing %q", name, err, tc.opErr)
			}
		})
	}
}

// removeVerb drops verb from the Role's rule for resource; the rule must
// exist and have the verb.
func removeVerb(t *testing.T, r *rbacv1.Role, verb, resource string) {
	t.Helper()
	for i, rule := range r.Rules {
		for _, res := range rule.Resources {
			if res != resource {
				continue
			}
			for j, v := range rule.Verbs {
				if v == verb {
					r.Rules[i].Verbs = append(rule.Verbs[:j:j], rule.Verbs[j+1:]...)
					if len(r.Rules[i].Verbs) == 0 { // a rule needs a verb
						r.Rules = slices.Delete(r.Rules, i, i+1)
					}
					return
				}
			}
		}
	}
	t.Fatalf("the chart's Role has no %s %s", verb, resource)
}

// TestAPIServerImagePullReason: a container waiting on an image that
// cannot be pulled is reported Pending with driver.ReasonImagePullFailed
// and the kubelet's message, both waiting reasons in turn.
func TestAPIServerImagePullReason(t *testing.T) {
	ctx := context.Background()
	d := newRealDriver(t)
	wait := watchStatuses(t, d)
	ref := driver.Ref{JobID: drivertest.JobID(t), Role: driver.RoleWorker}
	if err := d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Image: kubetest.PullFailsImage}); err != nil {
		t.Fatal(err)
	}
	for _, reason := range []string{"ErrImagePull", "ImagePullBackOff"} {
		st := wait(ref, reason, func(st driver.Status) bool { return strings.HasPrefix(st.Message, reason+":") })
		if st.State != driver.Pending || st.Reason != driver.ReasonImagePullFailed || !strings.Contains(st.Message, kubetest.PullFailsImage) {
			t.Errorf("status = %s reason %q message %q, want Pending, %s, naming the image", st.State, st.Reason, st.Message, driver.ReasonImagePullFailed)
		}
	}
	if err := d.Cleanup(ctx, ref.JobID); err != nil {
		t.Fatal(err)
	}
	if st := wait(ref, "the end", final); st.State != driver.Failed {
		t.Errorf("after Cleanup: %s", st.State)
	}
}

// cuttable is a dialer whose connections can all be cut at once, and
// refused until restored: a network partition between the driver and the
// API server. It also notes what the server says on the driver's watches.
type cuttable struct {
	mu    sync.Mutex
	cut   bool
	conns []net.Conn
	// gone counts 410 Gone answers (a response, or a watch event); lists counts
	// the (re-)lists of pods: list requests, or watches that send the
	// initial state (client-go's watch-list); resumes counts watches
	// from a resource version without the initial state.
	gone, lists, resumes atomic.Int32
}

func (c *cuttable) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut {
		// Refused, as by a server that is down: client-go's reflector then
		// retries its watch from the same resource version rather than
		// re-listing at once.
		return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err == nil {
		c.conns = append(c.conns, conn)
	}
	return conn, err
}

func (c *cuttable) setCut(cut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = cut
	if cut {
		for _, conn := range c.conns {
			conn.Close()
		}
		c.conns = nil
	}
}

func (c *cuttable) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		q := req.URL.Query()
		isWatch := q.Get("watch") == "true"
		switch {
		case !strings.HasSuffix(req.URL.Path, "/pods"):
		case !isWatch || q.Get("sendInitialEvents") == "true":
			c.lists.Add(1)
		case q.Get("resourceVersion") != "":
			c.resumes.Add(1)
		}
		resp, err := rt.RoundTrip(req)
		if err == nil && resp.StatusCode == http.StatusGone {
			c.gone.Add(1)
		}
		if err == nil && isWatch {
			resp.Body = &goneSpotter{ReadCloser: resp.Body, gone: &c.gone}
		}
		return resp, err
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// goneSpotter counts watch events that are a Status 410 Gone (Expired).
type goneSpotter struct {
	io.ReadCloser
	gone *atomic.Int32
	tail []byte
}

func (g *goneSpotter) Read(p []byte) (int, error) {
	n, err := g.ReadCloser.Read(p)
	buf := append(g.tail, p[:n]...)
	// In the Status's message, JSON and protobuf alike: "The
	// resourceVersion for the provided watch is too old." from etcd's
	// compaction, or "too old resource version: …" from the watch cache.
	const marker = "too old"
	if i := bytes.Index(buf, []byte(marker)); i >= 0 {
		g.gone.Add(1)
		buf = buf[i+len(marker):]
	}
	g.tail = append([]byte(nil), buf[max(0, len(buf)-len(marker)):]...)
	return n, err
}

// TestAPIServerWatchGone partitions the driver from the API server while
// its pods change (its watch connection closes; new connections are
// refused), compacts etcd past the driver's resource version, and heals
// the partition: the informer resumes its watch from its resource version,
// gets 410 Gone, re-lists, and the driver reports what happened meanwhile
// (an ended pod, a deleted one, a new one). The server runs without its
// watch cache so that the compaction, not a cache window, decides what is
// too old.
func TestAPIServerWatchGone(t *testing.T) {
	ctx := context.Background()
	s2, err := kubeserver.Start(kubeserver.Options{ExtraArgs: []string{"--watch-cache=false"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s2.Stop)
	cs2, err := s2.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ns := "watch-gone"
	if _, err := cs2.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubetest.StartKubelet(t, s2, cs2, ns, kubetest.NodeShape{})

	var link cuttable
	cfg := s2.Config()
	cfg.Dial = link.dial
	cfg.WrapTransport = link.wrap
	cs, err := k8s.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d, err := kubernetes.NewWithClient(cs, ns, driver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	other, err := kubernetes.NewWithClient(cs2, ns, driver.Options{}) // on the good side of the cut
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	wait := watchStatuses(t, d)

	job := drivertest.JobID(t)
	spec := func(i int, secs string) driver.Spec {
		r := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: i}
		return driver.Spec{Ref: r, Name: r.Name(), Image: "registry.example/sim:1", Env: map[string]string{"RM_TEST_SLEEP": secs, "RM_TEST_EXIT": "0"}}
	}
	ends, deleted, stays, added := spec(0, "4"), spec(1, "600"), spec(2, "600"), spec(3, "600")
	for _, s := range []driver.Spec{ends, deleted, stays} {
		if err := d.Start(ctx, s); err != nil {
			t.Fatal(err)
		}
		wait(s.Ref, "Running", func(st driver.Status) bool { return st.State == driver.Running })
	}
	listsBefore := link.lists.Load()

	link.setCut(true)
	zero := int64(0)
	if err := cs2.CoreV1().Pods(ns).Delete(ctx, deleted.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	if err := other.Start(ctx, added); err != nil {
		t.Fatal(err)
	}
	for {
		p, err := cs2.CoreV1().Pods(ns).Get(ctx, ends.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Status.Phase == corev1.PodSucceeded {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	compactEtcd(t, s2.EtcdURL)
	link.setCut(false)

	if st := wait(ends.Ref, "the end", final); st.State != driver.Succeeded || st.ExitCode == nil || *st.ExitCode != 0 {
		t.Errorf("pod that ended during the cut: %s %s", st.State, st.Message)
	}
	// Deleted by someone else than the driver: lost.
	if st := wait(deleted.Ref, "the end", final); st.State != driver.Failed || st.Reason != driver.ReasonLost || st.Message != "pod deleted by someone else than the launcher" {
		t.Errorf("pod deleted during the cut: %s %q %q, want Failed, Lost, pod deleted by someone else than the launcher", st.State, st.Reason, st.Message)
	}
	wait(added.Ref, "Running", func(st driver.Status) bool { return st.State == driver.Running })
	if n := link.gone.Load(); n == 0 {
		t.Error("no watch was answered 410 Gone: the test did not exercise the re-list")
	}
	if link.resumes.Load() == 0 {
		t.Error("the informer never resumed its watch from a resource version")
	}
	if link.lists.Load() == listsBefore {
		t.Error("the informer did not re-list after 410 Gone")
	}
	sts, err := d.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !has(sts, stays.Ref) || has(sts, deleted.Ref) {
		t.Errorf("List() after the cut = %v", sts)
	}
	t.Logf("watch resumed from a resource version %d times, answered 410 Gone %d times; pod lists %d before the cut, %d after",
		link.resumes.Load(), link.gone.Load(), listsBefore, link.lists.Load())
	for _, c := range []driver.Driver{d, other} {
		if err := c.Cleanup(ctx, job); err != nil {
			t.Error(err)
		}
	}
}

func has(sts []driver.Status, ref driver.Ref) bool {
	return slices.ContainsFunc(sts, func(st driver.Status) bool { return st.Ref == ref })
}

// compactEtcd compacts etcd's history up to its current revision through
// its JSON gateway, so that older resource versions are gone.
func compactEtcd(t *testing.T, etcdURL string) {
	t.Helper()
	post := func(path, body string) map[string]any {
		resp, err := http.Post(etcdURL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("etcd %s: %s %v %v", path, resp.Status, out, err)
		}
		return out
	}
	rev := post("/v3/kv/range", `{"key":"AA=="}`)["header"].(map[string]any)["revision"].(string)
	post("/v3/kv/compaction", `{"revision":"`+rev+`","physical":true}`)
}

// BenchmarkAPIServerStartGang starts the pods of a job of a controller and
// 100 workers as the launcher does on this driver (the controller, then the
// workers 16 at a time, launch.Config.StartParallelism), through a driver
// built as the launcher builds it (New, a kubeconfig of the chart's
// ServiceAccount), and reports the time until the last Start returned
// (ms/gang), then the time Cleanup took to delete the job's pods
// (cleanup-ms). A worker's start is one request, its pod's create (the
// driver remembers its controller's UID), and a pod's deletion one.
func BenchmarkAPIServerStartGang(b *testing.B) {
	const workers, parallel = 100, 16
	e := newRealEnv(b, kubetest.NodeShape{}, nil)
	d, err := newLauncherDriver(b, e)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	spec := func(r driver.Ref, owner *driver.Ref) driver.Spec {
		return driver.Spec{Ref: r, Name: r.Name(), Queue: "bench", Owner: owner, Image: "registry.example/sim:1",
			Env: map[string]string{"RM_TEST_SLEEP": "600"}}
	}
	var starting, cleaning time.Duration
	b.ResetTimer()
	for n := range b.N {
		job := "gang-" + strconv.Itoa(n)
		ctrl := driver.Ref{JobID: job, Role: driver.RoleController}
		began := time.Now()
		if err := d.Start(ctx, spec(ctrl, nil)); err != nil {
			b.Fatal(err)
		}
		sem := make(chan struct{}, parallel)
		errs := make(chan error, workers)
		for i := range workers {
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				errs <- d.Start(ctx, spec(driver.Ref{JobID: job, Role: driver.RoleWorker, Index: i}, &ctrl))
			}()
		}
		for range workers {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
		starting += time.Since(began)
		began = time.Now()
		if err := d.Cleanup(ctx, job); err != nil {
			b.Fatal(err)
		}
		cleaning += time.Since(began)
	}
	b.ReportMetric(float64(starting.Microseconds())/1000/float64(b.N), "ms/gang")
	b.ReportMetric(float64(cleaning.Microseconds())/1000/float64(b.N), "cleanup-ms")
}
