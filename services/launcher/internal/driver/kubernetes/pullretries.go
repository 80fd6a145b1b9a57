package kubernetes

import (
	"fmt"
	"sync"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// pullFailures counts, per pod, the failed pulls of its image: each time
// the kubelet reports the container waiting with ErrImagePull, after which
// it backs off (ImagePullBackOff) and pulls again. The count goes into the
// status message ("; retry 3 (the kubelet's back-off)"), so that the job's
// Started condition and warning carry the retry count as they do for the
// drivers whose Start fails and the launcher retries. It lives in memory
// only: a new driver counts from the pull it sees next.
type pullFailures struct {
	mu     sync.Mutex
	reason map[types.UID]string // the waiting reason last seen
	n      map[types.UID]int
}

// note records the waiting reason of pod p (when record) and appends the
// count of its failed pulls to st's message while its image cannot be had.
func (f *pullFailures) note(p *corev1.Pod, st *driver.Status, record bool) {
	reason := waitingReason(p)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == nil {
		f.reason, f.n = map[types.UID]string{}, map[types.UID]int{}
	}
	if record && reason != f.reason[p.UID] {
		if reason == "ErrImagePull" {
			f.n[p.UID]++
		}
		f.reason[p.UID] = reason
	}
	if n := f.n[p.UID]; n > 0 && st.Reason == driver.ReasonImagePullFailed {
		st.Message += fmt.Sprintf("; retry %d (the kubelet's back-off)", n)
	}
}

// forget drops what is known of pod p.
func (f *pullFailures) forget(p *corev1.Pod) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.reason, p.UID)
	delete(f.n, p.UID)
}

// waitingReason is why the instance container of p waits; "" if it does not.
func waitingReason(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == ContainerName && cs.State.Waiting != nil {
			return cs.State.Waiting.Reason
		}
	}
	return ""
}
