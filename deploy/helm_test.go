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

// readmeSettings returns the RM_* variables of the README's generated table
// NAME (between <!-- service-config: NAME --> and <!-- /service-config -->),
// which each binary's TestSettings keeps equal to what the binary reads.
func readmeSettings(t *testing.T, name string) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(raw), "<!-- service-config: "+name+" -->\n")
	table, _, ok2 := strings.Cut(rest, "<!-- /service-config -->")
	if !ok || !ok2 {
		t.Fatalf("README has no service-config table %s", name)
	}
	out := map[string]bool{}
	for _, l := range strings.Split(table, "\n") {
		if env, ok := strings.CutPrefix(l, "| `"); ok {
			env, _, _ = strings.Cut(env, "`")
			out[env] = true
		}
	}
	return out
}

// containerEnv returns the env entries of the deployment named name.
func containerEnv(t *testing.T, objs []runtime.Object, name string) map[string]string {
	t.Helper()
	for _, o := range objs {
		if dep, ok := o.(*appsv1.Deployment); ok && dep.Name == name {
			env := map[string]string{}
			for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
				if _, dup := env[e.Name]; dup {
					t.Errorf("%s: %s set twice", name, e.Name)
				}
				env[e.Name] = e.Value
				if e.ValueFrom != nil {
					env[e.Name] = "(from)"
				}
			}
			return env
		}
	}
	t.Fatalf("no deployment %s", name)
	return nil
}

// Every variable the chart gives a service is one that service reads (the
// README's tables, which the binaries' tests keep current): a variable it
// does not read is a setting the operator believes in and nothing obeys.
func TestHelmEnvIsWhatServicesRead(t *testing.T) {
	common := readmeSettings(t, "common")
	objs := decode(t, render(t, testValues))
	for _, svc := range []string{"rm-api", "rm-scheduler", "rm-launcher", "rm-scenario-export"} {
		own := readmeSettings(t, svc)
		for k := range containerEnv(t, objs, svc) {
			if !common[k] && !own[k] {
				t.Errorf("%s: the chart sets %s, which %s does not read", svc, k, svc)
			}
		}
	}
}

// api.oidc turns auth on: its values become the API's RM_OIDC_* variables,
// and <service>.env entries are added, winning over the chart's own.
func TestHelmAuthAndExtraEnv(t *testing.T) {
	vals := map[string]any{
		"mongo": testValues["mongo"], "nats": testValues["nats"],
		"api": map[string]any{
			"oidc": map[string]any{"issuer": "https://sso.example/auth/realms/avx", "audience": "rm", "uiScope": "openid profile"},
			"env":  []any{map[string]any{"name": "RM_API_BODY_LIMIT", "value": "2097152"}},
		},
		"scheduler": map[string]any{"env": []any{map[string]any{"name": "RM_LOG_LEVEL", "value": "debug"},
			map[string]any{"name": "RM_INSTANCE_ID", "value": "s1"}}},
	}
	objs := decode(t, render(t, vals))
	api := containerEnv(t, objs, "rm-api")
	for k, want := range map[string]string{"RM_OIDC_ISSUER": "https://sso.example/auth/realms/avx", "RM_OIDC_AUDIENCE": "rm",
		"RM_OIDC_UI_SCOPE": "openid profile", "RM_API_BODY_LIMIT": "2097152"} {
		if api[k] != want {
			t.Errorf("rm-api %s=%q, want %q (env %v)", k, api[k], want, api)
		}
	}
	if _, ok := api["RM_OIDC_ROLES_CLAIM"]; ok {
		t.Errorf("rm-api: an empty api.oidc value is set: %v", api)
	}
	if s := containerEnv(t, objs, "rm-scheduler"); s["RM_INSTANCE_ID"] != "s1" {
		t.Errorf("rm-scheduler env %v: want its own RM_INSTANCE_ID s1 in place of the chart's", s)
	}
	// Off by default, and NOTES say so.
	if env := containerEnv(t, decode(t, render(t, testValues)), "rm-api"); env["RM_OIDC_ISSUER"] != "" {
		t.Errorf("auth on by default: %v", env)
	}
}

// The NOTES say when auth is off (louder with an Ingress), which config
// the launchers' default driver runs with, and how to register a plugin.
func TestHelmNotes(t *testing.T) {
	notes := func(vals map[string]any) string {
		ch, err := loader.Load(chartDir)
		if err != nil {
			t.Fatal(err)
		}
		inst := action.NewInstall(&action.Configuration{})
		inst.DryRun, inst.ClientOnly, inst.ReleaseName, inst.Namespace = true, true, "rm", "sims"
		rel, err := inst.Run(ch, vals)
		if err != nil {
			t.Fatal(err)
		}
		return rel.Info.Notes
	}
	off := notes(testValues)
	for _, want := range []string{"AUTH IS OFF", "the Ingress rm.example.com serves it to anyone", `"is_default": true`, `"in_cluster": true`,
		`kubernetes driver ({"in_cluster": true, "namespace": "sims"})`} {
		if !strings.Contains(off, want) {
			t.Errorf("NOTES without %q:\n%s", want, off)
		}
	}
	on := notes(map[string]any{"mongo": testValues["mongo"], "nats": testValues["nats"],
		"api": map[string]any{"oidc": map[string]any{"issuer": "https://sso.example/auth/realms/avx"}}})
	if strings.Contains(on, "AUTH IS OFF") {
		t.Errorf("NOTES with an issuer say auth is off:\n%s", on)
	}
}

// The launchers' own kubernetes driver (the chart's default) runs in the
// cluster they run in, on the jobs' namespace, the one the Role grants:
// with no config it cannot run (kubeconfig required), and every job on a
// queue without a plugin failed while no plugin was the default.
// launcher.defaultDriverConfig replaces that config; other drivers get none.
func TestHelmDefaultDriverConfig(t *testing.T) {
	config := func(vals map[string]any) map[string]any {
		t.Helper()
		env := containerEnv(t, decode(t, render(t, vals)), "rm-launcher")
		raw, ok := env["RM_DEFAULT_DRIVER_CONFIG"]
		if !ok {
			return nil
		}
		var c map[string]any
		if err := yaml.Unmarshal([]byte(raw), &c); err != nil {
			t.Fatalf("RM_DEFAULT_DRIVER_CONFIG=%q: %v", raw, err)
		}
		return c
	}
	with := func(launcher map[string]any, jobsNS string) map[string]any {
		vals := map[string]any{"mongo": testValues["mongo"], "nats": testValues["nats"]}
		if launcher != nil { // a nil value would delete the chart's launcher values
			vals["launcher"] = launcher
		}
		if jobsNS != "" {
			vals["jobsNamespace"] = jobsNS
		}
		return vals
	}
	if got, want := config(with(nil, "")), map[string]any{"in_cluster": true, "namespace": "sims"}; !reflect.DeepEqual(got, want) {
		t.Errorf("default: RM_DEFAULT_DRIVER_CONFIG %v, want %v (the release's namespace)", got, want)
	}
	if got := config(with(nil, "sim-jobs")); got["namespace"] != "sim-jobs" || got["in_cluster"] != true {
		t.Errorf("jobsNamespace sim-jobs: RM_DEFAULT_DRIVER_CONFIG %v", got)
	}
	own := map[string]any{"in_cluster": true, "namespace": "x", "api_qps": 200.0}
	if got := config(with(map[string]any{"defaultDriverConfig": own}, "")); !reflect.DeepEqual(got, own) {
		t.Errorf("launcher.defaultDriverConfig %v: RM_DEFAULT_DRIVER_CONFIG %v", own, got)
	}
	if got := config(with(map[string]any{"defaultDriver": "simulated"}, "")); got != nil {
		t.Errorf("simulated default: RM_DEFAULT_DRIVER_CONFIG %v, want none", got)
	}
}
