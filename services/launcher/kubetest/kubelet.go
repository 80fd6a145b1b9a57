// Package kubetest runs the kubernetes driver's world in tests: a real
// kube-apiserver with etcd (kubeserver) and a fake kubelet for one
// namespace (Kubelet). The driver's own tests and the all-in-one's use it
// (make test-kube, docs/testing.md).
package kubetest

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/avxrm/rm/services/launcher/internal/driver/kubernetes"
	"github.com/avxrm/rm/services/launcher/kubetest/kubeserver"
)

// Images the fake kubelet treats specially.
const (
	// PullFailsImage never pulls: the container waits with ErrImagePull,
	// then ImagePullBackOff, as a kubelet reports an image it cannot get.
	PullFailsImage = "registry.invalid/missing:1"
	// PullFailsThenRunsImage fails its first LatePulls pulls of each pod
	// (ErrImagePull, then ImagePullBackOff until the next try), then
	// pulls: the container runs as any other, as when a registry comes
	// back.
	PullFailsThenRunsImage = "registry.invalid/late:1"
	LatePulls              = 3
)

// Kubelet is a fake kubelet for one namespace of the real API server. It
// registers a Node whose kubelet endpoint is its own HTTPS server on
// loopback (so that pods/log goes through the API server to it), binds
// each new pod that fits the node (node selector, NoSchedule/NoExecute
// taints tolerated) through the pods/binding subresource, and drives the
// pod's status through the pods/status subresource: Running after a short
// delay, then terminated with $RM_TEST_EXIT after $RM_TEST_SLEEP seconds,
// phase Succeeded or Failed. $RM_TEST_PRINT is the container's log. A pod
// deleted with a grace period is finished as a kubelet does: its container
// ends (exit code 137 when it was running) and the pod is deleted with
// grace 0, which nothing else would do in a server without kubelets.
type Kubelet struct {
	cs   k8s.Interface
	ns   string
	node *corev1.Node

	mu      sync.Mutex
	running map[types.UID]context.CancelFunc
	logs    map[string]string // pod name -> log
	errs    []error

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NodeShape is what the node offers: labels for node selectors and taints
// that pods must tolerate.
type NodeShape struct {
	Labels map[string]string
	Taints []corev1.Taint
}

func StartKubelet(t testing.TB, srv *kubeserver.Server, cs k8s.Interface, ns string, shape NodeShape) *Kubelet {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	k := &Kubelet{cs: cs, ns: ns, running: map[types.UID]context.CancelFunc{}, logs: map[string]string{}, ctx: ctx, cancel: cancel}

	cert, err := srv.KubeletCert()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(k.serveHTTP), TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	go hs.ServeTLS(ln, "", "")

	labels := map[string]string{"kubernetes.io/hostname": "node-" + ns}
	for key, v := range shape.Labels {
		labels[key] = v
	}
	node, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-" + ns, Labels: labels},
		Spec:       corev1.NodeSpec{Taints: shape.Taints},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create node: %v", err)
	}
	node.Status = corev1.NodeStatus{
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}, {Type: corev1.NodeHostName, Address: "127.0.0.1"}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(ln.Addr().(*net.TCPAddr).Port)}},
		Conditions:      []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
		Capacity:        corev1.ResourceList{corev1.ResourceCPU: resourceQ("64"), corev1.ResourceMemory: resourceQ("256Gi"), corev1.ResourcePods: resourceQ("500")},
		Allocatable:     corev1.ResourceList{corev1.ResourceCPU: resourceQ("64"), corev1.ResourceMemory: resourceQ("256Gi"), corev1.ResourcePods: resourceQ("500")},
	}
	if node, err = cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update node status: %v", err)
	}
	// The TaintNodesByCondition admission plugin tainted the new node
	// not-ready; the node lifecycle controller would lift that once the
	// node reports Ready, but none runs here.
	node.Spec.Taints = slices.DeleteFunc(node.Spec.Taints, func(t corev1.Taint) bool {
		return strings.HasPrefix(t.Key, "node.kubernetes.io/")
	})
	if k.node, err = cs.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("lift the not-ready taint: %v", err)
	}

	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
	inf := f.Core().V1().Pods().Informer()
	inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.handle(obj.(*corev1.Pod)) },
		UpdateFunc: func(_, obj any) { k.handle(obj.(*corev1.Pod)) },
	})
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("fake kubelet: pod informer did not sync")
	}
	t.Cleanup(func() {
		cancel()
		f.Shutdown()
		k.wg.Wait()
		hs.Close()
		cs.CoreV1().Nodes().Delete(context.Background(), node.Name, metav1.DeleteOptions{})
		k.mu.Lock()
		defer k.mu.Unlock()
		for _, err := range k.errs {
			t.Errorf("fake kubelet: %v", err)
		}
	})
	return k
}

// Node is the node the kubelet registered.
func (k *Kubelet) Node() *corev1.Node { return k.node }

func (k *Kubelet) fail(err error) {
	if err == nil || k.ctx.Err() != nil || errors.Is(err, context.Canceled) || apierrors.IsNotFound(err) {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.errs = append(k.errs, err)
}

// handle starts running a new pod, or finishes a pod being deleted.
func (k *Kubelet) handle(p *corev1.Pod) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ctx.Err() != nil {
		return
	}
	cancel, seen := k.running[p.UID]
	if p.DeletionTimestamp != nil {
		if cancel != nil {
			cancel()
		}
		k.running[p.UID] = nil
		if !seen || cancel != nil {
			k.wg.Add(1)
			go func() {
				defer k.wg.Done()
				k.finishDeleted(p)
			}()
		}
		return
	}
	if seen {
		return
	}
	ctx, cancel := context.WithCancel(k.ctx)
	k.running[p.UID] = cancel
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		k.run(ctx, p)
	}()
}

// fits reports whether the scheduler would place p on the node, and why not.
func (k *Kubelet) fits(p *corev1.Pod) (bool, string) {
	for key, v := range p.Spec.NodeSelector {
		if k.node.Labels[key] != v {
			return false, "node(s) didn't match Pod's node affinity/selector"
		}
	}
	for _, taint := range k.node.Spec.Taints {
		if taint.Effect == corev1.TaintEffectPreferNoSchedule {
			continue
		}
		ok := false
		for _, tol := range p.Spec.Tolerations {
			if tolerates(tol, taint) {
				ok = true
			}
		}
		if !ok {
			return false, "node(s) had untolerated taint {" + taint.Key + ": " + taint.Value + "}"
		}
	}
	return true, ""
}

func env(p *corev1.Pod) map[string]string {
	m := map[string]string{}
	for _, e := range p.Spec.Containers[0].Env {
		m[e.Name] = e.Value
	}
	return m
}

func (k *Kubelet) run(ctx context.Context, p *corev1.Pod) {
	if ok, why := k.fits(p); !ok {
		k.fail(k.setStatus(ctx, p.Name, func(s *corev1.PodStatus) {
			s.Phase = corev1.PodPending
			s.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
				Message: "0/1 nodes are available: 1 " + why + ".", LastTransitionTime: metav1.Now()}}
		}))
		return
	}
	if p.Spec.NodeName == "" {
		err := k.cs.CoreV1().Pods(k.ns).Bind(ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: k.ns, UID: p.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: k.node.Name},
		}, metav1.CreateOptions{})
		if err != nil {
			k.fail(err)
			return
		}
	}
	e := env(p)
	k.mu.Lock()
	k.logs[p.Name] = e["RM_TEST_PRINT"]
	k.mu.Unlock()
	image := p.Spec.Containers[0].Image
	switch image {
	case PullFailsImage:
		k.failPulls(ctx, p.Name, image, 1, 200*time.Millisecond)
		return
	case PullFailsThenRunsImage:
		if !k.failPulls(ctx, p.Name, image, LatePulls, 500*time.Millisecond) || !sleep(ctx, 500*time.Millisecond) {
			return
		}
	}
	if !sleep(ctx, 30*time.Millisecond) {
		return
	}
	started := metav1.Now()
	if err := k.setStatus(ctx, p.Name, func(s *corev1.PodStatus) {
		s.Phase = corev1.PodRunning
		s.StartTime = &started
		s.HostIP, s.PodIP = "127.0.0.1", "10.244.0.10"
		s.ContainerStatuses = []corev1.ContainerStatus{{Name: kubernetes.ContainerName, Image: image, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}}}
	}); err != nil {
		k.fail(err)
		return
	}
	secs, _ := strconv.ParseFloat(e["RM_TEST_SLEEP"], 64)
	code, _ := strconv.Atoi(e["RM_TEST_EXIT"])
	if !sleep(ctx, time.Duration(secs*float64(time.Second))) {
		return
	}
	k.fail(k.terminate(ctx, p.Name, int32(code), started))
}

// failPulls reports n failed pulls of image for pod name: each the
// waiting reason ErrImagePull, then after wait ImagePullBackOff. It
// reports whether ctx is still live.
func (k *Kubelet) failPulls(ctx context.Context, name, image string, n int, wait time.Duration) bool {
	for i := range 2 * n {
		reason := "ErrImagePull"
		if i%2 == 1 {
			reason = "ImagePullBackOff"
		}
		if i > 0 && !sleep(ctx, wait) {
			return false
		}
		k.fail(k.setStatus(ctx, name, func(s *corev1.PodStatus) {
			s.Phase = corev1.PodPending
			s.ContainerStatuses = []corev1.ContainerStatus{{Name: kubernetes.ContainerName, Image: image,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason,
					Message: `failed to pull and unpack image "` + image + `": not found`}}}}
		}))
	}
	return ctx.Err() == nil
}

// terminate records the container's end with code.
func (k *Kubelet) terminate(ctx context.Context, name string, code int32, started metav1.Time) error {
	return k.setStatus(ctx, name, func(s *corev1.PodStatus) {
		s.Phase = corev1.PodSucceeded
		reason := "Completed"
		if code != 0 {
			s.Phase, reason = corev1.PodFailed, "Error"
		}
		image := ""
		if len(s.ContainerStatuses) > 0 {
			image = s.ContainerStatuses[0].Image
		}
		s.ContainerStatuses = []corev1.ContainerStatus{{Name: kubernetes.ContainerName, Image: image,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: code, Reason: reason, StartedAt: started, FinishedAt: metav1.Now()}}}}
	})
}

// finishDeleted ends a pod being deleted: a running container is killed
// (137), then the pod object is removed with grace 0.
func (k *Kubelet) finishDeleted(p *corev1.Pod) {
	ctx := k.ctx
	cur, err := k.cs.CoreV1().Pods(k.ns).Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		k.fail(err)
		return
	}
	if cur.UID != p.UID {
		return
	}
	if cur.Status.Phase == corev1.PodRunning || cur.Status.Phase == corev1.PodPending && cur.Spec.NodeName != "" {
		started := metav1.Now()
		if cur.Status.StartTime != nil {
			started = *cur.Status.StartTime
		}
		k.fail(k.terminate(ctx, p.Name, 137, started))
	}
	zero := int64(0)
	uid := p.UID
	err = k.cs.CoreV1().Pods(k.ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
	if !apierrors.IsConflict(err) {
		k.fail(err)
	}
}

// setStatus writes a pod's status through the status subresource,
// retrying on conflicts.
func (k *Kubelet) setStatus(ctx context.Context, name string, f func(*corev1.PodStatus)) error {
	for {
		p, err := k.cs.CoreV1().Pods(k.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		f(&p.Status)
		_, err = k.cs.CoreV1().Pods(k.ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		if !apierrors.IsConflict(err) {
			return err
		}
	}
}

// serveHTTP answers the API server's pods/log requests:
// GET /containerLogs/<namespace>/<pod>/<container>.
func (k *Kubelet) serveHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/containerLogs/"), "/")
	if len(parts) != 3 || parts[0] != k.ns || parts[2] != kubernetes.ContainerName {
		http.NotFound(w, r)
		return
	}
	k.mu.Lock()
	text, ok := k.logs[parts[1]]
	k.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	if text != "" {
		text += "\n"
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write([]byte(text))
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func resourceQ(s string) resource.Quantity { return resource.MustParse(s) }

// tolerates is the scheduler's rule for the Equal and Exists operators.
func tolerates(tol corev1.Toleration, taint corev1.Taint) bool {
	if tol.Effect != "" && tol.Effect != taint.Effect || tol.Key != "" && tol.Key != taint.Key {
		return false
	}
	switch tol.Operator {
	case "", corev1.TolerationOpEqual:
		return tol.Value == taint.Value
	case corev1.TolerationOpExists:
		return true
	}
	return false
}
