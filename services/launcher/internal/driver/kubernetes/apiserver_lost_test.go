//go:build kube

package kubernetes_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/drivertest"
	"github.com/avxrm/rm/services/launcher/internal/driver/kubernetes"
)

// TestAPIServerCreateRefusals: what the real API server refuses at a
// pod's creation. Its validation (422) refuses the pod as specified for
// good: driver.ErrInvalidSpec, the job fails at once with the server's
// words (before, the start was retried until the queue's start timeout,
// 10 minutes by default). Admission (403: a LimitRange, a full quota) may
// pass later: retried, the server's words in the error.
func TestAPIServerCreateRefusals(t *testing.T) {
	ctx := context.Background()
	e := envFor(t)
	d := newRealDriver(t)
	job := drivertest.JobID(t)
	spec := func(i int, edit func(*driver.Spec)) driver.Spec {
		r := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: i}
		s := driver.Spec{Ref: r, Name: r.Name(), Image: "registry.example/sim:1", Env: map[string]string{"RM_TEST_SLEEP": "600"}}
		edit(&s)
		return s
	}
	for i, tc := range []struct {
		name string
		edit func(*driver.Spec)
		want string
	}{
		{"two storages at one mount path", func(s *driver.Spec) {
			s.Storages = []driver.Storage{{Name: "a", Type: driver.StorageEmptyDir, MountPath: "/data"}, {Name: "b", Type: driver.StorageEmptyDir, MountPath: "/data"}}
		}, "must be unique"},
		{"an environment variable named with '='", func(s *driver.Spec) { s.Env["A=B"] = "x" }, "environment variable name"},
		{"a node selector value with a space", func(s *driver.Spec) { s.NodeSelector = map[string]string{"zone": "eu west"} }, "spec.nodeSelector"},
	} {
		err := d.Start(ctx, spec(i, tc.edit))
		if !errors.Is(err, driver.ErrInvalidSpec) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Start() error = %v, want ErrInvalidSpec with the server's %q", tc.name, err, tc.want)
		}
	}

	lr := &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "max-cpu"}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{
		{Type: corev1.LimitTypeContainer, Max: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}}}}
	if _, err := admin.CoreV1().LimitRanges(e.ns).Create(ctx, lr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := d.Start(ctx, spec(10, func(s *driver.Spec) { s.Resources.CPU = "2" }))
	if err == nil || errors.Is(err, driver.ErrInvalidSpec) || !strings.Contains(err.Error(), "maximum cpu usage per Container is 1") {
		t.Errorf("over the LimitRange: Start() error = %v, want a retried one with the server's words", err)
	}
	if err := admin.CoreV1().LimitRanges(e.ns).Delete(ctx, lr.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	// A quota of one pod, its usage as the quota controller (none runs
	// here) would write it.
	q, err := admin.CoreV1().ResourceQuotas(e.ns).Create(ctx, &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "one-pod"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("1")}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	q.Status = corev1.ResourceQuotaStatus{Hard: q.Spec.Hard, Used: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("1")}}
	if _, err := admin.CoreV1().ResourceQuotas(e.ns).UpdateStatus(ctx, q, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		err = d.Start(ctx, spec(11, func(*driver.Spec) {}))
		if err != nil || time.Now().After(deadline) {
			break
		}
		// The quota admission's informer had not seen the quota yet.
		if err := d.Cleanup(ctx, job); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err == nil || errors.Is(err, driver.ErrInvalidSpec) || !strings.Contains(err.Error(), "exceeded quota") {
		t.Errorf("over the quota: Start() error = %v, want a retried one saying exceeded quota", err)
	}
	if err := admin.CoreV1().ResourceQuotas(e.ns).Delete(ctx, q.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := d.Cleanup(ctx, job); err != nil {
		t.Fatal(err)
	}
}

// TestAPIServerDeletedBySomeoneElse: a running pod deleted by someone else
// than the driver, as kubectl delete pod does (with its grace period), as
// a node drain does (the eviction API), or forced (grace 0), is lost
// (driver.ReasonLost: the job's retry_on "lost" retries it), with what
// the pod's DisruptionTarget condition says; stopped by the driver, it is
// not. Its end is when the deletion was asked: the server puts the end of
// the grace period, 30 s ahead, in the deletionTimestamp.
func TestAPIServerDeletedBySomeoneElse(t *testing.T) {
	ctx := context.Background()
	e := envFor(t)
	d := newRealDriver(t)
	wait := watchStatuses(t, d)
	job := drivertest.JobID(t)
	running := func(i int) driver.Ref {
		t.Helper()
		r := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: i}
		if err := d.Start(ctx, driver.Spec{Ref: r, Name: r.Name(), Image: "registry.example/sim:1", Env: map[string]string{"RM_TEST_SLEEP": "600"}}); err != nil {
			t.Fatal(err)
		}
		wait(r, "Running", func(st driver.Status) bool { return st.State == driver.Running })
		return r
	}
	zero := int64(0)
	for i, tc := range []struct {
		how     string
		del     func(name string) error
		wantMsg string
	}{
		{"kubectl delete pod", func(name string) error {
			return admin.CoreV1().Pods(e.ns).Delete(ctx, name, metav1.DeleteOptions{})
		}, "pod deleted by someone else than the launcher"},
		{"kubectl drain (eviction)", func(name string) error {
			return admin.CoreV1().Pods(e.ns).EvictV1(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns}})
		}, "pod deleted by someone else than the launcher (EvictionByEvictionAPI: Eviction API: evicting)"},
		{"kubectl delete pod --force --grace-period=0", func(name string) error {
			return admin.CoreV1().Pods(e.ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		}, "pod deleted by someone else than the launcher"},
	} {
		r := running(i)
		asked := time.Now()
		if err := tc.del(r.Name()); err != nil {
			t.Fatalf("%s: %v", tc.how, err)
		}
		st := wait(r, "the end", final)
		if st.State != driver.Failed || st.Reason != driver.ReasonLost || st.Message != tc.wantMsg {
			t.Errorf("%s: %s, reason %q, message %q; want Failed, %s, %q", tc.how, st.State, st.Reason, st.Message, driver.ReasonLost, tc.wantMsg)
		}
		if st.FinishedAt.After(time.Now()) || st.FinishedAt.Before(asked.Add(-time.Second)) {
			t.Errorf("%s: finished at %v, want when the deletion was asked, %v", tc.how, st.FinishedAt, asked)
		}
	}
	stopped := running(9)
	if err := d.Stop(ctx, stopped); err != nil {
		t.Fatal(err)
	}
	if st := wait(stopped, "the end", final); st.State != driver.Failed || st.Reason != "" {
		t.Errorf("stopped by the driver: %s, reason %q, message %q; want Failed without a reason", st.State, st.Reason, st.Message)
	}
	if err := d.Cleanup(ctx, job); err != nil {
		t.Fatal(err)
	}
}

// slowNode is a namespace whose pods no fake kubelet runs: the test binds
// them to a node it made and plays the kubelet by hand, slowly, as a real
// one whose program takes its grace period to end. The node's kubelet
// endpoint is a server of the test that answers pods/log as a kubelet
// does for a container that has not run: 400, "container … is waiting to
// start: …" (pkg/kubelet/kubelet_pods.go, validateContainerLogStatus).
func slowNode(t *testing.T) (*realEnv, string) {
	t.Helper()
	ctx := context.Background()
	ns := newNamespace(t)
	applyRBAC(t, ns, nil)
	e := &realEnv{ns: ns, kubeconfig: srv.Kubeconfig(saToken(t, ns), ns)}

	cert, err := srv.KubeletCert()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0") // the test's kubelet endpoint
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/containerLogs/"), "/")
		if len(parts) != 3 {
			http.NotFound(w, r)
			return
		}
		http.Error(w, fmt.Sprintf("container %q in pod %q is waiting to start: ContainerCreating", parts[2], parts[1]), http.StatusBadRequest)
	})}
	go hs.ServeTLS(ln, "", "")
	t.Cleanup(func() { hs.Close() })
	node, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "slow-" + ns}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.CoreV1().Nodes().Delete(context.Background(), node.Name, metav1.DeleteOptions{}) })
	node.Status = corev1.NodeStatus{
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(ln.Addr().(*net.TCPAddr).Port)}},
	}
	if _, err := admin.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return e, node.Name
}

// kubeletSets writes a pod's status as its kubelet would.
func kubeletSets(t *testing.T, ns, name string, f func(*corev1.PodStatus)) {
	t.Helper()
	for {
		p, err := admin.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		f(&p.Status)
		_, err = admin.CoreV1().Pods(ns).UpdateStatus(context.Background(), p, metav1.UpdateOptions{})
		if err == nil {
			return
		}
		if !strings.Contains(err.Error(), "the object has been modified") {
			t.Fatal(err)
		}
	}
}

// TestAPIServerStartWhileTerminating: a job retried after an instance
// failed has its other instances stopped and cleaned up, and the next
// attempt starts instances of the same names at once. A stopped pod keeps
// its name while its program has its grace period to end. Start took that
// pod for the new instance, and the stopped program's end (137) then read
// as the new instance's. Now Start fails (the launcher retries it) until
// the old pod is gone, and what the old pod reports after the cleanup is
// not reported. A pod whose container has not run yet has an empty log,
// not an error (the kubelet answers 400).
func TestAPIServerStartWhileTerminating(t *testing.T) {
	ctx := context.Background()
	e, node := slowNode(t)
	d, err := newLauncherDriver(t, e)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := d.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := driver.Ref{JobID: drivertest.JobID(t), Role: driver.RoleWorker}
	spec := driver.Spec{Ref: r, Name: r.Name(), Image: "registry.example/sim:1"}
	next := func(what string) driver.Status {
		t.Helper()
		for {
			select {
			case st := <-ch:
				if st.Ref == r {
					return st
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("no status of %s: %s", r, what)
			}
		}
	}
	if err := d.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	next("created")
	if err := admin.CoreV1().Pods(e.ns).Bind(ctx, &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: r.Name()},
		Target: corev1.ObjectReference{Kind: "Node", Name: node}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubeletSets(t, e.ns, r.Name(), func(s *corev1.PodStatus) {
		s.Phase = corev1.PodPending
		s.ContainerStatuses = []corev1.ContainerStatus{{Name: "instance", Image: spec.Image,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}
	})
	if st := next("ContainerCreating"); st.State != driver.Pending {
		t.Fatalf("%s %q, want Pending", st.State, st.Message)
	}
	rc, err := d.Logs(ctx, r)
	if err != nil {
		t.Errorf("Logs() of a container that has not run: %v, want an empty log", err)
	} else {
		if b, _ := io.ReadAll(rc); len(b) != 0 {
			t.Errorf("Logs() of a container that has not run = %q", b)
		}
		rc.Close()
	}
	started := metav1.Now()
	kubeletSets(t, e.ns, r.Name(), func(s *corev1.PodStatus) {
		s.Phase = corev1.PodRunning
		s.ContainerStatuses = []corev1.ContainerStatus{{Name: "instance", Image: spec.Image, ContainerID: "containerd://1",
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}}}
	})
	if st := next("Running"); st.State != driver.Running {
		t.Fatalf("%s %q, want Running", st.State, st.Message)
	}

	// The launcher stops it (another instance failed), then cleans up.
	if err := d.Stop(ctx, r); err != nil {
		t.Fatal(err)
	}
	if st := next("the stop"); st.State != driver.Failed {
		t.Fatalf("%s %q after Stop, want Failed", st.State, st.Message)
	}
	if err := d.Cleanup(ctx, r.JobID); err != nil {
		t.Fatal(err)
	}
	p, err := admin.CoreV1().Pods(e.ns).Get(ctx, r.Name(), metav1.GetOptions{})
	if err != nil || p.DeletionTimestamp == nil {
		t.Fatalf("after the cleanup the pod should still be terminating: %v, %v", p.DeletionTimestamp, err)
	}
	if err := d.Start(ctx, spec); err == nil || !strings.Contains(err.Error(), "still terminating") {
		t.Errorf("Start() while the stopped pod terminates: error = %v, want one saying it is still terminating", err)
	}

	// The kubelet ends the program at the end of its grace period and
	// deletes the pod.
	kubeletSets(t, e.ns, r.Name(), func(s *corev1.PodStatus) {
		s.Phase = corev1.PodFailed
		s.ContainerStatuses = []corev1.ContainerStatus{{Name: "instance", Image: spec.Image, ContainerID: "containerd://1",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "Error", StartedAt: started, FinishedAt: metav1.Now()}}}}
	})
	zero := int64(0)
	if err := admin.CoreV1().Pods(e.ns).Delete(ctx, r.Name(), metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, e.ns, r.Name())
	select {
	case st := <-ch:
		if st.Ref == r {
			t.Errorf("after the cleanup the old pod reported %s (code %v, %q, removed %v) as the instance's", st.State, codeOf(st), st.Message, st.Removed)
		}
	case <-time.After(time.Second):
	}
	if err := d.Start(ctx, spec); err != nil {
		t.Fatalf("Start() once the old pod is gone: %v", err)
	}
	if st := next("the new pod"); st.State != driver.Pending {
		t.Errorf("new pod: %s %q, want Pending", st.State, st.Message)
	}
	if err := d.Cleanup(ctx, r.JobID); err != nil {
		t.Fatal(err)
	}
}

// TestAPIServerWrongNamespace: a plugin whose namespace does not exist (or
// is not the one of the launcher's Role) is granted nothing there; New
// says so, not only that the Role lacks every verb.
func TestAPIServerWrongNamespace(t *testing.T) {
	e := envFor(t)
	cfg, _ := json.Marshal(driver.KubernetesConfig{Namespace: e.ns + "-missing", Kubeconfig: e.kubeconfig})
	d, err := kubernetes.New(cfg, driver.Options{})
	if err == nil {
		d.Close()
		t.Fatal("New() in a namespace that does not exist succeeded")
	}
	if !strings.Contains(err.Error(), "check that the namespace exists") {
		t.Errorf("New() error = %v, want it to point at the namespace", err)
	}
}
