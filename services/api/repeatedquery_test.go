package api_test

import (
	"net/http"
	"strings"
	"testing"
)

// A query parameter that takes one value, given twice, is refused naming
// it; one that takes several (label) may repeat.
func TestRepeatedQueryParameter(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", queueBody("Default"))
	r := e.must(http.StatusUnprocessableEntity, http.MethodGet, v1+"/jobs?status=failed&status=succeeded", nil)
	if !strings.Contains(string(r.Body), `"field":"status"`) || !strings.Contains(string(r.Body), "given 2 times; it takes one value") {
		t.Errorf("repeated status: %s", r.Body)
	}
	e.must(http.StatusOK, http.MethodGet, v1+"/jobs?label=a=1&label=b=2", nil)
	e.must(http.StatusOK, http.MethodGet, v1+"/jobs?status=failed", nil)
}
