package httpapi

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/avxrm/rm/pkg/events"
)

// A page of another site may not change anything through a browser that
// visits it (CSRF): with auth off, a POST without a body (or a text/plain
// one, which needs no CORS preflight) would cancel a job. Such requests
// are refused with a 403 naming the Origin; clients that are not browsers
// (no Origin), and pages of the API's own origin (the web view, the docs
// page), go through; reads are never refused.
func TestCrossOriginWritesAreRefused(t *testing.T) {
	e := newEnv(t, nil)
	e.json(http.StatusCreated, http.MethodPost, "/queues", map[string]any{"name": "Default"}, nil)
	e.json(http.StatusCreated, http.MethodPost, "/applications", map[string]any{"name": "sim", "version": "1.0", "image": "registry.example/sim:1.0"}, nil)
	body := map[string]any{"queue_id": "Default", "application": map[string]any{"name": "sim", "version": "1.0"}, "worker_instances": 1}
	var j events.Job
	e.json(http.StatusCreated, http.MethodPost, "/jobs", body, &j)
	var arr events.JobArray
	e.json(http.StatusCreated, http.MethodPost, "/job-arrays", map[string]any{"job": body, "count": 2}, &arr)
	u, err := url.Parse(e.base)
	if err != nil {
		t.Fatal(err)
	}
	self := "http://" + u.Host

	for _, path := range []string{"/jobs/" + j.ID + "/cancel", "/jobs/" + j.ID + "/cleanup", "/jobs/" + j.ID + "/post-controller", "/job-arrays/" + arr.ID + "/cancel"} {
		for _, hdr := range [][]string{
			{"Origin", "http://evil.example"},
			{"Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site"},
			{"Sec-Fetch-Site", "cross-site"},
			{"Origin", "http://localhost:3000", "Sec-Fetch-Site", "same-site"}, // another port of the same host
			{"Origin", "null"},
		} {
			a := e.do(http.MethodPost, path, strings.NewReader("x"), append(hdr, "Content-Type", "text/plain")...)
			p := problemOf(t, a)
			origin := "(none)"
			for i := 0; i+1 < len(hdr); i += 2 {
				if hdr[i] == "Origin" {
					origin = hdr[i+1]
				}
			}
			if a.status != http.StatusForbidden || !strings.Contains(p.Detail, "Origin "+origin) || p.Instance != BasePath+path {
				t.Errorf("POST %s with %q = %s, want 403 naming Origin %s", path, hdr, a, origin)
			}
		}
	}
	e.json(http.StatusForbidden, http.MethodDelete, "/jobs/"+j.ID, nil, nil, "Origin", "http://evil.example")
	e.json(http.StatusForbidden, http.MethodPost, "/queues", map[string]any{"name": "q2"}, nil, "Origin", "http://evil.example")
	var got events.Job
	e.json(http.StatusOK, http.MethodGet, "/jobs/"+j.ID, nil, &got, "Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site")
	if got.CancelRequested || got.CleanupRequested || got.PostController != nil {
		t.Fatalf("a refused request changed the job: %+v", got)
	}

	// The web view posts from the API's own origin; curl, the CLI and the
	// SDKs send no Origin.
	e.json(http.StatusAccepted, http.MethodPost, "/jobs/"+j.ID+"/post-controller", nil, nil, "Origin", self, "Sec-Fetch-Site", "same-origin")
	e.json(http.StatusAccepted, http.MethodPost, "/jobs/"+j.ID+"/cancel", nil, nil, "Origin", self)
	e.json(http.StatusAccepted, http.MethodPost, "/job-arrays/"+arr.ID+"/cancel", nil, nil)
	e.json(http.StatusAccepted, http.MethodPost, "/jobs/"+j.ID+"/cleanup", nil, nil, "Sec-Fetch-Site", "none") // typed into the address bar
}
