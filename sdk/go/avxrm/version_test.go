package avxrm_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/avxrm/rm/sdk/go/avxrm"
)

// A server's GET /version is read at its root, not under the API's base
// path; one that does not have the route answers ErrNotFound, saying so.
func TestServerVersion(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/version" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"version":"v1.2.0","go_version":"go1.26.8","platform":"linux/amd64","later":"ignored"}`))
	}))
	defer srv.Close()
	c, err := avxrm.New(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.ServerVersion(context.Background())
	if want := (avxrm.Version{Version: "v1.2.0", GoVersion: "go1.26.8", Platform: "linux/amd64"}); err != nil || v != want {
		t.Fatalf("ServerVersion = %+v, %v; want %+v", v, err, want)
	}
	if got, want := v.String(), "v1.2.0 (go1.26.8, linux/amd64)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}

	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json") // as the API answers a route it lacks
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"title":"Not Found","status":404,"detail":"Not Found"}`))
	}))
	defer old.Close()
	c, _ = avxrm.New(old.URL)
	if _, err := c.ServerVersion(context.Background()); !errors.Is(err, avxrm.ErrNotFound) {
		t.Errorf("a server without the route: %v, want ErrNotFound", err)
	}
	// Another web server is not taken for an old API.
	for status, page := range map[int]string{http.StatusNotFound: "<!DOCTYPE HTML><html>404</html>", http.StatusOK: "<html>welcome</html>"} {
		other := htmlServer(t, status, page)
		c, _ = avxrm.New(other.URL)
		_, err := c.ServerVersion(context.Background())
		if errors.Is(err, avxrm.ErrNotFound) || err == nil ||
			err.Error() != fmt.Sprintf("the server at %s answered %d with text/html, not the Resource Manager's API", other.URL, status) {
			t.Errorf("another web server's %d page: %v, want it named not the API", status, err)
		}
	}
}

// Another web server's answers are named as such wherever the API's are
// read: an error, a list, a decoded answer, the event stream.
func TestNotTheAPI(t *testing.T) {
	ctx := context.Background()
	for status, page := range map[int]string{http.StatusNotFound: "<!DOCTYPE HTML><html>404</html>", http.StatusOK: "<html>welcome</html>"} {
		other := htmlServer(t, status, page)
		c, _ := avxrm.New(other.URL+"/", avxrm.WithRetries(0))
		want := fmt.Sprintf("the server at %s answered %d with text/html, not the Resource Manager's API", other.URL, status)
		var out map[string]any
		_, doErr := c.Do(ctx, http.MethodGet, "/queues/Default", nil, &out)
		_, getErr := c.GetJob(ctx, "job-1")
		var watchErr error
		for _, err := range c.Watch(ctx, avxrm.WatchOptions{}) {
			watchErr = err
			break
		}
		for what, err := range map[string]error{"Do": doErr, "GetJob": getErr, "Watch": watchErr} {
			var pe *avxrm.Error
			if !errors.As(err, &pe) || !pe.NotAPI() || errors.Is(err, avxrm.ErrNotFound) || err.Error() != want {
				t.Errorf("%s of a %d page: %v, want %q", what, status, err, want)
			}
		}
	}
	// A proxy's 502 page is the API being unavailable, without the page.
	proxy := htmlServer(t, http.StatusBadGateway, "<html>bad gateway</html>")
	c, _ := avxrm.New(proxy.URL, avxrm.WithRetries(0))
	var pe *avxrm.Error
	if _, err := c.GetJob(ctx, "job-1"); !errors.As(err, &pe) || pe.NotAPI() || err.Error() != "502 Bad Gateway" {
		t.Errorf("a proxy's 502 page: %v", err)
	}
}

// A page labelled application/json that is not JSON (a proxy's or a
// misconfigured server's) is not the API's either: the error names the
// server, where the generated client's bare decoding error named nothing.
func TestNotJSONThoughLabelledJSON(t *testing.T) {
	ctx := context.Background()
	for _, status := range []int{http.StatusOK, http.StatusNotFound} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(status)
			_, _ = w.Write([]byte("<html>welcome</html>"))
		}))
		c, _ := avxrm.New(srv.URL, avxrm.WithRetries(0))
		want := fmt.Sprintf("the server at %s answered %d with application/json that is not JSON, not the Resource Manager's API", srv.URL, status)
		var out map[string]any
		_, doErr := c.Do(ctx, http.MethodGet, "/queues/Default", nil, &out)
		_, getErr := c.GetJob(ctx, "job-1")
		var listErr error
		for _, err := range c.Queues(ctx) {
			listErr = err
		}
		for what, err := range map[string]error{"Do": doErr, "GetJob": getErr, "Queues": listErr} {
			var pe *avxrm.Error
			if !errors.As(err, &pe) || !pe.NotAPI() || errors.Is(err, avxrm.ErrNotFound) || err.Error() != want {
				t.Errorf("%s of a %d page: %v, want %q", what, status, err, want)
			}
		}
		// Send's caller reads the answer itself (a download), as it comes.
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.URL("/jobs/job-1/artifacts/assets/a.json"), nil)
		resp, err := c.Send(req)
		if err != nil || resp.StatusCode != status {
			t.Fatalf("Send: %v, %v", resp, err)
		}
		if raw, err := io.ReadAll(resp.Body); err != nil || string(raw) != "<html>welcome</html>" {
			t.Errorf("Send's answer: %q, %v", raw, err)
		}
		resp.Body.Close()
		srv.Close()
	}
}
