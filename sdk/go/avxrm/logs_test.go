package avxrm_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
)

// InstanceLog asks for an instance's log by job id, role and index, each
// one escaped path segment, from an offset or its last lines, and says
// where in the log the bytes start (Rm-Log-Offset); a log not there is the
// problem's ErrNotFound; an empty job id or role is refused before
// anything is sent.
func TestInstanceLog(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.RequestURI)
		mu.Unlock()
		q := r.URL.Query()
		switch {
		case strings.Contains(r.URL.Path, "/instances/controller/"):
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"title":"Not Found","status":404,"detail":"the job's instances are starting: no log yet"}`))
		case q.Get("tail") == "2":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Rm-Log-Offset", "100")
			_, _ = w.Write([]byte("line 9\nline 10\n"))
		default:
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Rm-Log-Offset", q.Get("offset"))
			_, _ = w.Write([]byte("\xffbc"))
		}
	}))
	defer srv.Close()
	c, _ := avxrm.New(srv.URL, avxrm.WithRetries(0))
	ctx := context.Background()
	take := func() []string {
		mu.Lock()
		defer mu.Unlock()
		a := asked
		asked = nil
		return a
	}

	l, err := c.InstanceLog(ctx, "job/1", api.InstanceRole("worker"), 3, avxrm.LogOptions{Offset: 5})
	if err != nil || string(l.Data) != "\xffbc" || l.Offset != 5 || l.End() != 8 {
		t.Errorf("InstanceLog from 5: %+v (end %d), %v", l, l.End(), err)
	}
	if got, want := take(), avxrm.BasePath+"/jobs/job%2F1/instances/worker/3/logs?offset=5"; len(got) != 1 || got[0] != want {
		t.Errorf("asked %q, want %q", got, want)
	}

	l, err = c.InstanceLog(ctx, "job-1", "worker", 0, avxrm.LogOptions{Tail: 2})
	if err != nil || string(l.Data) != "line 9\nline 10\n" || l.Offset != 100 || l.End() != 115 {
		t.Errorf("InstanceLog's last 2 lines: %+v, %v", l, err)
	}
	if got, want := take(), avxrm.BasePath+"/jobs/job-1/instances/worker/0/logs?tail=2"; len(got) != 1 || got[0] != want {
		t.Errorf("asked %q, want %q", got, want)
	}

	_, err = c.InstanceLog(ctx, "job-1", "controller", 0, avxrm.LogOptions{})
	var e *avxrm.Error
	if !errors.As(err, &e) || !errors.Is(err, avxrm.ErrNotFound) || !strings.Contains(err.Error(), "no log yet") {
		t.Errorf("a log not there yet: %v, want the problem's 404", err)
	}
	take()

	for _, args := range [][2]string{{"", "worker"}, {"job-1", ""}} {
		if _, err := c.InstanceLog(ctx, args[0], api.InstanceRole(args[1]), 0, avxrm.LogOptions{}); err == nil {
			t.Errorf("InstanceLog(%q, %q): no error", args[0], args[1])
		}
	}
	if got := take(); len(got) != 0 {
		t.Errorf("an empty job id or role asked %q", got)
	}
}
