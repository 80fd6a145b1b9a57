package driver_test

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/avxrm/rm/services/launcher/internal/driver"
)

var dns1123 = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func TestRefName(t *testing.T) {
	cases := map[string]struct {
		ref  driver.Ref
		want string // "" when only validity and uniqueness are checked
	}{
		"plain":           {driver.Ref{JobID: "job-01hx", Role: driver.RoleWorker, Index: 12}, "job-01hx-worker-12"},
		"post controller": {driver.Ref{JobID: "job-1", Role: driver.RolePostController}, "job-1-post-controller-0"},
		"upper case":      {driver.Ref{JobID: "job-01HX", Role: driver.RoleController}, ""},
		"lower twin":      {driver.Ref{JobID: "job-01hx", Role: driver.RoleController}, "job-01hx-controller-0"},
		"odd chars":       {driver.Ref{JobID: "dep_a.b/c", Role: driver.RoleReplica, Index: 1}, ""},
		"long":            {driver.Ref{JobID: strings.Repeat("a", 70), Role: driver.RoleWorker, Index: 99999}, ""},
		"long twin":       {driver.Ref{JobID: strings.Repeat("a", 71), Role: driver.RoleWorker, Index: 99999}, ""},
		"only symbols":    {driver.Ref{JobID: "___", Role: driver.RoleWorker}, ""},
		"empty":           {driver.Ref{Role: driver.RoleWorker}, ""},
	}
	seen := map[string]string{}
	for name, tc := range cases {
		got := tc.ref.Name()
		if len(got) > 63 || !dns1123.MatchString(got) {
			t.Errorf("%s: Name() = %q, not a DNS-1123 label", name, got)
		}
		if tc.want != "" && got != tc.want {
			t.Errorf("%s: Name() = %q, want %q", name, got, tc.want)
		}
		if other, dup := seen[got]; dup {
			t.Errorf("%s and %s share the name %q", name, other, got)
		}
		seen[got] = name
		if again := tc.ref.Name(); again != got {
			t.Errorf("%s: Name() not deterministic: %q then %q", name, got, again)
		}
	}
}

func TestValidateConfig(t *testing.T) {
	cases := map[string]struct {
		typ, config string
		wantField   string // "" = valid
	}{
		"k8s in cluster":          {"kubernetes", `{"namespace": "sims", "in_cluster": true}`, ""},
		"k8s kubeconfig":          {"kubernetes", `{"kubeconfig": "/etc/kube/config"}`, ""},
		"k8s neither":             {"kubernetes", `{"namespace": "sims"}`, "kubeconfig"},
		"k8s both":                {"kubernetes", `{"in_cluster": true, "kubeconfig": "x"}`, "kubeconfig"},
		"k8s bad namespace":       {"kubernetes", `{"namespace": "Sims!", "in_cluster": true}`, "namespace"},
		"k8s wrong type":          {"kubernetes", `{"in_cluster": "yes"}`, "in_cluster"},
		"k8s unknown field":       {"kubernetes", `{"in_cluster": true, "context": "x"}`, "context"},
		"k8s request limits":      {"kubernetes", `{"in_cluster": true, "api_qps": 200, "api_burst": 400}`, ""},
		"k8s negative qps":        {"kubernetes", `{"in_cluster": true, "api_qps": -1}`, "api_qps"},
		"k8s qps too high":        {"kubernetes", `{"in_cluster": true, "api_qps": 10001}`, "api_qps"},
		"k8s fractional burst":    {"kubernetes", `{"in_cluster": true, "api_burst": 2.5}`, "api_burst"},
		"k8s burst too high":      {"kubernetes", `{"in_cluster": true, "api_burst": 100001}`, "api_burst"},
		"docker empty":            {"docker", `{}`, ""},
		"docker null":             {"docker", `null`, ""},
		"docker unix":             {"docker", `{"host": "unix:///var/run/docker.sock", "network": "rm"}`, ""},
		"docker tcp":              {"docker", `{"host": "tcp://10.0.0.1:2376"}`, ""},
		"docker bad host":         {"docker", `{"host": "10.0.0.1"}`, "host"},
		"docker bad scheme":       {"docker", `{"host": "ftp://x"}`, "host"},
		"docker bad network":      {"docker", `{"network": "a b"}`, "network"},
		"local default":           {"local", ``, ""},
		"local abs":               {"local", `{"work_dir": "/var/lib/rm"}`, ""},
		"local relative":          {"local", `{"work_dir": "rm"}`, "work_dir"},
		"simulated":               {"simulated", `{"run_seconds": 2.5, "failure_rate": 0.1}`, ""},
		"simulated negative":      {"simulated", `{"run_seconds": -1}`, "run_seconds"},
		"simulated rate too high": {"simulated", `{"failure_rate": 1.5}`, "failure_rate"},
		"simulated string":        {"simulated", `{"run_seconds": "5"}`, "run_seconds"},
		"not an object":           {"simulated", `[1]`, "-"},
		"trailing data":           {"simulated", `{} {}`, "-"},
		"malformed":               {"simulated", `{"run_seconds":`, "-"},
		"unknown type":            {"nomad", `{}`, "type"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := driver.ValidateConfig(tc.typ, json.RawMessage(tc.config))
			if tc.wantField == "" {
				if err != nil {
					t.Fatalf("ValidateConfig() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, driver.ErrInvalidConfig) {
				t.Fatalf("ValidateConfig() = %v, want ErrInvalidConfig", err)
			}
			var fe *driver.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("ValidateConfig() = %T, want *FieldError", err)
			}
			if tc.wantField != "-" && fe.Field != tc.wantField {
				t.Errorf("field = %q, want %q (%v)", fe.Field, tc.wantField, err)
			}
		})
	}
}

func TestRedactConfig(t *testing.T) {
	cases := map[string]struct {
		typ, in, want string
	}{
		"kubeconfig hidden": {"kubernetes", `{"namespace":"sims","kubeconfig":"apiVersion: v1\nusers: [token: s3cret]"}`, `{"kubeconfig":"***","namespace":"sims"}`},
		"in cluster kept":   {"kubernetes", `{"in_cluster":true}`, `{"in_cluster":true}`},
		"empty secret kept": {"kubernetes", `{"kubeconfig":""}`, `{"kubeconfig":""}`},
		"unparsable":        {"kubernetes", `{"kubeconfig": "s3cret"`, `{}`},
		"docker unchanged":  {"docker", `{"host":"tcp://h:1"}`, `{"host":"tcp://h:1"}`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := driver.RedactConfig(tc.typ, json.RawMessage(tc.in))
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("RedactConfig() = %s: not JSON", got)
			}
			json.Unmarshal([]byte(tc.want), &w)
			if diff := cmp.Diff(w, g); diff != "" {
				t.Errorf("RedactConfig() mismatch (-want +got):\n%s", diff)
			}
			if strings.Contains(string(got), "s3cret") {
				t.Errorf("RedactConfig() leaks the secret: %s", got)
			}
		})
	}
}

// TestSharedKey: plugins whose drivers would be the same get one key (the
// local driver's work_dir resolved, a config's field order and defaults
// aside); others get different keys, and a config that does not parse none.
func TestSharedKey(t *testing.T) {
	opts := driver.Options{DataDir: "/var/lib/avxrm/launcher"}
	key := func(typ, cfg string) string {
		var raw json.RawMessage
		if cfg != "" {
			raw = json.RawMessage(cfg)
		}
		return driver.SharedKey(typ, raw, opts)
	}
	same := [][2][2]string{
		{{driver.TypeLocal, ""}, {driver.TypeLocal, `{"work_dir": "/var/lib/avxrm/launcher/local"}`}},
		{{driver.TypeLocal, `{}`}, {driver.TypeLocal, `{"work_dir": "/var/lib/avxrm/launcher/./local/"}`}},
		{{driver.TypeDocker, `{"host": "unix:///run/docker.sock", "network": "n"}`}, {driver.TypeDocker, `{"network": "n", "host": "unix:///run/docker.sock"}`}},
		{{driver.TypeSimulated, ``}, {driver.TypeSimulated, `{"run_seconds": 0}`}},
	}
	for _, c := range same {
		a, b := key(c[0][0], c[0][1]), key(c[1][0], c[1][1])
		if a == "" || a != b {
			t.Errorf("SharedKey(%s %s) = %q, SharedKey(%s %s) = %q: want one key", c[0][0], c[0][1], a, c[1][0], c[1][1], b)
		}
	}
	differ := [][2][2]string{
		{{driver.TypeLocal, ""}, {driver.TypeLocal, `{"work_dir": "/srv/sim"}`}},
		{{driver.TypeDocker, `{"network": "a"}`}, {driver.TypeDocker, `{"network": "b"}`}},
		{{driver.TypeSimulated, `{"run_seconds": 1}`}, {driver.TypeSimulated, `{"run_seconds": 2}`}},
		{{driver.TypeLocal, ""}, {driver.TypeSimulated, ""}},
	}
	for _, c := range differ {
		if a, b := key(c[0][0], c[0][1]), key(c[1][0], c[1][1]); a == b {
			t.Errorf("SharedKey(%s %s) = SharedKey(%s %s) = %q: want two keys", c[0][0], c[0][1], c[1][0], c[1][1], a)
		}
	}
	for _, c := range [][2]string{{driver.TypeLocal, `{"work_dir": "rel"}`}, {driver.TypeDocker, `{"bogus": 1}`}, {"nope", ""}} {
		if k := key(c[0], c[1]); k != "" {
			t.Errorf("SharedKey(%s %s) = %q, want none for a config that does not parse", c[0], c[1], k)
		}
	}
	if k := driver.SharedKey(driver.TypeLocal, nil, driver.Options{}); k != "" {
		t.Errorf("SharedKey(local, no data dir) = %q, want none", k)
	}
}
