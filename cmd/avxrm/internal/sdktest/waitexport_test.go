package sdktest

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
)

// streamTap is an HTTP client that notes, of each event stream it opens,
// the Last-Event-ID it sent and the subject of each event it received.
type streamTap struct {
	mu       sync.Mutex
	resumes  []string
	subjects []string
}

func (tap *streamTap) client(before func(r *http.Request)) *http.Client {
	return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Path != avxrm.BasePath+"/events" {
			return http.DefaultTransport.RoundTrip(r)
		}
		if before != nil {
			before(r)
		}
		tap.mu.Lock()
		tap.resumes = append(tap.resumes, r.Header.Get("Last-Event-ID"))
		tap.mu.Unlock()
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err != nil {
			return resp, err
		}
		pr, pw := io.Pipe()
		body := resp.Body
		go func() {
			sc := bufio.NewScanner(io.TeeReader(body, pw))
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
					var ce struct{ Subject string }
					_ = json.Unmarshal([]byte(data), &ce)
					tap.mu.Lock()
					tap.subjects = append(tap.subjects, ce.Subject)
					tap.mu.Unlock()
				}
			}
			pw.CloseWithError(sc.Err())
		}()
		resp.Body = struct {
			io.Reader
			io.Closer
		}{pr, closerFunc(func() error { pr.Close(); return body.Close() })}
		return resp, nil
	})}
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// onlyNewEvents checks that each event stream was opened for new events
// only (no Last-Event-ID), and at least one was; it returns the subjects
// of the events received.
func (tap *streamTap) onlyNewEvents(t *testing.T) []string {
	t.Helper()
	resumes, subjects := tap.seen()
	if len(resumes) == 0 {
		t.Fatal("the wait opened no event stream: nothing was tested")
	}
	for _, r := range resumes {
		if r != "" {
			t.Errorf("the event stream was opened with Last-Event-ID %q, want only new events", r)
		}
	}
	return subjects
}

func (tap *streamTap) seen() (resumes, subjects []string) {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	return append([]string(nil), tap.resumes...), append([]string(nil), tap.subjects...)
}

// WaitExport on a stream with a long history of exports of the same queue
// does not replay it: it asks for no Last-Event-ID (it replayed every
// export's end from event 0, holding one of the API's replay slots), and
// receives no event of another export.
func TestWaitExportDoesNotReplayTheHistory(t *testing.T) {
	sys := start(t, t.TempDir(), "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	direct := newClient(t, sys.Addr)
	f := newExportFixture(t, direct, 1<<10)
	for range 20 {
		x, err := direct.CreateExport(ctx, f.job, api.ExportRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := direct.WaitExport(ctx, *x.Id); err != nil {
			t.Fatal(err)
		}
	}
	tap := &streamTap{}
	c := newClient(t, sys.Addr, avxrm.WithHTTPClient(tap.client(nil)))
	x, err := c.CreateExport(ctx, f.job, api.ExportRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if x, err = c.WaitExport(ctx, *x.Id); err != nil || *x.Status != "ready" {
		t.Fatalf("WaitExport: %+v, %v", x, err)
	}
	subjects := tap.onlyNewEvents(t)
	for _, s := range subjects {
		if s != *x.Id {
			t.Errorf("received events of %v; want at most the end of %s", subjects, *x.Id)
			break
		}
	}
}

// An export that ends after WaitExport read it and before its event
// stream is open: WaitExport reads it again once the stream is open, and
// returns it, instead of waiting for an event that came before.
func TestWaitExportSeesAnEndBeforeItsStreamOpens(t *testing.T) {
	sys := start(t, t.TempDir(), "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	direct := newClient(t, sys.Addr)
	f := newExportFixture(t, direct, 1<<10)
	var current atomic.Value // the export waited for
	tap := &streamTap{}
	hc := tap.client(func(r *http.Request) {
		// Hold the stream's request until the export has ended.
		for {
			x, err := direct.GetExport(ctx, current.Load().(string))
			if err != nil || *x.Status == "ready" || *x.Status == "failed" {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	c := newClient(t, sys.Addr, avxrm.WithHTTPClient(hc))
	for attempt := 0; ; attempt++ {
		x, err := direct.CreateExport(ctx, f.job, api.ExportRequest{})
		if err != nil {
			t.Fatal(err)
		}
		current.Store(*x.Id)
		wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
		got, err := c.WaitExport(wctx, *x.Id)
		wcancel()
		if err != nil || *got.Status != "ready" {
			t.Fatalf("WaitExport of an export that ended before its stream opened: %+v, %v", got, err)
		}
		if resumes, _ := tap.seen(); len(resumes) > 0 {
			return // it opened the stream after the export had ended
		}
		if attempt == 4 {
			t.Fatal("every export was ready before its wait began: nothing was tested")
		}
	}
}
