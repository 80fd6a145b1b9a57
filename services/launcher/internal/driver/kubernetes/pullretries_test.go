package kubernetes_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/drivertest"
	"github.com/avxrm/rm/services/launcher/internal/driver/kubernetes"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestImagePullRetryCount: while the kubelet cannot pull a pod's image it
// alternates ErrImagePull (a failed pull) and ImagePullBackOff (waiting to
// pull again); the driver's message carries how many pulls failed, as the
// launcher's does for a driver whose Start fails, so the job's Started
// condition and warning carry the retry count on kubernetes too.
func TestImagePullRetryCount(t *testing.T) {
	ctx := context.Background()
	cs, d, _, await := watchFake(t)
	ref := driver.Ref{JobID: drivertest.JobID(t), Role: driver.RoleWorker, Index: 0}
	if err := d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Image: "busybox:nope"}); err != nil {
		t.Fatal(err)
	}
	wait := func(want string) {
		t.Helper()
		st := await(ref, fmt.Sprintf("message %q", want), func(st driver.Status) bool { return st.Message == want })
		if st.State != driver.Pending || st.Reason != driver.ReasonImagePullFailed {
			t.Errorf("status %+v, want Pending, %s", st, driver.ReasonImagePullFailed)
		}
	}
	waiting := func(reason, msg string) {
		t.Helper()
		if !setStatus(ctx, cs, ref.Name(), func(s *corev1.PodStatus) {
			s.Phase = corev1.PodPending
			s.ContainerStatuses = []corev1.ContainerStatus{{Name: kubernetes.ContainerName,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}}}
		}) {
			t.Fatal("update status failed")
		}
	}
	const pullErr = `failed to pull image "busybox:nope": not found`
	const backOff = `Back-off pulling image "busybox:nope"`
	waiting("ErrImagePull", pullErr)
	wait("ErrImagePull: " + pullErr + "; retry 1 (the kubelet's back-off)")
	waiting("ImagePullBackOff", backOff)
	wait("ImagePullBackOff: " + backOff + "; retry 1 (the kubelet's back-off)")
	waiting("ErrImagePull", pullErr)
	wait("ErrImagePull: " + pullErr + "; retry 2 (the kubelet's back-off)")
	waiting("ImagePullBackOff", backOff)
	wait("ImagePullBackOff: " + backOff + "; retry 2 (the kubelet's back-off)")

	list, err := d.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || !strings.HasSuffix(list[0].Message, "; retry 2 (the kubelet's back-off)") {
		t.Errorf("List() = %+v, want the count of 2", list)
	}
}

// TestImageNeverHad: a container waiting as InvalidImageName (the kubelet
// cannot parse the image) or ErrImageNeverPull (pull policy Never, image
// absent) is never pulled for the same spec; the instance fails at once
// with the kubelet's reason and message instead of waiting, Pending, for
// the job's start timeout; and, ended, it is reaped.
func TestImageNeverHad(t *testing.T) {
	ctx := context.Background()
	cs, d, _, await := watchFake(t)
	job := drivertest.JobID(t)
	for i, tc := range []struct{ reason, msg string }{
		{"InvalidImageName", `Failed to apply default image tag "Busybox": couldn't parse image name "Busybox": invalid reference format`},
		{"ErrImageNeverPull", `Container image "sim:1" is not present with pull policy of Never`},
	} {
		ref := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: i}
		if err := d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Image: "sim:1"}); err != nil {
			t.Fatal(err)
		}
		if !setStatus(ctx, cs, ref.Name(), func(s *corev1.PodStatus) {
			// As the kubelet does: the pod's StartTime is set when it
			// takes the pod, though its container never starts.
			taken := metav1.Now()
			s.Phase, s.StartTime = corev1.PodPending, &taken
			s.ContainerStatuses = []corev1.ContainerStatus{{Name: kubernetes.ContainerName,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: tc.reason, Message: tc.msg}}}}
		}) {
			t.Fatal("update status failed")
		}
		want := tc.reason + ": " + tc.msg
		st := await(ref, "Failed", func(st driver.Status) bool { return st.State != driver.Pending })
		if st.State != driver.Failed || st.Message != want || st.Reason != driver.ReasonNeverRuns || st.ExitCode != nil || st.FinishedAt.IsZero() || !st.StartedAt.IsZero() {
			t.Errorf("%s: status %+v, want Failed with %q, reason NeverRuns, no exit code or start, a finish time", tc.reason, st, want)
		}
		// Its end recorded, the launcher reaps it (and waits for that
		// before the job's final status): the pod goes.
		if err := d.Reap(ctx, ref); err != nil {
			t.Fatal(err)
		}
		if gone := await(ref, "Removed", func(st driver.Status) bool { return st.Removed }); gone.State != driver.Failed || gone.Message != want {
			t.Errorf("%s: status once reaped %+v, want the final one", tc.reason, gone)
		}
	}
}
