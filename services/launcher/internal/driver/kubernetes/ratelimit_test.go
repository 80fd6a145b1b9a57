package kubernetes_test

import (
	"testing"

	k8s "k8s.io/client-go/kubernetes"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/kubernetes"
)

// TestClientRateLimit checks the limiter of the clientset built from a
// plugin's config, as New builds it: by default 50 requests a second with
// bursts of 100, not client-go's 5 with bursts of 10, which made the pods
// of one job of 100 workers wait 38 s to be created (docs/launcher.md);
// api_qps and api_burst when the config sets them, and a burst of twice
// api_qps when it sets only that.
func TestClientRateLimit(t *testing.T) {
	const kubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: secret}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: sims}}]
current-context: x
`
	for name, tc := range map[string]struct {
		qps       float64
		burst     int
		wantQPS   float32
		wantBurst int
	}{
		"default":    {wantQPS: 50, wantBurst: 100},
		"rate only":  {qps: 200, wantQPS: 200, wantBurst: 400},
		"both":       {qps: 20, burst: 25, wantQPS: 20, wantBurst: 25},
		"burst only": {burst: 30, wantQPS: 50, wantBurst: 30},
	} {
		t.Run(name, func(t *testing.T) {
			rc, err := kubernetes.RestConfig(driver.KubernetesConfig{Namespace: "sims", Kubeconfig: kubeconfig, APIQPS: tc.qps, APIBurst: tc.burst})
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
			if got := lim.QPS(); got != tc.wantQPS {
				t.Errorf("requests a second = %v, want %v", got, tc.wantQPS)
			}
			// The burst: requests let through at once before the first
			// refused. Tokens come back meanwhile (one every 5 ms at 200 a
			// second), so a slow machine may let a few more through.
			accepted := 0
			for range 2 * tc.wantBurst {
				if !lim.TryAccept() {
					break
				}
				accepted++
			}
			if accepted < tc.wantBurst || accepted > tc.wantBurst+tc.wantBurst/4 {
				t.Errorf("a burst let %d requests through, want %d (a few more if tokens came back meanwhile)", accepted, tc.wantBurst)
			}
		})
	}
}
