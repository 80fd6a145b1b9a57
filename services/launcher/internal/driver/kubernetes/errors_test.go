package kubernetes_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/drivertest"
	"github.com/avxrm/rm/services/launcher/internal/driver/kubernetes"
)

// TestCreateErrors: what the API server answers a pod's creation decides
// whether the launcher fails the job at once (driver.ErrInvalidSpec: 422,
// the pod as specified is invalid and will stay so), reports the runtime
// unavailable and retries (driver.ErrUnavailable: no answer, 429, 500,
// 503, 504), or retries a plain start failure (403: RBAC, a quota, a
// LimitRange, a webhook's denial, any of which may pass later). A 422 was
// retried until the queue's start timeout (10 minutes by default), and an
// unreachable API server reported as StartFailed.
func TestCreateErrors(t *testing.T) {
	gr := schema.GroupResource{Resource: "pods"}
	invalid := apierrors.NewInvalid(schema.GroupKind{Kind: "Pod"}, "j-worker-0", field.ErrorList{
		field.Invalid(field.NewPath("spec", "containers").Index(0).Child("volumeMounts").Index(1).Child("mountPath"), "/data", "must be unique")})
	for name, tc := range map[string]struct {
		err                      error
		wantInvalid, wantUnavail bool
	}{
		"invalid (422)":             {err: invalid, wantInvalid: true},
		"quota (403)":               {err: apierrors.NewForbidden(gr, "j-worker-0", errors.New("exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1"))},
		"webhook unreachable (500)": {err: apierrors.NewInternalError(errors.New(`failed calling webhook "pods.example": connection refused`)), wantUnavail: true},
		"overloaded (429)":          {err: apierrors.NewTooManyRequests("the server has received too many requests", 1), wantUnavail: true},
		"unavailable (503)":         {err: apierrors.NewServiceUnavailable("etcd is down"), wantUnavail: true},
		"no answer":                 {err: errors.New(`Post "https://10.0.0.1/api/v1/namespaces/sims/pods": dial tcp 10.0.0.1:443: connect: connection refused`), wantUnavail: true},
	} {
		t.Run(name, func(t *testing.T) {
			cs := fake.NewClientset()
			cs.PrependReactor("create", "pods", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, tc.err })
			d, err := kubernetes.NewWithClient(cs, ns, driver.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			ref := driver.Ref{JobID: "j", Role: driver.RoleWorker}
			err = d.Start(context.Background(), driver.Spec{Ref: ref, Name: ref.Name(), Image: "img"})
			if err == nil {
				t.Fatal("Start() succeeded")
			}
			if got := errors.Is(err, driver.ErrInvalidSpec); got != tc.wantInvalid {
				t.Errorf("Start() error %q: ErrInvalidSpec %v, want %v", err, got, tc.wantInvalid)
			}
			if got := errors.Is(err, driver.ErrUnavailable); got != tc.wantUnavail {
				t.Errorf("Start() error %q: ErrUnavailable %v, want %v", err, got, tc.wantUnavail)
			}
			if !strings.Contains(err.Error(), tc.err.Error()) {
				t.Errorf("Start() error %q does not carry the server's %q", err, tc.err)
			}
		})
	}
}

// TestDeletedBySomeoneElseIsLost: a pod that starts terminating, or goes,
// before it ended and not at the driver's request (kubectl delete pod, a
// drain's eviction, the taint manager on a lost node, a preemption) is
// reported lost (driver.ReasonLost), with what its DisruptionTarget
// condition says; a pod the driver itself stops is not. The end is when
// the deletion was asked, not the end of its grace period, which the API
// server puts in the deletionTimestamp.
func TestDeletedBySomeoneElseIsLost(t *testing.T) {
	ctx := context.Background()
	cs, d, _, await := watchFake(t)
	job := drivertest.JobID(t)
	running := func(i int) driver.Ref {
		t.Helper()
		ref := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: i}
		if err := d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Image: "img"}); err != nil {
			t.Fatal(err)
		}
		if !setStatus(ctx, cs, ref.Name(), func(s *corev1.PodStatus) {
			s.Phase = corev1.PodRunning
			s.ContainerStatuses = []corev1.ContainerStatus{{Name: kubernetes.ContainerName,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}}
		}) {
			t.Fatal("set status")
		}
		await(ref, "Running", func(st driver.Status) bool { return st.State == driver.Running })
		return ref
	}
	final := func(st driver.Status) bool { return st.State.Final() }

	// Evicted by a node drain: the eviction API sets the condition, then
	// deletes the pod with its grace period (the kubelet then has 30 s).
	evicted := running(0)
	asked := time.Now().Truncate(time.Second)
	p, err := cs.CoreV1().Pods(ns).Get(ctx, evicted.Name(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	grace := int64(30)
	end := metav1.NewTime(asked.Add(30 * time.Second))
	p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &end, &grace
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue,
		Reason: "EvictionByEvictionAPI", Message: "Eviction API: evicting"})
	if _, err := cs.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	st := await(evicted, "the end", final)
	if st.State != driver.Failed || st.Reason != driver.ReasonLost ||
		st.Message != "pod deleted by someone else than the launcher (EvictionByEvictionAPI: Eviction API: evicting)" {
		t.Errorf("evicted pod: %s, reason %q, message %q; want Failed, %s, with the eviction's reason", st.State, st.Reason, st.Message, driver.ReasonLost)
	}
	if !st.FinishedAt.Equal(asked) {
		t.Errorf("evicted pod finished at %v, want %v, when the deletion was asked (not the end of its grace period)", st.FinishedAt, asked)
	}
	if err := cs.CoreV1().Pods(ns).Delete(ctx, evicted.Name(), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if st := await(evicted, "Removed", func(st driver.Status) bool { return st.Removed }); st.Reason != driver.ReasonLost {
		t.Errorf("evicted pod, removed: %+v, want its lost status again", st)
	}

	// Deleted at once (grace 0, or a pod no node took).
	forced := running(1)
	if err := cs.CoreV1().Pods(ns).Delete(ctx, forced.Name(), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if st := await(forced, "the end", final); st.State != driver.Failed || st.Reason != driver.ReasonLost {
		t.Errorf("pod deleted by someone else: %s, reason %q, message %q; want Failed, %s", st.State, st.Reason, st.Message, driver.ReasonLost)
	}

	// Stopped by the driver: not lost.
	stopped := running(2)
	if err := d.Stop(ctx, stopped); err != nil {
		t.Fatal(err)
	}
	if st := await(stopped, "the end", final); st.State != driver.Failed || st.Reason != "" || st.Message != "pod deleted" {
		t.Errorf("pod stopped by the driver: %s, reason %q, message %q; want Failed, no reason, pod deleted", st.State, st.Reason, st.Message)
	}
	if err := d.Cleanup(ctx, job); err != nil {
		t.Fatal(err)
	}
	// What the driver deleted is forgotten once gone.
	if n := kubernetes.PendingDeletions(d); n != 0 {
		t.Errorf("the driver still notes %d deletions of pods that are gone", n)
	}
}

var _ = fake.NewClientset
