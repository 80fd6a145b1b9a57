package api_test

import (
	"net/http"
	"regexp"
	"testing"
)

// A request's method is a label of the request metrics only if HTTP defines
// it: any other token a client sends is counted as "other", so that no client
// can add series without end.
func TestRequestMetricsBoundMethods(t *testing.T) {
	e := startEnv(t)
	for _, m := range []string{"XA1", "XA2", "XA3", "BREW"} {
		for _, path := range []string{v1 + "/queues", "/nothing-here"} {
			if r := e.do(m, path, nil); r.Status < 400 {
				t.Errorf("%s %s = %d, want a refusal", m, path, r.Status)
			}
		}
	}
	e.do(http.MethodGet, v1+"/queues", nil)
	body := string(e.do(http.MethodGet, "/metrics", nil).Body)
	methods := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^rm_api_request[a-z_]*\{[^}]*method="([^"]*)"`).FindAllStringSubmatch(body, -1) {
		methods[m[1]] = true
	}
	if !methods["GET"] || !methods["other"] {
		t.Errorf("methods in the request metrics %v, want GET and other", methods)
	}
	for m := range methods {
		switch m {
		case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "other":
		default:
			t.Errorf("the request metrics have a series of method %q", m)
		}
	}
}
