package kubernetes_test

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/kubernetes"
)

// TestKubeconfigForms: the plugin's kubeconfig is the content of a
// kubeconfig, in YAML or in JSON (which kubectl reads too, and which a JSON
// plugin config may carry on one line), or the path of a file. A one-line
// JSON kubeconfig was taken for a path, and the error ("kubeconfig file:
// stat {...}: no such file or directory") repeated the whole secret; no
// error may repeat a secret that is not a path.
func TestKubeconfigForms(t *testing.T) {
	const token = "SECRET-TOKEN-0123456789"
	kc := map[string]any{
		"apiVersion": "v1", "kind": "Config", "current-context": "x",
		"clusters": []any{map[string]any{"name": "c", "cluster": map[string]any{"server": "https://127.0.0.1:9351"}}},
		"users":    []any{map[string]any{"name": "u", "user": map[string]any{"token": token}}},
		"contexts": []any{map[string]any{"name": "x", "context": map[string]any{"cluster": "c", "user": "u"}}},
	}
	oneLine, err := json.Marshal(kc)
	if err != nil {
		t.Fatal(err)
	}
	indented, _ := json.MarshalIndent(kc, "", "  ")
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, oneLine, 0o600); err != nil {
		t.Fatal(err)
	}
	flowYAML := `{apiVersion: v1, kind: Config, current-context: x, clusters: [{name: c, cluster: {server: "https://127.0.0.1:9351"}}], users: [{name: u, user: {token: ` + token + `}}], contexts: [{name: x, context: {cluster: c, user: u}}]}`
	for name, kubeconfig := range map[string]string{
		"one-line JSON":        string(oneLine),
		"one-line JSON padded": "  " + string(oneLine) + "\n",
		"indented JSON":        string(indented),
		"flow YAML":            flowYAML,
		"path":                 path,
	} {
		t.Run(name, func(t *testing.T) {
			rc, err := kubernetes.RestConfig(driver.KubernetesConfig{Namespace: "sims", Kubeconfig: kubeconfig})
			if err != nil {
				t.Fatalf("RestConfig() error = %v", err)
			}
			if rc.Host != "https://127.0.0.1:9351" || rc.BearerToken != token {
				t.Errorf("RestConfig() = host %q, token %q; want the kubeconfig's", rc.Host, rc.BearerToken)
			}
		})
	}
	for name, kubeconfig := range map[string]string{
		"a token pasted instead": token,
		"truncated JSON":         `{"apiVersion": "v1", "users": [{"name": "u", "user": {"token": "` + token + `"`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := kubernetes.RestConfig(driver.KubernetesConfig{Namespace: "sims", Kubeconfig: kubeconfig})
			if err == nil {
				t.Fatal("RestConfig() succeeded")
			}
			if strings.Contains(err.Error(), token) {
				t.Errorf("RestConfig() error repeats the secret: %v", err)
			}
			if !strings.Contains(err.Error(), "kubeconfig") {
				t.Errorf("RestConfig() error %q does not name the field", err)
			}
		})
	}
	// A path that does not exist is named: it is no secret.
	missing := filepath.Join(t.TempDir(), "nope")
	if _, err := kubernetes.RestConfig(driver.KubernetesConfig{Namespace: "sims", Kubeconfig: missing}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("RestConfig() of a missing file: error %v, want it to name %s", err, missing)
	}
}

// TestNewUnreachable: a plugin whose API server refuses connections fails
// New at once, marked driver.ErrUnavailable (the launcher reports
// RuntimeUnavailable and tries again), as the docker driver does for an
// engine it cannot reach. Before, New logged that it could not check its
// permissions, waited the informer's 30 s sync timeout and returned a
// driver whose every call failed.
func TestNewUnreachable(t *testing.T) {
	// A port nothing listens on, once closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	kubeconfig := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://` + addr + `", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
	cfg, _ := json.Marshal(driver.KubernetesConfig{Namespace: "sims", Kubeconfig: kubeconfig})
	began := time.Now()
	d, err := kubernetes.New(cfg, driver.Options{})
	took := time.Since(began)
	if err == nil {
		d.Close()
		t.Fatalf("New() succeeded after %s with an API server that refuses connections", took)
	}
	if !errors.Is(err, driver.ErrUnavailable) || !strings.Contains(err.Error(), addr) {
		t.Errorf("New() error = %v, want ErrUnavailable naming %s", err, addr)
	}
	if took > 5*time.Second {
		t.Errorf("New() took %s to fail", took)
	}
}
