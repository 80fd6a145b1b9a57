//go:build kube

package up_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"maps"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"

	"github.com/avxrm/rm/cmd/avxrm/internal/up"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/launcher/kubetest"
	"github.com/avxrm/rm/services/launcher/kubetest/kubeserver"
)

// The seed's example through the whole all-in-one (API, scheduler,
// launcher) on a real kube-apiserver with fake kubelets (make test-kube):
// the product documents' queue (limit 10, node selector and toleration of
// the reserved node group) on a kubernetes plugin, a job of 10 workers and
// one of 8. The workers run on a node labelled and tainted as the reserved
// group; the controllers, on the default plugin, in a namespace of their
// own whose node is plain.

// jobAnnotation is the kubernetes driver's annotation of a pod's job
// (kubernetes.LabelJobID, internal to the launcher).
const jobAnnotation = "rm.avxrm.io/job-id"

func newKubeNamespace(t *testing.T, admin *k8s.Clientset) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	ns := "seed-" + hex.EncodeToString(b)
	if _, err := admin.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns
}

// kubeSystem is the all-in-one on a real API server: the controllers'
// namespace with a fake kubelet of a plain node, the workers' namespace
// with one of a node of the given shape, and a kubernetes plugin for each
// made through the REST API (the controllers' is the default plugin).
type kubeSystem struct {
	srv            *kubeserver.Server
	admin          *k8s.Clientset
	nsWork, nsCtrl string
	sys            *up.System
	c              *client
	workPlugin     string // the plugin ID of the workers' namespace
}

func startKubeSystem(t *testing.T, workNode kubetest.NodeShape) *kubeSystem {
	t.Helper()
	srv, err := kubeserver.Start(kubeserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	admin, err := srv.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	k := &kubeSystem{srv: srv, admin: admin, nsWork: newKubeNamespace(t, admin), nsCtrl: newKubeNamespace(t, admin)}
	kubetest.StartKubelet(t, srv, admin, k.nsWork, workNode)
	kubetest.StartKubelet(t, srv, admin, k.nsCtrl, kubetest.NodeShape{})

	k.sys = startSystemIn(t, t.TempDir())
	k.c = newClient(t, k.sys.HTTPAddr)
	var ctrl, work struct {
		ID string `json:"id"`
	}
	k.c.must(http.MethodPost, "/api/resources/v1/plugins", map[string]any{"name": "k8s-controllers", "type": "kubernetes", "is_default": true,
		"config": map[string]any{"namespace": k.nsCtrl, "kubeconfig": srv.Kubeconfig(srv.AdminToken, k.nsCtrl)}}, http.StatusCreated, &ctrl)
	k.c.must(http.MethodPost, "/api/resources/v1/plugins", map[string]any{"name": "k8s-reserved", "type": "kubernetes",
		"config": map[string]any{"namespace": k.nsWork, "kubeconfig": srv.Kubeconfig(srv.AdminToken, k.nsWork)}}, http.StatusCreated, &work)
	k.workPlugin = work.ID
	return k
}

func TestAPIServerSeedExampleThroughTheServices(t *testing.T) {
	ctx := context.Background()
	reserved := map[string]string{"node-group-reservation": "my-special-group"}
	k := startKubeSystem(t, kubetest.NodeShape{Labels: reserved,
		Taints: []corev1.Taint{{Key: "node-group-reservation", Value: "my-special-group", Effect: corev1.TaintEffectNoSchedule}}})
	// Everything the server does to the workers' pods, in its order.
	w, err := k.admin.CoreV1().Pods(k.nsWork).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	c := k.c
	var app struct {
		ID string `json:"id"`
	}
	c.must(http.MethodPost, "/api/resources/v1/applications", map[string]any{"name": "sim", "version": "1", "image": "registry.example/sim:1"},
		http.StatusCreated, &app)
	c.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "special", "plugin_id": k.workPlugin, "maximum_allowed_worker_instances": 10,
		"attributes": map[string]any{"node_selector": reserved, "tolerations": []map[string]any{
			{"key": "node-group-reservation", "operator": "Equal", "value": "my-special-group", "effect": "NoSchedule"}}}},
		http.StatusCreated, nil)

	j1 := c.submitApp("special", app.ID, 10, map[string]string{"RM_TEST_SLEEP": "2", "RM_TEST_EXIT": "0"})
	c.waitJobFor(j1.ID, "running", 120*time.Second, hasStatus(events.JobRunning))
	j2 := c.submitApp("special", app.ID, 8, map[string]string{"RM_TEST_SLEEP": "1", "RM_TEST_EXIT": "0"})
	c.waitJobFor(j2.ID, "pending", 30*time.Second, hasStatus(events.JobPending))
	got1 := c.waitJobFor(j1.ID, "final", 120*time.Second, isFinal)
	got2 := c.waitJobFor(j2.ID, "final", 120*time.Second, isFinal)
	for _, j := range []events.Job{got1, got2} {
		if j.Status != events.JobSucceeded {
			t.Fatalf("job %s: %s, conditions %+v", j.ID, j.Status, j.Conditions)
		}
		checkInstances(t, j, events.InstanceSucceeded, 0)
	}
	if got2.AdmittedAt == nil || got2.AdmittedAt.Before(*got1.FinishedAt) {
		t.Errorf("job 2 admitted at %v, before job 1 finished at %v", got2.AdmittedAt, got1.FinishedAt)
	}

	// The server's events: no pod of job 2 is created before every pod of
	// job 1 is deleted (the driver removes a pod once the job record holds
	// how it ended, and the job is final only then); each carries the
	// queue's node selector and toleration exactly.
	wantTol := []corev1.Toleration{{Key: "node-group-reservation", Operator: corev1.TolerationOpEqual, Value: "my-special-group", Effect: corev1.TaintEffectNoSchedule}}
	added := map[string]int{}
	deleted := map[string]map[string]int{j1.ID: {}, j2.ID: {}} // job → pod → the event deleting it
	firstAdded2 := -1
	timeout := time.After(60 * time.Second)
	for i := 0; len(deleted[j1.ID]) < 10 || len(deleted[j2.ID]) < 8; i++ {
		ev, ok := kubetest.NextPodEvent(t, w, timeout)
		if !ok {
			t.Fatalf("events: pods deleted of job 1 %d of 10, of job 2 %d of 8; created %v", len(deleted[j1.ID]), len(deleted[j2.ID]), added)
		}
		job := ev.Pod.Annotations[jobAnnotation]
		switch ev.Type {
		case "ADDED":
			added[job]++
			if job == j2.ID && firstAdded2 < 0 {
				firstAdded2 = i
			}
			if diff := cmp.Diff(reserved, ev.Pod.Spec.NodeSelector); diff != "" {
				t.Errorf("%s node selector (-want +got):\n%s", ev.Pod.Name, diff)
			}
			if diff := cmp.Diff(wantTol, kubetest.QueueTolerations(ev.Pod)); diff != "" {
				t.Errorf("%s tolerations (-want +got):\n%s", ev.Pod.Name, diff)
			}
		case "DELETED":
			if deleted[job] != nil {
				deleted[job][ev.Pod.Name] = i
			}
			if ev.Pod.Status.Phase != corev1.PodSucceeded {
				t.Errorf("%s deleted in phase %s, want Succeeded (deleted after it ended)", ev.Pod.Name, ev.Pod.Status.Phase)
			}
		}
	}
	lastDeleted1 := slices.Max(slices.Collect(maps.Values(deleted[j1.ID])))
	if added[j1.ID] != 10 || added[j2.ID] != 8 {
		t.Errorf("worker pods created: %v, want 10 of job 1 and 8 of job 2", added)
	}
	if firstAdded2 <= lastDeleted1 {
		t.Errorf("job 2's first pod was created (event %d) before job 1's last pod was deleted (event %d)", firstAdded2, lastDeleted1)
	}
	// Nothing of either job is left, controllers included.
	for _, n := range []string{k.nsWork, k.nsCtrl} {
		pods, err := k.admin.CoreV1().Pods(n).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			t.Errorf("pod %s/%s of job %s left after the jobs ended", n, p.Name, p.Annotations[jobAnnotation])
		}
	}
	t.Logf("server events: job 1's last pod deleted at #%d, job 2's first pod created at #%d", lastDeleted1, firstAdded2)
}
