package avxrm_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
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
		`"http://127.0.0.1:8080/ui": that is a URL of the server's web view, not its root; give http://127.0.0.1:8080`:             {"http://127.0.0.1:8080/ui", nil},
		`"https://rm.example/rm/ui/jobs": that is a URL of the server's web view, not its root; give https://rm.example/rm`:        {"https://rm.example/rm/ui/jobs", nil},
		`"http://127.0.0.1:8080/api/resources/v1": that is a URL of the server's API, not its root; give http://127.0.0.1:8080`:    {"http://127.0.0.1:8080/api/resources/v1", nil},
		`"http://127.0.0.1:8080/api/resources/docs/": that is a URL of the server's API, not its root; give http://127.0.0.1:8080`: {"http://127.0.0.1:8080/api/resources/docs/", nil},
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
		if _, err := avxrm.New("http://127.0.0.1:8080/rm/uix/", opt); err != nil {
			t.Errorf("New: %v", err)
		}
	}
}

// stallingServer answers every request with the headers and the start of
// a JSON body of 100 bytes, then sends nothing more.
func stallingServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { conn.Close() })
			go func() {
				_, _ = conn.Read(make([]byte, 64<<10))
				_, _ = conn.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":"))
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// A server that sends the start of its answer and then nothing is not
// waited for forever either: the body may be silent for as long as the
// transport's ResponseHeaderTimeout (DefaultHTTPClient's: 30 s), as the
// headers may. GetJob hung until its context ended.
func TestStalledAnswerTimesOut(t *testing.T) {
	root := stallingServer(t)
	hc := &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 300 * time.Millisecond}}
	c, err := avxrm.New(root, avxrm.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err = c.GetJob(ctx, "job-1")
	var ue *url.Error
	if !errors.As(err, &ue) || ue.URL != root+avxrm.BasePath+"/jobs/job-1" || !errors.Is(err, os.ErrDeadlineExceeded) ||
		ctx.Err() != nil || time.Since(start) > 5*time.Second {
		t.Errorf("GetJob of a stalled answer: %v after %v, want a timeout naming the URL after 300ms", err, time.Since(start))
	}
	if _, err := c.Do(ctx, http.MethodGet, "/jobs/job-1", nil, nil); !errors.Is(err, os.ErrDeadlineExceeded) || ctx.Err() != nil {
		t.Errorf("Do of a stalled answer: %v", err)
	}
}

// A body that keeps coming, however slowly, is read to its end.
func TestSlowAnswerIsNotCut(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		for _, part := range []string{`{"id":`, `"job-1",`, `"version":`, `2}`} {
			_, _ = w.Write([]byte(part))
			w.(http.Flusher).Flush()
			time.Sleep(150 * time.Millisecond)
		}
	}))
	defer srv.Close()
	hc := &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 300 * time.Millisecond}}
	c, _ := avxrm.New(srv.URL, avxrm.WithHTTPClient(hc))
	if j, err := c.GetJob(context.Background(), "job-1"); err != nil || *j.Version != 2 {
		t.Errorf("GetJob of a slow answer: %v", err)
	}
}
