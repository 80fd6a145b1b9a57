package launcher_test

import (
	"context"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/kubernetes"
)

// The Helm chart's Role (deploy/helm/avxrm/templates/role.yaml) grants
// exactly what the kubernetes driver asks of the API server: every request
// of a job's life (start, restart-proof start, list, watch, logs, stop,
// cleanup), recorded by the fake clientset, and nothing more.
func TestHelmRoleGrantsExactlyTheKubernetesDriversRequests(t *testing.T) {
	cs := fake.NewClientset()
	// Like the API server, give created pods a UID (owners need one).
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		p.UID = types.UID("uid-" + p.Name)
		return false, nil, nil
	})
	ctx := context.Background()
	d, err := kubernetes.NewWithClient(cs, "sims", driver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctrl := driver.Spec{Ref: driver.Ref{JobID: "job-rbac", Role: driver.RoleController}, Queue: "q", Image: "sim:1", Env: map[string]string{}}
	work := driver.Spec{Ref: driver.Ref{JobID: "job-rbac", Role: driver.RoleWorker}, Queue: "q", Image: "sim:1", Env: map[string]string{}, Owner: &ctrl.Ref}
	for _, s := range []driver.Spec{ctrl, work, work} { // the second start of a worker is a no-op
		if err := d.Start(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	wctx, stop := context.WithCancel(ctx)
	if _, err := d.Watch(wctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.List(ctx); err != nil {
		t.Fatal(err)
	}
	if rc, err := d.Logs(ctx, work.Ref); err != nil {
		t.Fatal(err)
	} else {
		_, _ = io.Copy(io.Discard, rc)
		_ = rc.Close()
	}
	if err := d.Stop(ctx, work.Ref); err != nil {
		t.Fatal(err)
	}
	if err := d.Cleanup(ctx, "job-rbac"); err != nil {
		t.Fatal(err)
	}
	stop()
	_ = d.Close()

	used := map[string]bool{}
	for _, a := range cs.Actions() {
		r := a.GetResource().Resource
		if sub := a.GetSubresource(); sub != "" {
			r += "/" + sub
		}
		if a.GetNamespace() != "sims" {
			t.Errorf("request outside the jobs' namespace: %s %s in %q", a.GetVerb(), r, a.GetNamespace())
		}
		used[r+" "+a.GetVerb()] = true
	}

	raw, err := os.ReadFile("../../deploy/helm/avxrm/templates/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(raw), "\nrules:\n")
	if !ok {
		t.Fatal("role.yaml has no rules block")
	}
	block, _, _ := strings.Cut(rest, "---")
	var role struct{ Rules []rbacv1.PolicyRule }
	if err := yaml.UnmarshalStrict([]byte("rules:\n"+block), &role); err != nil {
		t.Fatal(err)
	}
	granted := map[string]bool{}
	for _, r := range role.Rules {
		if !slices.Equal(r.APIGroups, []string{""}) {
			t.Errorf("rule outside the core group: %+v", r)
		}
		for _, res := range r.Resources {
			for _, v := range r.Verbs {
				granted[res+" "+v] = true
			}
		}
	}
	for k := range used {
		if !granted[k] {
			t.Errorf("the driver issues %q; the Role does not grant it", k)
		}
	}
	for k := range granted {
		if !used[k] {
			t.Errorf("the Role grants %q; the driver never issues it", k)
		}
	}
	t.Logf("driver requests: %v", keys(used))
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
