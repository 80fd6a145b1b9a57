package deploy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

const chartDir = "helm/avxrm"

var testValues = map[string]any{
	"mongo": map[string]any{"uri": "mongodb://rm:pw@mongo:27017/?replicaSet=rs0"},
	"nats":  map[string]any{"url": "nats://nats:4222"},
	"api":   map[string]any{"ingress": map[string]any{"enabled": true, "className": "nginx", "host": "rm.example.com"}},
}

func TestHelmLint(t *testing.T) {
	res := action.NewLint().Run([]string{chartDir}, testValues)
	for _, m := range res.Messages {
		if m.Severity >= support.WarningSev {
			t.Errorf("lint: %s", m)
		}
	}
	for _, err := range res.Errors {
		t.Errorf("lint: %v", err)
	}
}

// render is `helm template` of the chart with vals.
func render(t *testing.T, vals map[string]any) string {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	inst := action.NewInstall(&action.Configuration{})
	inst.DryRun, inst.ClientOnly, inst.Replace = true, true, true
	inst.ReleaseName, inst.Namespace = "rm", "sims"
	inst.KubeVersion = &chartutil.KubeVersion{Version: "v1.34.0", Major: "1", Minor: "34"}
	rel, err := inst.Run(ch, vals)
	if err != nil {
		t.Fatalf("template: %v", err)
	}
	return rel.Manifest
}

// decode reads every object of a manifest strictly: unknown or duplicate
// fields fail, as does a kind the client-go scheme does not know.
func decode(t *testing.T, manifest string) []runtime.Object {
	t.Helper()
	objs, err := decodeStrict(manifest)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func decodeStrict(manifest string) ([]runtime.Object, error) {
	s := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, json.SerializerOptions{Yaml: true, Strict: true})
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	var objs []runtime.Object
	for {
		doc, err := r.Read()
		if err == io.EOF {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if !bytes.Contains(doc, []byte("kind:")) {
			continue // comments only
		}
		obj, _, err := s.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("strict decode: %w\n%s", err, doc)
		}
		objs = append(objs, obj)
	}
}

// The decoding is strict: a misspelt field fails.
func TestHelmStrictDecodeRefusesUnknownFields(t *testing.T) {
	bad := "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 80, targetPort: 80}], selectr: {a: b}}\n"
	if _, err := decodeStrict(bad); err == nil || !strings.Contains(err.Error(), "selectr") {
		t.Errorf("unknown field accepted: %v", err)
	}
}

func TestHelmTemplateDecodesStrictly(t *testing.T) {
	objs := decode(t, render(t, testValues))
	kinds := map[string]int{}
	replicas := map[string]int32{}
	defaultDriver := map[string]string{} // RM_DEFAULT_DRIVER by deployment
	for _, o := range objs {
		kind := o.GetObjectKind().GroupVersionKind().Kind
		kinds[kind]++
		if dep, ok := o.(*appsv1.Deployment); ok {
			replicas[dep.Name] = *dep.Spec.Replicas
			checkPodSpec(t, dep)
			for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
				if e.Name == "RM_DEFAULT_DRIVER" {
					defaultDriver[dep.Name] = e.Value
				}
			}
		}
	}
	// The API refuses what the launchers' default driver cannot run, so it
	// is told the same one.
	if defaultDriver["rm-launcher"] != "kubernetes" || defaultDriver["rm-api"] != defaultDriver["rm-launcher"] {
		t.Errorf("RM_DEFAULT_DRIVER by deployment %v: want the launchers' kubernetes, the API's the same", defaultDriver)
	}
	for kind, n := range map[string]int{"Deployment": 4, "PodDisruptionBudget": 3, "Service": 1, "Ingress": 1, "ConfigMap": 1,
		"Secret": 1, "ServiceAccount": 1, "Role": 1, "RoleBinding": 1} {
		if kinds[kind] != n {
			t.Errorf("%d %s, want %d (all: %v)", kinds[kind], kind, n, kinds)
		}
	}
	if replicas["rm-scheduler"] != 2 || replicas["rm-launcher"] != 2 {
		t.Errorf("replicas %v: want 2 schedulers and 2 launchers", replicas)
	}
	// Without the required values, rendering fails with their names.
	ch, _ := loader.Load(chartDir)
	inst := action.NewInstall(&action.Configuration{})
	inst.DryRun, inst.ClientOnly, inst.ReleaseName = true, true, "rm"
	if _, err := inst.Run(ch, map[string]any{}); err == nil || !strings.Contains(err.Error(), "is required") {
		t.Errorf("no mongo.uri / nats.url: %v", err)
	}
}

// theRole returns the launcher's Role as rendered.
func theRole(t *testing.T) *rbacv1.Role {
	for _, o := range decode(t, render(t, testValues)) {
		if r, ok := o.(*rbacv1.Role); ok {
			return r
		}
	}
	t.Fatal("no Role rendered")
	return nil
}

// checkPodSpec: non-root, read-only root filesystem, probes, requests.
func checkPodSpec(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	ps := d.Spec.Template.Spec
	if ps.SecurityContext == nil || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot {
		t.Errorf("%s: not non-root", d.Name)
	}
	for _, c := range ps.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s/%s: security context %+v", d.Name, c.Name, sc)
		}
		if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("%s/%s: probes", d.Name, c.Name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
			t.Errorf("%s/%s: no requests", d.Name, c.Name)
		}
	}
}

// The Role as rendered is exactly the rules block of templates/role.yaml,
// which services/launcher/rbac_test.go checks against the kubernetes
// driver's requests.
func TestHelmRoleIsTheTemplatesRules(t *testing.T) {
	raw, err := os.ReadFile(chartDir + "/templates/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(raw), "\nrules:\n")
	block, _, _ := strings.Cut(rest, "---")
	var want struct{ Rules []rbacv1.PolicyRule }
	if err := yaml.UnmarshalStrict([]byte("rules:\n"+block), &want); err != nil {
		t.Fatal(err)
	}
	got := theRole(t)
	if !reflect.DeepEqual(got.Rules, want.Rules) || len(want.Rules) == 0 {
		t.Errorf("rendered rules %+v, template's %+v", got.Rules, want.Rules)
	}
	if got.Namespace != "sims" || got.Name != "rm-launcher" {
		t.Errorf("role %s/%s", got.Namespace, got.Name)
	}
}
