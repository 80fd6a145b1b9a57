package up_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/up"
)

// 'avxrm up extra' is refused: it would otherwise start a server as if the
// argument were not there.
func TestLoadRefusesArguments(t *testing.T) {
	_, err := up.Load([]string{"--data-dir", t.TempDir(), "extra"}, func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), `unexpected argument "extra"`) {
		t.Errorf("Load(extra) = %v, want it refused", err)
	}
}

// A listen address that is not host:port is refused as such, naming the
// flag, before anything starts ("nonsense" was refused as a non-loopback
// address without auth).
func TestLoadChecksListenAddresses(t *testing.T) {
	for args, want := range map[string]string{
		"--http-addr nonsense":           `--http-addr "nonsense": want host:port, e.g. 127.0.0.1:8080 (0.0.0.0:8080 for every interface)`,
		"--nats-addr 127.0.0.1:99999":    `--nats-addr "127.0.0.1:99999": port "99999": want a number from 0 to 65535`,
		"--mongo-addr 127.0.0.1:":        `--mongo-addr "127.0.0.1:": port "": want a number from 0 to 65535`,
		"--dev-idp-addr 127.0.0.1:-1":    `--dev-idp-addr "127.0.0.1:-1": port "-1": want a number from 0 to 65535`,
		"--http-addr 0.0.0.0:8080":       "",
		"--http-addr [::1]:0":            "",
		"--http-addr localhost:http-alt": "",
	} {
		_, err := up.Load(append([]string{"--data-dir", t.TempDir()}, strings.Fields(args)...), func(string) string { return "" })
		if got := fmt.Sprint(err); (want == "" && err != nil) || (want != "" && got != want) {
			t.Errorf("Load(%s) = %v, want %q", args, err, want)
		}
	}
}

// A bad RM_JOB_RETENTION (or --job-retention) is refused by name before
// anything starts.
func TestLoadChecksJobRetention(t *testing.T) {
	for _, c := range []struct{ env, args, want string }{
		{"soon", "", `RM_JOB_RETENTION: time: invalid duration "soon"`},
		{"-1h", "", "RM_JOB_RETENTION (--job-retention) -1h0m0s: must not be negative (0 keeps every job)"},
		{"", "--job-retention -30m", "RM_JOB_RETENTION (--job-retention) -30m0s: must not be negative (0 keeps every job)"},
	} {
		_, err := up.Load(append([]string{"--data-dir", t.TempDir()}, strings.Fields(c.args)...), func(k string) string {
			return map[string]string{"RM_JOB_RETENTION": c.env}[k]
		})
		if fmt.Sprint(err) != c.want {
			t.Errorf("RM_JOB_RETENTION=%q %s: Load = %v, want %q", c.env, c.args, err, c.want)
		}
	}
	cfg, err := up.Load([]string{"--data-dir", t.TempDir()}, func(k string) string { return map[string]string{"RM_JOB_RETENTION": "720h"}[k] })
	if err != nil || cfg.JobRetention != 720*time.Hour {
		t.Errorf("RM_JOB_RETENTION=720h: Load = %v, %v", cfg.JobRetention, err)
	}
}
