package kubernetes_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/drivertest"
	"github.com/avxrm/rm/services/launcher/internal/driver/kubernetes"
)

const ns = "sims"

// cluster is a fake API server plus a fake kubelet that runs every created
// pod: Running shortly after creation, then terminated with
// $RM_TEST_EXIT after $RM_TEST_SLEEP seconds. Like the real API server, it
// gives created pods a UID and phase Pending.
var cluster = drivertest.PerTest(func(t *testing.T) *fake.Clientset {
	cs := fake.NewClientset()
	var uids atomic.Int64
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		if p.UID == "" {
			p.UID = types.UID("uid-" + strconv.FormatInt(uids.Add(1), 10))
		}
		p.Status.Phase = corev1.PodPending
		return false, nil, nil
	})
	startKubelet(t, cs)
	return cs
})

func startKubelet(t *testing.T, cs *fake.Clientset) {
	ctx, cancel := context.WithCancel(context.Background())
	w, err := cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); w.Stop(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ev := range w.ResultChan() {
			if ev.Type != watch.Added {
				continue
			}
			p := ev.Object.(*corev1.Pod)
			wg.Add(1)
			go func() {
				defer wg.Done()
				runPod(ctx, cs, p)
			}()
		}
	}()
}

func runPod(ctx context.Context, cs *fake.Clientset, p *corev1.Pod) {
	env := map[string]string{}
	for _, e := range p.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	secs, _ := strconv.ParseFloat(env["RM_TEST_SLEEP"], 64)
	code, _ := strconv.Atoi(env["RM_TEST_EXIT"])
	sleep := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	if !sleep(30 * time.Millisecond) {
		return
	}
	started := metav1.Now()
	if !setStatus(ctx, cs, p.Name, func(s *corev1.PodStatus) {
		s.Phase = corev1.PodRunning
		s.StartTime = &started
		s.ContainerStatuses = []corev1.ContainerStatus{{Name: kubernetes.ContainerName,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}}}
	}) {
		return
	}
	if !sleep(time.Duration(secs * float64(time.Second))) {
		return
	}
	setStatus(ctx, cs, p.Name, func(s *corev1.PodStatus) {
		s.Phase = corev1.PodSucceeded
		reason := "Completed"
		if code != 0 {
			s.Phase, reason = corev1.PodFailed, "Error"
		}
		s.ContainerStatuses = []corev1.ContainerStatus{{Name: kubernetes.ContainerName,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: int32(code), Reason: reason, StartedAt: started, FinishedAt: metav1.Now()}}}}
	})
}

// watchFake makes a driver on a fake API server (no kubelet: the test sets
// pod statuses) and watches it; await waits up to 10 s for a status of ref
// that ok accepts, skipping others.
func watchFake(t *testing.T) (*fake.Clientset, *kubernetes.Driver, <-chan driver.Status, func(ref driver.Ref, what string, ok func(driver.Status) bool) driver.Status) {
	t.Helper()
	cs := fake.NewClientset()
	// As the real API server, give created pods a UID.
	var uids atomic.Int64
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		if p.UID == "" {
			p.UID = types.UID("uid-" + strconv.FormatInt(uids.Add(1), 10))
		}
		return false, nil, nil
	})
	d, err := kubernetes.NewWithClient(cs, ns, driver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	ch, err := d.Watch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	await := func(ref driver.Ref, what string, ok func(driver.Status) bool) driver.Status {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case st := <-ch:
				if st.Ref == ref && ok(st) {
					return st
				}
			case <-timeout:
				t.Fatalf("no status of %s with %s", ref, what)
			}
		}
	}
	return cs, d, ch, await
}

// setStatus updates a pod's status as the kubelet does; false once the
// pod is gone.
func setStatus(ctx context.Context, cs *fake.Clientset, name string, f func(*corev1.PodStatus)) bool {
	for range 10 {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		f(&p.Status)
		_, err = cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		if err == nil {
			return true
		}
		if !apierrors.IsConflict(err) {
			return false
		}
	}
	return false
}

func newDriver(t *testing.T) driver.Driver {
	d, err := kubernetes.NewWithClient(cluster(t), ns, driver.Options{})
	if err != nil {
		t.Fatalf("NewWithClient() error = %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func behave(_ *testing.T, s *driver.Spec, b drivertest.Behaviour) {
	s.Image = "registry.example/sim:1"
	s.Env["RM_TEST_SLEEP"] = strconv.FormatFloat(b.RunFor.Seconds(), 'f', 3, 64)
	s.Env["RM_TEST_EXIT"] = strconv.Itoa(b.Exit)
}

func TestConformance(t *testing.T) {
	drivertest.Run(t, newDriver, drivertest.Features{
		Behave: behave, ExitCodes: true, Reattach: true, Timeout: 10 * time.Second,
		// Logs: the fake returns a fixed text; pods are only simulated.
	})
}

// sleeper is the spec of an instance that runs for a minute on the fake
// kubelet, owned by owner's pod when owner is not nil.
func sleeper(r driver.Ref, owner *driver.Ref) driver.Spec {
	return driver.Spec{Ref: r, Name: r.Name(), Image: "img", Owner: owner,
		Env: map[string]string{"RM_TEST_SLEEP": "60"}}
}

// TestWorkersOwnedByController checks the owner reference that makes the
// garbage collector delete workers with their controller.
func TestWorkersOwnedByController(t *testing.T) {
	ctx := context.Background()
	d := newDriver(t)
	cs := cluster(t)
	job := drivertest.JobID(t)
	ctrl := driver.Ref{JobID: job, Role: driver.RoleController}
	worker := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: 1}
	if err := d.Start(ctx, sleeper(worker, &ctrl)); err == nil {
		t.Error("Start() of a worker before its controller succeeded")
	}
	if err := d.Start(ctx, sleeper(ctrl, nil)); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx, sleeper(worker, &ctrl)); err != nil {
		t.Fatal(err)
	}
	checkOwnedBy(t, cs, worker, ctrl)
	cp, err := cs.CoreV1().Pods(ns).Get(ctx, ctrl.Name(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cp.OwnerReferences) != 0 {
		t.Errorf("controller has owner references %v", cp.OwnerReferences)
	}
	if err := d.Cleanup(ctx, job); err != nil {
		t.Fatal(err)
	}
	pods, _ := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if len(pods.Items) != 0 {
		t.Errorf("%d pods left after Cleanup", len(pods.Items))
	}
}

// checkOwnedBy checks that worker's pod has exactly one owner reference:
// to ctrl's pod as the API server has it now.
func checkOwnedBy(t *testing.T, cs *fake.Clientset, worker, ctrl driver.Ref) {
	t.Helper()
	ctx := context.Background()
	cp, err := cs.CoreV1().Pods(ns).Get(ctx, ctrl.Name(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wp, err := cs.CoreV1().Pods(ns).Get(ctx, worker.Name(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: ctrl.Name(), UID: cp.UID}}
	if diff := cmp.Diff(want, wp.OwnerReferences); diff != "" {
		t.Errorf("%s owner references (-want +got):\n%s", worker, diff)
	}
}

// TestWorkersOwnedByTheControllerItMade checks the owner references a
// driver gives workers from the controllers it created, without reading
// them (one request per worker instead of two): the UID of the controller
// it made, the new one once the controller was stopped and made again,
// and, for a controller another driver made (a launcher started again),
// the one the API server has.
func TestWorkersOwnedByTheControllerItMade(t *testing.T) {
	ctx := context.Background()
	d := newDriver(t)
	cs := cluster(t)
	job := drivertest.JobID(t)
	ctrl := driver.Ref{JobID: job, Role: driver.RoleController}
	reads := func() int {
		n := 0
		for _, a := range cs.Actions() {
			if g, ok := a.(k8stesting.GetAction); ok && a.GetVerb() == "get" && a.GetResource().Resource == "pods" && g.GetName() == ctrl.Name() {
				n++
			}
		}
		return n
	}
	// ownedBy starts worker i with d and checks its owner.
	ownedBy := func(d driver.Driver, i int) {
		t.Helper()
		w := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: i}
		if err := d.Start(ctx, sleeper(w, &ctrl)); err != nil {
			t.Fatal(err)
		}
		checkOwnedBy(t, cs, w, ctrl)
	}

	// startController starts the controller with d and waits until the
	// fake kubelet, which reads it once to mark it running, has done so.
	startController := func(d driver.Driver) {
		t.Helper()
		if err := d.Start(ctx, sleeper(ctrl, nil)); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; {
			cp, err := cs.CoreV1().Pods(ns).Get(ctx, ctrl.Name(), metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if cp.Status.Phase == corev1.PodRunning {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the controller is not running 10 s after its start")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	startController(d)
	before := reads()
	for i := range 5 {
		ownedBy(d, i) // reads the controller once itself, after the start
	}
	if got := reads() - before - 5; got != 0 {
		t.Errorf("starting 5 workers read their controller %d times, want 0", got)
	}

	// Stopped (its workers with it) and made again: a new UID.
	if err := d.Stop(ctx, ctrl); err != nil {
		t.Fatal(err)
	}
	startController(d)
	ownedBy(d, 0)

	// A driver that did not make the controller reads it.
	other, err := kubernetes.NewWithClient(cs, ns, driver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	before = reads()
	ownedBy(other, 1)
	if got := reads() - before - 1; got != 1 {
		t.Errorf("a driver that did not make the controller read it %d times for a worker, want 1", got)
	}

	// Nothing is remembered of a controller that is gone, deleted by the
	// driver or by someone else, once the watch has seen it go.
	forgotten := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for kubernetes.RememberedOwners(d) != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("a controller %s is still remembered 10 s later", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if err := d.Cleanup(ctx, job); err != nil {
		t.Fatal(err)
	}
	forgotten("removed by Cleanup")
	ctrl2 := driver.Ref{JobID: job + "-2", Role: driver.RoleController}
	if err := d.Start(ctx, sleeper(ctrl2, nil)); err != nil {
		t.Fatal(err)
	}
	if n := kubernetes.RememberedOwners(d); n != 1 {
		t.Fatalf("after a controller's start the driver remembers %d controllers, want 1", n)
	}
	if err := cs.CoreV1().Pods(ns).Delete(ctx, ctrl2.Name(), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	forgotten("deleted by someone else")
}

// TestPodStatusesThroughWatch drives pod statuses by hand through the fake
// API (no kubelet) and checks what Watch reports.
func TestPodStatusesThroughWatch(t *testing.T) {
	ctx := context.Background()
	cs, d, ch, await := watchFake(t)
	next := func(ref driver.Ref) driver.Status {
		t.Helper()
		return await(ref, "a status", func(driver.Status) bool { return true })
	}
	set := func(name string, f func(*corev1.PodStatus)) {
		t.Helper()
		if !setStatus(ctx, cs, name, f) {
			t.Fatalf("update status of %s failed", name)
		}
	}
	job := drivertest.JobID(t)
	for _, tc := range []struct {
		index    int
		exit     int32
		want     driver.State
		deleted  bool
		wantCode *int
	}{
		{index: 0, exit: 0, want: driver.Succeeded},
		{index: 1, exit: 42, want: driver.Failed},
		{index: 2, deleted: true, want: driver.Failed},
	} {
		ref := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: tc.index}
		if err := d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Image: "img"}); err != nil {
			t.Fatal(err)
		}
		if st := next(ref); st.State != driver.Pending {
			t.Fatalf("first status %+v, want Pending", st)
		}
		set(ref.Name(), func(s *corev1.PodStatus) {
			s.Phase = corev1.PodPending
			s.ContainerStatuses = []corev1.ContainerStatus{{Name: kubernetes.ContainerName,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}
		})
		if st := next(ref); st.State != driver.Pending || st.Message != "ContainerCreating" {
			t.Fatalf("status %+v, want Pending ContainerCreating", st)
		}
		started := metav1.NewTime(time.Now().Truncate(time.Second))
		set(ref.Name(), func(s *corev1.PodStatus) {
			s.Phase = corev1.PodRunning
			s.ContainerStatuses = []corev1.ContainerStatus{{Name: kubernetes.ContainerName,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}}}
		})
		if st := next(ref); st.State != driver.Running || !st.StartedAt.Equal(started.Time) {
			t.Fatalf("status %+v, want Running since %v", st, started)
		}
		if tc.deleted {
			// Deleted by someone else than the driver (kubectl delete pod):
			// lost, not failed.
			if err := cs.CoreV1().Pods(ns).Delete(ctx, ref.Name(), metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			if st := next(ref); st.State != driver.Failed || st.Reason != driver.ReasonLost || st.Message != "pod deleted by someone else than the launcher" || st.ExitCode != nil {
				t.Errorf("status after deletion %+v, want Failed, lost, pod deleted by someone else than the launcher", st)
			}
			continue
		}
		set(ref.Name(), func(s *corev1.PodStatus) {
			s.Phase = corev1.PodSucceeded
			if tc.exit != 0 {
				s.Phase = corev1.PodFailed
			}
			s.ContainerStatuses = []corev1.ContainerStatus{{Name: kubernetes.ContainerName,
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: tc.exit, Reason: "Error", StartedAt: started, FinishedAt: metav1.Now()}}}}
		})
		st := next(ref)
		if st.State != tc.want || st.ExitCode == nil || *st.ExitCode != int(tc.exit) {
			t.Errorf("final status %+v, want %s with exit code %d", st, tc.want, tc.exit)
		}
		// "Error" is the kubelet's word for any non-zero exit: it says no
		// more than the code, and the job's failure would repeat it.
		if st.Message != "" {
			t.Errorf("final status message %q, want none", st.Message)
		}
		// The final status stands: deleting the pod afterwards reports it
		// again, Removed.
		if err := cs.CoreV1().Pods(ns).Delete(ctx, ref.Name(), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if gone := next(ref); !gone.Removed || gone.State != st.State || gone.ExitCode == nil || *gone.ExitCode != int(tc.exit) {
			t.Errorf("status after deletion %+v, want the final one, Removed", gone)
		}
	}
	// After that, nothing more is reported.
	select {
	case st := <-ch:
		t.Errorf("unexpected status %+v", st)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestStartIdempotentAgainstAlreadyExists: a pod created by an earlier
// launcher makes Start a no-op, but a foreign pod with the name is an error.
func TestStartIdempotentAgainstAlreadyExists(t *testing.T) {
	ctx := context.Background()
	ref := driver.Ref{JobID: "job-x", Role: driver.RoleWorker}
	foreign := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: driver.Ref{JobID: "job-y", Role: driver.RoleWorker}.Name(), Namespace: ns}}
	cs := fake.NewClientset(foreign)
	d, err := kubernetes.NewWithClient(cs, ns, driver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s := driver.Spec{Ref: ref, Name: ref.Name(), Image: "img"}
	for i := range 2 {
		if err := d.Start(ctx, s); err != nil {
			t.Fatalf("Start #%d error = %v", i, err)
		}
	}
	other := driver.Ref{JobID: "job-y", Role: driver.RoleWorker}
	if err := d.Start(ctx, driver.Spec{Ref: other, Name: other.Name(), Image: "img"}); err == nil {
		t.Error("Start() over a foreign pod of the same name succeeded")
	}
	if err := d.Stop(ctx, other); err != nil {
		t.Errorf("Stop() of a foreign pod's name error = %v", err)
	}
	if _, err := cs.CoreV1().Pods(ns).Get(ctx, foreign.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("Stop() deleted a foreign pod: %v", err)
	}
}
