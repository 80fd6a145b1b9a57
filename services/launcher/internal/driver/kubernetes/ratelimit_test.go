package kubernetes_test

import (
	"testing"

	k8s "k8s.io/client-go/kubernetes"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/kubernetes"
)

// TestClientRateLimit checks the limiter of the clientset built from a
// plugin's kubeconfig, as New builds it: 50 requests a second with bursts
// of 100, not client-go's 5 with bursts of 10, which made the pods of one
// job of 100 workers wait tens of seconds to be created (docs/launcher.md).
func TestClientRateLimit(t *testing.T) {
	const kubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: secret}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: sims}}]
current-context: x
`
	rc, err := kubernetes.RestConfig(driver.KubernetesConfig{Namespace: "sims", Kubeconfig: kubeconfig})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := k8s.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	lim := cs.CoreV1().RESTClient().GetRateLimiter()
	if lim == nil {
		t.Fatal("the clientset has no rate limiter: nothing would keep a runaway loop off the API server")
	}
	if got := lim.QPS(); got != 50 {
		t.Errorf("requests a second = %v, want 50", got)
	}
	// The burst: requests let through at once before the first refused.
	// A token comes back every 20 ms, so a slow machine may let one or two
	// more through; client-go's default lets 10.
	accepted := 0
	for range 200 {
		if !lim.TryAccept() {
			break
		}
		accepted++
	}
	if accepted < 100 || accepted >= 200 {
		t.Errorf("a burst let %d requests through, want 100 (a few more if tokens came back meanwhile)", accepted)
	}
}
