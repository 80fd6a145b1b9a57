package kubernetes

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/avxrm/rm/services/launcher/internal/driver"
)

// Reap deletes the pod of r once it has ended (driver.Reaper): the
// launcher calls it after the job record holds the instance's end, so
// that a finished job leaves no pod behind and its leases are released
// only once its pods are gone. The pod is deleted at once (nothing runs
// in it) and only that pod (its uid as a precondition); when the informer
// sees it go, Watch reports its final status again with Removed set. The
// pod is looked up in the informer's cache, so a reap costs one API call.
// A pod that has not ended, or is already being deleted, is left alone.
func (d *Driver) Reap(ctx context.Context, r driver.Ref) error {
	p, err := d.pods.Get(r.Name())
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("kubernetes: reap %s: %w", r, err)
	}
	if got, ok := refOf(p); !ok || got != r || !ended(p) || p.DeletionTimestamp != nil {
		return nil
	}
	if err := d.delete(ctx, p); err != nil {
		return fmt.Errorf("kubernetes: reap %s: %w", r, err)
	}
	return nil
}

// ended reports whether nothing runs in p any more: its phase is final,
// its one container has terminated (restart policy Never), or it waits
// for an image the kubelet will never try (imageNeverReasons), which the
// driver reports Failed.
func ended(p *corev1.Pod) bool {
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return true
	}
	for _, c := range p.Status.ContainerStatuses {
		if c.Name != ContainerName {
			continue
		}
		if c.State.Terminated != nil || c.State.Waiting != nil && imageNeverReasons[c.State.Waiting.Reason] {
			return true
		}
	}
	return false
}
