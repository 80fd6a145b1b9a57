package avxrm_test

import (
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm"
)

// New refuses what would only fail later, or spin: a root URL with a query
// (the API's paths went after it: every request a 404), a page size the
// API refuses on every page, negative retries, and a backoff of no wait
// (Watch reconnected a thousand times a second to a server that was down).
func TestNewRefusesBadOptions(t *testing.T) {
	bad := map[string]struct {
		root string
		opt  avxrm.Option
	}{
		"page size 0":        {"", avxrm.WithPageSize(0)},
		"page size -1":       {"", avxrm.WithPageSize(-1)},
		"page size 1001":     {"", avxrm.WithPageSize(1001)},
		"retries -1":         {"", avxrm.WithRetries(-1)},
		"backoff":            {"", avxrm.WithBackoff(avxrm.Backoff{})},
		"backoff Max":        {"", avxrm.WithBackoff(avxrm.Backoff{Initial: time.Second})},
		"query":              {"http://127.0.0.1:8080/?x=1", nil},
		"fragment":           {"http://127.0.0.1:8080#top", nil},
		"want a URL such as": {"127.0.0.1:8080", nil},
	}
	for want, b := range bad {
		var opts []avxrm.Option
		if b.opt != nil {
			opts = append(opts, b.opt)
		}
		if c, err := avxrm.New(b.root, opts...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: New: %v, %v; want an error naming %q", want, c, err, want)
		}
	}
	for _, opt := range []avxrm.Option{avxrm.WithPageSize(1), avxrm.WithPageSize(1000), avxrm.WithRetries(0),
		avxrm.WithBackoff(avxrm.Backoff{Initial: time.Millisecond, Max: time.Millisecond})} {
		if _, err := avxrm.New("http://127.0.0.1:8080/rm/", opt); err != nil {
			t.Errorf("New: %v", err)
		}
	}
}
