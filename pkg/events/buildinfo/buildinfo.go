// Package buildinfo says which build of the Resource Manager a binary is:
// the version the build stamped in (make build, make images), the Go
// toolchain and the platform. Every binary of the project reports it the same
// way: --version, the log line it starts with, GET /version and the
// rm_build_info metric.
package buildinfo

import (
	"encoding/json"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// version is stamped in at link time, from `git describe` by the Makefile:
//
//	go build -ldflags "-X github.com/avxrm/rm/pkg/events/buildinfo.version=v1.2.0-3-gabc1234"
var version string

// Info is what GET /version answers.
type Info struct {
	// Version is the stamped version, else the module's or the commit's when
	// the toolchain recorded one, else "dev".
	Version   string `json:"version"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"` // GOOS/GOARCH
}

// Get returns this binary's build.
func Get() Info {
	return Info{Version: resolve(version, debug.ReadBuildInfo), GoVersion: runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH}
}

// resolve picks the version: the stamped one, else what the toolchain
// recorded (a tagged module's version; a commit when built in a checkout
// outside a workspace), else "dev".
func resolve(stamped string, read func() (*debug.BuildInfo, bool)) string {
	if stamped != "" {
		return stamped
	}
	bi, ok := read()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	rev = rev[:min(len(rev), 12)]
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// String is one line: "v1.2.0 (go1.26.8, linux/amd64)".
func (i Info) String() string {
	return i.Version + " (" + strings.Join([]string{i.GoVersion, i.Platform}, ", ") + ")"
}

// Handler answers GET /version with Get as JSON.
func Handler() http.Handler {
	body, _ := json.Marshal(Get())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
}

// Collector is the gauge rm_build_info{version, go_version}, always 1, so
// that dashboards and alerts can tell the builds of a fleet apart.
func Collector() prometheus.Collector {
	i := Get()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rm_build_info",
		Help: "The build of this binary: its version and Go toolchain (always 1)."}, []string{"version", "go_version"})
	g.WithLabelValues(i.Version, i.GoVersion).Set(1)
	return g
}
