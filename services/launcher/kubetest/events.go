package kubetest

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// PodEvent is one event of a watch of pods.
type PodEvent struct {
	Type string // ADDED, MODIFIED, DELETED
	Pod  *corev1.Pod
}

// NextPodEvent returns the next event of w, a watch of pods. It fails t
// when the watch ends or sends anything but a pod, and returns false once
// timeout fires.
func NextPodEvent(t *testing.T, w watch.Interface, timeout <-chan time.Time) (PodEvent, bool) {
	t.Helper()
	select {
	case raw, ok := <-w.ResultChan():
		if !ok {
			t.Fatal("the watch of pods ended")
		}
		p, isPod := raw.Object.(*corev1.Pod)
		if !isPod {
			t.Fatalf("watch event %s %T", raw.Type, raw.Object)
		}
		return PodEvent{Type: string(raw.Type), Pod: p}, true
	case <-timeout:
		return PodEvent{}, false
	}
}

// QueueTolerations returns a pod's tolerations less the two that the
// DefaultTolerationSeconds admission plugin adds to every pod (NoExecute
// on node.kubernetes.io/not-ready and unreachable, for 300s).
func QueueTolerations(p *corev1.Pod) []corev1.Toleration {
	return slices.DeleteFunc(slices.Clone(p.Spec.Tolerations), func(t corev1.Toleration) bool {
		return (t.Key == "node.kubernetes.io/not-ready" || t.Key == "node.kubernetes.io/unreachable") &&
			t.Effect == corev1.TaintEffectNoExecute && t.TolerationSeconds != nil && *t.TolerationSeconds == 300
	})
}
