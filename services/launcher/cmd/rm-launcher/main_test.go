package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events/standalone"
)

// --help prints every setting and exits 0; the README's table is current.
func TestSettings(t *testing.T) {
	if err := standalone.Verify(service(), "../../../../README.md"); err != nil {
		t.Fatal(err)
	}
}

// The default driver's type and config are checked before anything
// connects: exit 2 naming the setting and the field at fault.
func TestDefaultDriverSettingsChecked(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"RM_DEFAULT_DRIVER": "kube"}, `RM_DEFAULT_DRIVER="kube": want one of docker, kubernetes, local, simulated`},
		{map[string]string{"RM_DEFAULT_DRIVER": "kubernetes", "RM_DEFAULT_DRIVER_CONFIG": `{"namespace": "jobs"}`},
			"RM_DEFAULT_DRIVER_CONFIG (of the kubernetes driver): invalid config: kubeconfig: required unless in_cluster is true"},
		{map[string]string{"RM_DEFAULT_DRIVER_CONFIG": `{"work_dir": "data"}`}, "RM_DEFAULT_DRIVER_CONFIG (of the local driver): invalid config: work_dir: must be an absolute path"},
		{map[string]string{"RM_DEFAULT_DRIVER_CONFIG": `{"in_cluster": true`}, "RM_DEFAULT_DRIVER_CONFIG (of the local driver)"},
	} {
		c.vars["RM_MONGO_URI"] = "mongodb://127.0.0.1:9/"
		c.vars["RM_NATS_URL"] = "nats://127.0.0.1:9"
		var stderr bytes.Buffer
		code := standalone.Exec(ctx, service(), nil, func(k string) string { return c.vars[k] }, io.Discard, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: exit %d, %q; want 2 saying %q", c.vars, code, stderr.String(), c.want)
		}
	}
}
