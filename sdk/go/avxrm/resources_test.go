package avxrm_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
)

// recorder is an API that answers every request 404 and remembers what was
// asked, as the request line sent it.
type recorder struct {
	mu   sync.Mutex
	uris []string
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec.mu.Lock()
	rec.uris = append(rec.uris, r.RequestURI)
	rec.mu.Unlock()
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write([]byte(`{"title":"Not Found","status":404,"detail":"not found"}`))
}

func (rec *recorder) take() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	u := rec.uris
	rec.uris = nil
	return u
}

// Every id or name goes as one escaped path segment, "." and ".." too,
// which a URL would otherwise resolve to another resource (GetJob("..")
// asked for the API's root, Artifacts(".") for the job "artifacts"); an
// empty one is refused before anything is sent.
func TestIDsAreOneEscapedPathSegment(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	c, err := avxrm.New(srv.URL, avxrm.WithRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first := func(seq func(yield func(api.Artifact, error) bool)) error {
		for _, err := range seq {
			return err
		}
		return nil
	}
	calls := map[string]func(id string) error{
		"GetJob":      func(id string) error { _, err := c.GetJob(ctx, id); return err },
		"CancelJob":   func(id string) error { _, err := c.CancelJob(ctx, id); return err },
		"GetQueue":    func(id string) error { _, err := c.GetQueue(ctx, id); return err },
		"GetJobArray": func(id string) error { _, err := c.GetJobArray(ctx, id); return err },
		"GetExport":   func(id string) error { _, err := c.GetExport(ctx, id); return err },
		"CreateExport": func(id string) error {
			_, err := c.CreateExport(ctx, id, api.ExportRequest{})
			return err
		},
		"Artifacts": func(id string) error { return first(c.Artifacts(ctx, id)) },
		"Exports": func(id string) error {
			for _, err := range c.Exports(ctx, id) {
				return err
			}
			return nil
		},
		"DeleteExport": func(id string) error { return c.DeleteExport(ctx, id) },
	}
	paths := map[string]string{
		"GetJob": "/jobs/%s", "CancelJob": "/jobs/%s/cancel", "GetQueue": "/queues/%s",
		"GetJobArray": "/job-arrays/%s", "GetExport": "/scenario-exports/%s",
		"CreateExport": "/jobs/%s/scenario-exports", "Artifacts": "/jobs/%s/artifacts?limit=200",
		"Exports": "/jobs/%s/scenario-exports?limit=200", "DeleteExport": "/scenario-exports/%s",
	}
	ids := map[string]string{
		".":                 "%2E",
		"..":                "%2E%2E",
		"../queues/Default": "..%2Fqueues%2FDefault",
		"a?b=c#d":           "a%3Fb=c%23d",
		"a b":               "a%20b",
		"ü":                 "%C3%BC",
		"job-1":             "job-1",
	}
	for name, call := range calls {
		for id, seg := range ids {
			if err := call(id); !errors.Is(err, avxrm.ErrNotFound) {
				t.Errorf("%s(%q): %v, want the server's 404", name, id, err)
			}
			want := avxrm.BasePath + strings.Replace(paths[name], "%s", seg, 1)
			if got := rec.take(); len(got) != 1 || got[0] != want {
				t.Errorf("%s(%q) asked %q, want %q", name, id, got, want)
			}
		}
		if err := call(""); err == nil || errors.Is(err, avxrm.ErrNotFound) {
			t.Errorf("%s(\"\"): %v, want it refused", name, err)
		}
		if got := rec.take(); len(got) != 0 {
			t.Errorf("%s(\"\") asked %q", name, got)
		}
	}
}

// A server that answers a cursor it gave before (a bug there, or a proxy
// that drops the query) would repeat its pages for ever: the iteration
// ends with an error instead.
func TestPagesStopAtARepeatedCursor(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.Query().Get("cursor"))
		mu.Unlock()
		next := map[string]string{"": "c1", "c1": "c2", "c2": "c1"}[r.URL.Query().Get("cursor")]
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"items":[{"id":"q-1","name":"a"}],"next_cursor":%q}`, next)
	}))
	defer srv.Close()
	c, _ := avxrm.New(srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for name, seq := range map[string]func(func(any, error) bool){
		"Queues": func(yield func(any, error) bool) {
			for q, err := range c.Queues(ctx) {
				if !yield(q, err) {
					return
				}
			}
		},
		"List": func(yield func(any, error) bool) {
			for q, err := range c.List(ctx, "/queues", nil) {
				if !yield(q, err) {
					return
				}
			}
		},
	} {
		asked = nil
		items, n := 0, 0
		var last error
		for _, err := range seq {
			if n++; n > 10 {
				break
			}
			if err != nil {
				last = err
				continue
			}
			items++
		}
		if items != 3 || last == nil || !strings.Contains(last.Error(), `"c1" again`) {
			t.Errorf("%s: %d items, then %v; want 3 items and an error naming the repeated cursor", name, items, last)
		}
		if fmt.Sprint(asked) != "[ c1 c2]" {
			t.Errorf("%s asked for cursors %q", name, asked)
		}
	}
}

// List takes a path with a query of its own ("/jobs?status=running") and
// adds its paging to that query.
func TestListKeepsThePathsQuery(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.URL.Path+" "+r.URL.Query().Encode())
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("cursor") == "" {
			_, _ = w.Write([]byte(`{"items":[{}],"next_cursor":"c1"}`))
			return
		}
		_, _ = w.Write([]byte(`{"items":[{}]}`))
	}))
	defer srv.Close()
	c, _ := avxrm.New(srv.URL)
	n := 0
	for _, err := range c.List(context.Background(), "/jobs?status=running", url.Values{"label": {"team=adas"}}) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n > 2 {
			break
		}
	}
	want := []string{
		avxrm.BasePath + "/jobs label=team%3Dadas&limit=200&status=running",
		avxrm.BasePath + "/jobs cursor=c1&label=team%3Dadas&limit=200&status=running",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("asked %q, want %q", got, want)
	}
}

// ListPages yields each page as the server sent it, asking for the next
// only once the caller has taken the one before; a page that fails comes
// after the pages before it, as the error alone.
func TestListPagesYieldsPageByPage(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		cursor := r.URL.Query().Get("cursor")
		asked = append(asked, cursor)
		switch cursor {
		case "":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"items":[{"id":"a"},{"id":"b"}],"next_cursor":"b"}`))
		case "b":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"items":[],"next_cursor":"c"}`))
		default:
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"title":"Bad Request","status":400,"detail":"cursor"}`))
		}
	}))
	defer srv.Close()
	c, _ := avxrm.New(srv.URL, avxrm.WithPageSize(2))
	var got []string
	for page, err := range c.ListPages(context.Background(), "/queues", nil) {
		mu.Lock()
		got = append(got, fmt.Sprintf("%d items after %d requests", len(page), len(asked)))
		mu.Unlock()
		if err != nil {
			got = append(got, "error: "+err.Error())
		}
	}
	want := []string{"2 items after 1 requests", "0 items after 2 requests", "0 items after 3 requests", "error: 400 cursor"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("pages %q, want %q", got, want)
	}
}

// The SDK lists a job's scenario exports page by page and deletes one (204),
// as the CLI's 'exports ls' and 'exports rm' do; it had neither, so a program
// listed and deleted them through Do with paths of its own.
func TestExportsListAndDelete(t *testing.T) {
	var deleted []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == avxrm.BasePath+"/jobs/job-1/scenario-exports":
			w.Header().Set("Content-Type", "application/json")
			if r.URL.Query().Get("cursor") == "" {
				_, _ = w.Write([]byte(`{"items":[{"id":"exp-1","status":"ready"}],"next_cursor":"c1"}`))
				return
			}
			_, _ = w.Write([]byte(`{"items":[{"id":"exp-2","status":"pending"}]}`))
		case r.Method == http.MethodDelete && r.URL.Path == avxrm.BasePath+"/scenario-exports/exp-1":
			deleted = append(deleted, "exp-1")
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"title":"Not Found","status":404,"detail":"not found"}`))
		}
	}))
	defer srv.Close()
	c, err := avxrm.New(srv.URL, avxrm.WithRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var got []string
	for x, err := range c.Exports(ctx, "job-1") {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, *x.Id+" "+string(*x.Status))
	}
	if want := []string{"exp-1 ready", "exp-2 pending"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Exports = %q, want %q", got, want)
	}
	if err := c.DeleteExport(ctx, "exp-1"); err != nil || len(deleted) != 1 {
		t.Errorf("DeleteExport = %v (deleted %v)", err, deleted)
	}
	if err := c.DeleteExport(ctx, "exp-9"); !errors.Is(err, avxrm.ErrNotFound) {
		t.Errorf("DeleteExport of an unknown export = %v, want ErrNotFound", err)
	}
}
