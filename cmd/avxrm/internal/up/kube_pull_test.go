//go:build kube

package up_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/launcher/kubetest"
)

// Start errors through the all-in-one on a real API server (issue 17,
// point 5; issue 13, point 1): the fake kubelets report image pulls that
// fail as a kubelet does (waiting reasons ErrImagePull, ImagePullBackOff
// on the pods' status). A job whose image never pulls shows Started=False
// ImagePullFailed with the kubelet's message within 5 s of admission and
// in its warnings, never runs, and fails at the queue's start timeout
// (10 s) with that reason; its pods are deleted and the queue's usage is 0
// again. A job whose image fails its first pulls, then pulls, shows the
// same condition, then runs with Started=True and succeeds.
func TestAPIServerImagePullFailsThroughTheServices(t *testing.T) {
	k := startKubeSystem(t, kubetest.NodeShape{})
	c := k.c
	c.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{
		"name": "pull", "plugin_id": k.workPlugin, "maximum_allowed_worker_instances": 4,
		"scheduling": map[string]any{"start_timeout_seconds": 10},
	}, http.StatusCreated, nil)
	env := map[string]string{"RM_TEST_SLEEP": "1", "RM_TEST_EXIT": "0"}
	never := c.submitApp("pull", createScriptApp(c, "never", kubetest.PullFailsImage, "true"), 2, env)
	late := c.submitApp("pull", createScriptApp(c, "late", kubetest.PullFailsThenRunsImage, "true"), 2, env)

	for _, tc := range []struct {
		id, image string
	}{{never.ID, kubetest.PullFailsImage}, {late.ID, kubetest.PullFailsThenRunsImage}} {
		admitted := c.waitJobFor(tc.id, "admitted", 30*time.Second, func(j events.Job) bool { return j.AdmittedAt != nil })
		got := c.waitJobFor(tc.id, "showing the pull error", 5*time.Second, func(j events.Job) bool {
			return conditionOf(j, "Started").Reason == "ImagePullFailed"
		})
		cond := conditionOf(got, "Started")
		t.Logf("job %s: Started=False ImagePullFailed seen %s after admission: %q", tc.id,
			time.Since(*admitted.AdmittedAt).Round(time.Millisecond), cond.Message)
		if cond.Status != "False" || !strings.Contains(cond.Message, `failed to pull and unpack image "`+tc.image+`"`) {
			t.Errorf("job %s: Started condition %+v, want False with the kubelet's message naming %s", tc.id, cond, tc.image)
		}
		if got.Status != events.JobAdmitted || !slices.Contains(got.Warnings, cond.Message) {
			t.Errorf("job %s: status %s, warnings %q: want admitted with the condition's message", tc.id, got.Status, got.Warnings)
		}
	}

	// The image that pulls at last: the condition turns True as it runs.
	got := c.waitJobFor(late.ID, "final", 60*time.Second, isFinal)
	if st := conditionOf(got, "Started"); got.Status != events.JobSucceeded || st.Status != "True" || got.StartedAt == nil || !st.LastTransitionTime.Equal(*got.StartedAt) {
		t.Errorf("late job %s: Started %+v, started_at %v: want succeeded, Started True since it started", got.Status, st, got.StartedAt)
	}
	t.Logf("late job: started %s after admission (%d failed pulls of each pod)", got.StartedAt.Sub(*got.AdmittedAt).Round(time.Millisecond), kubetest.LatePulls)
	if len(got.Warnings) > 0 {
		t.Errorf("late job's warnings after it ran: %q", got.Warnings)
	}

	// The image that never pulls: failed at the start timeout, never running.
	got = c.waitJobFor(never.ID, "final", 60*time.Second, isFinal)
	took := got.FinishedAt.Sub(*got.AdmittedAt)
	t.Logf("job %s failed %s after admission (start_timeout_seconds 10)", never.ID, took.Round(time.Millisecond))
	failed := conditionOf(got, "Failed")
	if got.Status != events.JobFailed || failed.Reason != "ImagePullFailed" || !strings.Contains(failed.Message, kubetest.PullFailsImage) {
		t.Fatalf("job %s, Failed condition %+v: want failed with ImagePullFailed naming the image", got.Status, failed)
	}
	if took < 10*time.Second {
		t.Errorf("failed %s after admission, before the start timeout of 10s", took)
	}
	if got.StartedAt != nil {
		t.Errorf("started_at %s on a job none of whose images pulled", got.StartedAt)
	}
	if ev := waitEvents(t, k.sys.JS, never.ID, "failed"); slices.Contains(ev, "running") {
		t.Errorf("events %v: the job was running", ev)
	}

	// Its pods are deleted (the fake kubelets finish them as a kubelet
	// would), its instances stopped, its leases released.
	deadline := time.Now().Add(30 * time.Second)
	for left := jobPods(t, k, never.ID); len(left) > 0; left = jobPods(t, k, never.ID) {
		if time.Now().After(deadline) {
			t.Fatalf("pods of the failed job still there: %v", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.waitJobFor(never.ID, "instances stopped", 30*time.Second, func(j events.Job) bool {
		for _, in := range j.Instances {
			if in.Status != events.InstanceStopped {
				return false
			}
		}
		return len(j.Instances) == j.WorkerInstances+1
	})
	for q := c.queue("pull"); q.Usage == nil || q.Usage.AllocatedWorkerInstances != 0; q = c.queue("pull") {
		if time.Now().After(deadline) {
			t.Fatalf("queue usage after both jobs: %+v, want 0 allocated", q.Usage)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// jobPods names the pods of job id in both namespaces.
func jobPods(t *testing.T, k *kubeSystem, id string) []string {
	t.Helper()
	var out []string
	for _, ns := range []string{k.nsCtrl, k.nsWork} {
		pods, err := k.admin.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if p.Annotations[jobAnnotation] == id {
				out = append(out, ns+"/"+p.Name)
			}
		}
	}
	return out
}
