package kubernetes_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/drivertest"
	"github.com/avxrm/rm/services/launcher/internal/driver/kubernetes"
)

// gracefulDeletes makes the fake API server delete pods as the real one
// does (pkg/registry/core/pod/strategy.go, CheckGracefulDelete): a pod
// bound to a node and not ended is only marked, its deletionTimestamp the
// end of its grace period (30 s), until its kubelet deletes it with grace
// 0; others go at once.
func gracefulDeletes(cs *fake.Clientset) {
	pods := corev1.SchemeGroupVersion.WithResource("pods")
	cs.PrependReactor("delete", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		da := a.(k8stesting.DeleteActionImpl)
		if g := da.DeleteOptions.GracePeriodSeconds; g != nil && *g == 0 {
			return false, nil, nil
		}
		obj, err := cs.Tracker().Get(pods, da.Namespace, da.Name)
		if err != nil {
			return false, nil, nil
		}
		p := obj.(*corev1.Pod).DeepCopy()
		if p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			return false, nil, nil
		}
		if p.DeletionTimestamp == nil {
			grace := int64(30)
			end := metav1.NewTime(time.Now().Add(30 * time.Second))
			p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &end, &grace
			if err := cs.Tracker().Update(pods, p, da.Namespace); err != nil {
				return true, nil, err
			}
		}
		return true, nil, nil
	})
}

// TestStartAfterCleanupOfATerminatingPod: a job retried after one of its
// instances failed has its other instances stopped and cleaned up, then
// started afresh under the same names, at once. A stopped pod terminates
// for up to its grace period, and its name is still taken meanwhile. Start
// took that pod for the new instance (a no-op), and the stopped program's
// end (137) then read as the new instance's: the new attempt failed. Now
// Start fails, to be retried, until the old pod is gone, and nothing the
// old pod reports after the cleanup is reported as its instance's.
func TestStartAfterCleanupOfATerminatingPod(t *testing.T) {
	ctx := context.Background()
	cs, d, ch, await := watchFake(t)
	gracefulDeletes(cs)
	job := drivertest.JobID(t)
	ref := driver.Ref{JobID: job, Role: driver.RoleWorker}
	spec := driver.Spec{Ref: ref, Name: ref.Name(), Image: "img"}
	if err := d.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	// Bound and running, as the scheduler and the kubelet make it.
	p, err := cs.CoreV1().Pods(ns).Get(ctx, ref.Name(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	oldUID := p.UID
	p.Spec.NodeName = "node-1"
	if _, err := cs.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	started := metav1.Now()
	setStatus(ctx, cs, ref.Name(), func(s *corev1.PodStatus) {
		s.Phase = corev1.PodRunning
		s.ContainerStatuses = []corev1.ContainerStatus{{Name: kubernetes.ContainerName, ContainerID: "containerd://1",
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}}}
	})
	await(ref, "Running", func(st driver.Status) bool { return st.State == driver.Running })

	if err := d.Stop(ctx, ref); err != nil {
		t.Fatal(err)
	}
	await(ref, "the stop", func(st driver.Status) bool { return st.State == driver.Failed })
	if err := d.Cleanup(ctx, job); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx, spec); err == nil || !strings.Contains(err.Error(), "still terminating") {
		t.Errorf("Start() while the stopped pod terminates: error = %v, want one saying it is still terminating", err)
	}

	// The kubelet ends the stopped program (SIGKILL at the end of the
	// grace period) and deletes the pod.
	setStatus(ctx, cs, ref.Name(), func(s *corev1.PodStatus) {
		s.Phase = corev1.PodFailed
		s.ContainerStatuses = []corev1.ContainerStatus{{Name: kubernetes.ContainerName, ContainerID: "containerd://1",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "Error", StartedAt: started, FinishedAt: metav1.Now()}}}}
	})
	zero := int64(0)
	if err := cs.CoreV1().Pods(ns).Delete(ctx, ref.Name(), metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(300 * time.Millisecond)
	for quiet := false; !quiet; {
		select {
		case st := <-ch:
			if st.Ref == ref {
				t.Errorf("after the cleanup, the old pod reported %s (code %v, %q, removed %v) for the instance", st.State, codeOf(st), st.Message, st.Removed)
			}
		case <-deadline:
			quiet = true
		}
	}

	// Gone: the start makes a new pod, which reports as the instance.
	if err := d.Start(ctx, spec); err != nil {
		t.Fatalf("Start() once the old pod is gone: %v", err)
	}
	p, err = cs.CoreV1().Pods(ns).Get(ctx, ref.Name(), metav1.GetOptions{})
	if err != nil || p.UID == oldUID {
		t.Fatalf("after the start: pod %v (uid %s, the old one's %s), error %v", p.Name, p.UID, oldUID, err)
	}
	if st := await(ref, "the new pod's status", func(driver.Status) bool { return true }); st.State != driver.Pending {
		t.Errorf("new pod: %s %q, want Pending", st.State, st.Message)
	}
}

func codeOf(st driver.Status) any {
	if st.ExitCode == nil {
		return nil
	}
	return *st.ExitCode
}
