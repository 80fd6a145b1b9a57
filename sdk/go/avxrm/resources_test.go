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
	}
	paths := map[string]string{
		"GetJob": "/jobs/%s", "CancelJob": "/jobs/%s/cancel", "GetQueue": "/queues/%s",
		"GetJobArray": "/job-arrays/%s", "GetExport": "/scenario-exports/%s",
		"CreateExport": "/jobs/%s/scenario-exports", "Artifacts": "/jobs/%s/artifacts?limit=200",
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
