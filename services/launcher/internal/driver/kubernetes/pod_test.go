package kubernetes

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/avxrm/rm/services/launcher/internal/driver"
)

func basePod(s driver.Spec) *corev1.Pod {
	p, err := podFor(s, "ns", nil)
	if err != nil {
		panic(err)
	}
	return p
}

func TestPodForSpec(t *testing.T) {
	ref := driver.Ref{JobID: "job-01", Role: driver.RoleWorker, Index: 7}
	p := basePod(driver.Spec{
		Ref: ref, Name: ref.Name(), Queue: "Default queue", Image: "img:1",
		Command: []string{"/bin/sim"}, Args: []string{"--fast"}, WorkingDir: "/work",
		Env:            map[string]string{"B": "2", "A": "1"},
		NodeSelector:   map[string]string{"node-group-reservation": "my-special-group"},
		Labels:         map[string]string{"team": "adas", LabelJobID: "spoofed"},
		Annotations:    map[string]string{"note": "x"},
		ServiceAccount: "runner",
	})
	want := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "job-01-worker-7", Namespace: "ns",
			Labels: map[string]string{LabelManaged: "true", LabelJobID: "job-01", LabelRole: "worker", LabelIndex: "7",
				LabelQueue: LabelValue("Default queue"), "team": "adas"},
			Annotations: map[string]string{LabelJobID: "job-01", LabelQueue: "Default queue", "note": "x"},
		},
		Spec: corev1.PodSpec{
			RestartPolicy:      corev1.RestartPolicyNever,
			NodeSelector:       map[string]string{"node-group-reservation": "my-special-group"},
			ServiceAccountName: "runner",
			Containers: []corev1.Container{{
				Name: ContainerName, Image: "img:1", Command: []string{"/bin/sim"}, Args: []string{"--fast"}, WorkingDir: "/work",
				Env: []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "B", Value: "2"}},
			}},
		},
	}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("podFor() mismatch (-want +got):\n%s", diff)
	}
}

func TestResourcesFor(t *testing.T) {
	q := resource.MustParse
	cases := map[string]struct {
		in      driver.Resources
		want    corev1.ResourceList
		wantErr bool
	}{
		"none":     {in: driver.Resources{}, want: nil},
		"cpu only": {in: driver.Resources{CPU: "500m"}, want: corev1.ResourceList{corev1.ResourceCPU: q("500m")}},
		"all": {in: driver.Resources{CPU: "2", Memory: "4Gi", GPU: 1},
			want: corev1.ResourceList{corev1.ResourceCPU: q("2"), corev1.ResourceMemory: q("4Gi"), GPUResource: q("1")}},
		"bad memory": {in: driver.Resources{Memory: "lots"}, wantErr: true},
		// Millibytes: the API server takes them, no container runs so.
		"memory in millibytes":     {in: driver.Resources{Memory: "100m"}, wantErr: true},
		"memory, fractional bytes": {in: driver.Resources{Memory: "1.5"}, wantErr: true},
		"memory, fractional Gi":    {in: driver.Resources{Memory: "0.5Gi"}, want: corev1.ResourceList{corev1.ResourceMemory: q("0.5Gi")}},
		"negative cpu":             {in: driver.Resources{CPU: "-1"}, wantErr: true},
		"negative gpu":             {in: driver.Resources{GPU: -1}, wantErr: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := resourcesFor(tc.in)
			if tc.wantErr {
				if !errors.Is(err, driver.ErrInvalidSpec) {
					t.Fatalf("error = %v, want ErrInvalidSpec", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Requests equal limits.
			if diff := cmp.Diff(tc.want, got.Limits); diff != "" {
				t.Errorf("limits mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want, got.Requests); diff != "" {
				t.Errorf("requests mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestVolumesFor(t *testing.T) {
	cases := map[string]struct {
		in         []driver.Storage
		wantVols   []corev1.Volume
		wantMounts []corev1.VolumeMount
		wantErr    bool
	}{
		"each type": {
			in: []driver.Storage{
				{Name: "scenarios", Type: driver.StoragePVC, Source: "claim-1", MountPath: "/data", ReadOnly: true},
				{Name: "Host_Data", Type: driver.StorageHostPath, Source: "/srv/x", MountPath: "/host"},
				{Name: "tmp", Type: driver.StorageEmptyDir, MountPath: "/tmp/s"},
				{Name: "shared", Type: driver.StorageNFS, Source: "nfs.local:/exports/a", MountPath: "/nfs", ReadOnly: true},
			},
			wantVols: []corev1.Volume{
				{Name: "scenarios", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "claim-1", ReadOnly: true}}},
				{Name: "host-data", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/srv/x"}}},
				{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "shared", VolumeSource: corev1.VolumeSource{NFS: &corev1.NFSVolumeSource{Server: "nfs.local", Path: "/exports/a", ReadOnly: true}}},
			},
			wantMounts: []corev1.VolumeMount{
				{Name: "scenarios", MountPath: "/data", ReadOnly: true},
				{Name: "host-data", MountPath: "/host"},
				{Name: "tmp", MountPath: "/tmp/s"},
				{Name: "shared", MountPath: "/nfs", ReadOnly: true},
			},
		},
		"duplicate and unusable names": {
			in: []driver.Storage{
				{Name: "a", Type: driver.StorageEmptyDir, MountPath: "/a"},
				{Name: "A", Type: driver.StorageEmptyDir, MountPath: "/b"},
				{Name: "__", Type: driver.StorageEmptyDir, MountPath: "/c"},
			},
			wantVols: []corev1.Volume{
				{Name: "a", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "storage-1", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "storage-2", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
			wantMounts: []corev1.VolumeMount{{Name: "a", MountPath: "/a"}, {Name: "storage-1", MountPath: "/b"}, {Name: "storage-2", MountPath: "/c"}},
		},
		"nfs without path":  {in: []driver.Storage{{Name: "n", Type: driver.StorageNFS, Source: "server", MountPath: "/n"}}, wantErr: true},
		"relative mount":    {in: []driver.Storage{{Name: "n", Type: driver.StorageEmptyDir, MountPath: "n"}}, wantErr: true},
		"relative hostpath": {in: []driver.Storage{{Name: "n", Type: driver.StorageHostPath, Source: "x", MountPath: "/n"}}, wantErr: true},
		"pvc without claim": {in: []driver.Storage{{Name: "n", Type: driver.StoragePVC, MountPath: "/n"}}, wantErr: true},
		"unknown type":      {in: []driver.Storage{{Name: "n", Type: "s3", MountPath: "/n"}}, wantErr: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			vols, mounts, err := volumesFor(tc.in)
			if tc.wantErr {
				if !errors.Is(err, driver.ErrInvalidSpec) {
					t.Fatalf("error = %v, want ErrInvalidSpec", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantVols, vols); diff != "" {
				t.Errorf("volumes mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantMounts, mounts); diff != "" {
				t.Errorf("mounts mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTolerationsFor(t *testing.T) {
	cases := map[string]struct {
		in      []driver.Toleration
		want    []corev1.Toleration
		wantErr bool
	}{
		"equal": {
			in:   []driver.Toleration{{Key: "node-group-reservation", Operator: "Equal", Value: "g", Effect: "NoSchedule"}},
			want: []corev1.Toleration{{Key: "node-group-reservation", Operator: corev1.TolerationOpEqual, Value: "g", Effect: corev1.TaintEffectNoSchedule}},
		},
		"exists any effect": {
			in:   []driver.Toleration{{Key: "gpu", Operator: "Exists"}},
			want: []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpExists}},
		},
		"exists with value": {in: []driver.Toleration{{Key: "k", Operator: "Exists", Value: "v"}}, wantErr: true},
		"bad operator":      {in: []driver.Toleration{{Key: "k", Operator: "In"}}, wantErr: true},
		"bad effect":        {in: []driver.Toleration{{Key: "k", Operator: "Equal", Effect: "Never"}}, wantErr: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := tolerationsFor(tc.in)
			if tc.wantErr {
				if !errors.Is(err, driver.ErrInvalidSpec) {
					t.Fatalf("error = %v, want ErrInvalidSpec", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("tolerationsFor() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLabelValue(t *testing.T) {
	long := strings.Repeat("x", 80)
	for _, in := range []string{"job-1", "", "Default queue", "-lead", "trail.", long, "é", strings.Repeat("a", 63)} {
		got := LabelValue(in)
		if errs := validation.IsValidLabelValue(got); len(errs) > 0 {
			t.Errorf("LabelValue(%q) = %q: invalid: %v", in, got, errs)
		}
		if errs := validation.IsValidLabelValue(in); len(errs) == 0 && got != in {
			t.Errorf("LabelValue(%q) = %q, want valid values unchanged", in, got)
		}
	}
	if LabelValue(long) == LabelValue(long+"y") {
		t.Error("distinct long values map to the same label value")
	}
}

func TestStatusOf(t *testing.T) {
	ref := driver.Ref{JobID: "j", Role: driver.RoleWorker}
	t0 := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	t1 := metav1.NewTime(t0.Add(time.Minute))
	code := func(n int) *int { return &n }
	cstatus := func(s corev1.ContainerState) []corev1.ContainerStatus {
		return []corev1.ContainerStatus{{Name: "sidecar"}, {Name: ContainerName, State: s}}
	}
	cases := map[string]struct {
		pod  corev1.Pod
		want driver.Status
	}{
		"unschedulable": {
			pod: corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{
				{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: "0/3 nodes are available"}}}},
			want: driver.Status{State: driver.Pending, Message: "Unschedulable: 0/3 nodes are available"},
		},
		"image pull": {
			pod:  corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: cstatus(corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "not found"}})}},
			want: driver.Status{State: driver.Pending, Message: "ErrImagePull: not found", Reason: driver.ReasonImagePullFailed},
		},
		// The kubelet sets the pod's StartTime when it takes the pod,
		// before the pull: no instance has started yet.
		"taken by the kubelet, creating its container": {
			pod: corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, StartTime: &t0,
				ContainerStatuses: cstatus(corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}})}},
			want: driver.Status{State: driver.Pending, Message: "ContainerCreating"},
		},
		"pulling after the kubelet took it": {
			pod: corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, StartTime: &t0,
				ContainerStatuses: cstatus(corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "Back-off pulling image"}})}},
			want: driver.Status{State: driver.Pending, Message: "ImagePullBackOff: Back-off pulling image", Reason: driver.ReasonImagePullFailed},
		},
		"an image it will never have": {
			pod: corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, StartTime: &t0,
				ContainerStatuses: cstatus(corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "InvalidImageName", Message: "invalid reference format"}})}},
			want: driver.Status{State: driver.Failed, Message: "InvalidImageName: invalid reference format", Reason: driver.ReasonNeverRuns},
		},
		"evicted before its container started": {
			pod:  corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "low on memory", StartTime: &t0}},
			want: driver.Status{State: driver.Failed, Message: "Evicted: low on memory"},
		},
		"running": {
			pod:  corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: cstatus(corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: t0}})}},
			want: driver.Status{State: driver.Running, StartedAt: t0.Time},
		},
		"succeeded": {
			pod: corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: cstatus(corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 0, Reason: "Completed", StartedAt: t0, FinishedAt: t1}})}},
			want: driver.Status{State: driver.Succeeded, ExitCode: code(0), StartedAt: t0.Time, FinishedAt: t1.Time},
		},
		"terminated before the phase follows": {
			pod: corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: cstatus(corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 137, Reason: "OOMKilled", StartedAt: t0, FinishedAt: t1}})}},
			want: driver.Status{State: driver.Failed, ExitCode: code(137), Message: "OOMKilled", StartedAt: t0.Time, FinishedAt: t1.Time},
		},
		// containerd's CRI gives the reason of a container whose cgroup saw an
		// OOM kill whatever its exit code: a process of it was killed for
		// memory though the main one exited 0, and the pod still succeeded.
		"a process killed for memory, the container's exit 0": {
			pod: corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: cstatus(corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 0, Reason: "OOMKilled", StartedAt: t0, FinishedAt: t1}})}},
			want: driver.Status{State: driver.Failed, ExitCode: code(0), Message: "OOMKilled", StartedAt: t0.Time, FinishedAt: t1.Time},
		},
		"evicted": {
			pod: corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "low on memory", StartTime: &t0,
				ContainerStatuses: cstatus(corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, StartedAt: t0, FinishedAt: t1}})}},
			want: driver.Status{State: driver.Failed, ExitCode: code(0), Message: "Evicted: low on memory", StartedAt: t0.Time, FinishedAt: t1.Time},
		},
		// With restart policy Never a failed init container (one a
		// webhook added) fails the pod before the instance runs.
		"an init container failed": {
			pod: corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, StartTime: &t0,
				InitContainerStatuses: []corev1.ContainerStatus{{Name: "istio-init", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					ExitCode: 255, Reason: "Error", Message: "iptables: permission denied", StartedAt: t0, FinishedAt: t1}}}},
				ContainerStatuses: cstatus(corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}})}},
			want: driver.Status{State: driver.Failed, Message: "init container istio-init exited with code 255: Error: iptables: permission denied"},
		},
		"terminating": {
			pod: corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &t1},
				Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: cstatus(corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: t0}})}},
			want: driver.Status{State: driver.Failed, Message: "pod deleted", StartedAt: t0.Time, FinishedAt: t1.Time},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tc.want.Ref = ref
			got := statusOf(ref, &tc.pod)
			if tc.want.State.Final() && tc.want.FinishedAt.IsZero() {
				// No end in the pod: the driver stamps the moment it saw it.
				if got.FinishedAt.IsZero() {
					t.Error("statusOf() of a final pod without an end: no FinishedAt")
				}
				got.FinishedAt = time.Time{}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("statusOf() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// An image the kubelet cannot parse as a name is refused before any pod is
// made: the kubelet would leave the pod waiting as InvalidImageName until
// the start timeout. A bare image id is one; sha256:<id> (a tag of
// "sha256" to the kubelet, an image id to containerd) is not.
func TestPodImages(t *testing.T) {
	hex64 := strings.Repeat("f", 64)
	for image, invalid := range map[string]bool{
		hex64:                                  true,
		"Sim:1":                                true,
		"sim//x":                               true,
		"sha256:" + hex64:                      false,
		"registry.example/sim@sha256:" + hex64: false,
		"registry.example/sim:1.2":             false,
		"busybox":                              false,
	} {
		_, err := podFor(driver.Spec{Ref: driver.Ref{JobID: "j"}, Image: image}, "ns", nil)
		if got := errors.Is(err, driver.ErrInvalidSpec); got != invalid || (invalid && !strings.Contains(err.Error(), "Kubernetes cannot run it")) {
			t.Errorf("podFor() with image %q: error %v, want invalid %v", image, err, invalid)
		}
	}
}

func TestPodNames(t *testing.T) {
	_, err := podFor(driver.Spec{Ref: driver.Ref{JobID: "j"}, Name: "Not_Valid", Image: "i"}, "ns", nil)
	if !errors.Is(err, driver.ErrInvalidSpec) {
		t.Errorf("podFor() with an invalid name: error = %v, want ErrInvalidSpec", err)
	}
	_, err = podFor(driver.Spec{Ref: driver.Ref{JobID: "j"}, Image: "i", Labels: map[string]string{"bad key!": "v"}}, "ns", nil)
	if !errors.Is(err, driver.ErrInvalidSpec) {
		t.Errorf("podFor() with an invalid label key: error = %v, want ErrInvalidSpec", err)
	}
	p, err := podFor(driver.Spec{Ref: driver.Ref{JobID: "JOB_" + strings.Repeat("Z", 70), Role: driver.RolePostController, Index: 3}, Image: "i"}, "ns", nil)
	if err != nil {
		t.Fatalf("podFor() with a long odd job id: %v", err)
	}
	for k, v := range p.Labels {
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			t.Errorf("label %s=%q invalid: %v", k, v, errs)
		}
	}
	if got, ok := refOf(p); !ok || got.JobID != "JOB_"+strings.Repeat("Z", 70) {
		t.Errorf("refOf() = %v, %v: want the exact job id back", got, ok)
	}
}
