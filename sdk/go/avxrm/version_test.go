package avxrm_test

import (
	"context"
	"errors"
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

	old := httptest.NewServer(http.NotFoundHandler())
	defer old.Close()
	c, _ = avxrm.New(old.URL)
	if _, err := c.ServerVersion(context.Background()); !errors.Is(err, avxrm.ErrNotFound) {
		t.Errorf("a server without the route: %v, want ErrNotFound", err)
	}
}
