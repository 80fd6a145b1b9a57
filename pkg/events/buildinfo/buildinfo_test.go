package buildinfo

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestResolve(t *testing.T) {
	info := func(bi *debug.BuildInfo) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) { return bi, bi != nil }
	}
	vcs := func(rev, modified string) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}}
	}
	for _, c := range []struct {
		name, stamped string
		read          func() (*debug.BuildInfo, bool)
		want          string
	}{
		{"stamped wins", "v1.2.0-3-gabc1234", info(vcs("fcfd503abcdef0123456789", "false")), "v1.2.0-3-gabc1234"},
		{"module version", "", info(&debug.BuildInfo{Main: debug.Module{Version: "v1.3.0"}}), "v1.3.0"},
		{"commit", "", info(vcs("fcfd503abcdef0123456789", "false")), "fcfd503abcde"},
		{"commit with changes", "", info(vcs("fcfd503abcdef0123456789", "true")), "fcfd503abcde-dirty"},
		{"a workspace build records neither", "", info(&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}), "dev"},
		{"no build info", "", info(nil), "dev"},
	} {
		if got := resolve(c.stamped, c.read); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func TestInfoString(t *testing.T) {
	i := Info{Version: "v1.2.0", GoVersion: "go1.26.8", Platform: "linux/amd64"}
	if got, want := i.String(), "v1.2.0 (go1.26.8, linux/amd64)"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
}

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got Info
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got != Get() || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET: %+v (%s), want %+v as JSON", got, resp.Header.Get("Content-Type"), Get())
	}
	if got.GoVersion != runtime.Version() || got.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Fatalf("%+v: want this toolchain and platform", got)
	}
	resp, err = http.Post(srv.URL, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %s, want 405", resp.Status)
	}
}

func TestCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 || mfs[0].GetName() != "rm_build_info" || len(mfs[0].Metric) != 1 {
		t.Fatalf("gathered %v, want one rm_build_info", mfs)
	}
	m := mfs[0].Metric[0]
	labels := map[string]string{}
	for _, l := range m.Label {
		labels[l.GetName()] = l.GetValue()
	}
	if m.GetGauge().GetValue() != 1 || labels["version"] != Get().Version || labels["go_version"] != runtime.Version() {
		t.Fatalf("rm_build_info %v = %v, want version %q, go_version %q = 1", labels, m.GetGauge().GetValue(), Get().Version, runtime.Version())
	}
}
