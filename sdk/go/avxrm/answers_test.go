package avxrm_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
)

// problemServer answers every request 422 with a problem naming a field,
// as the API refuses a plugin of an unknown type.
func problemServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = w.Write([]byte(`{"title":"Unprocessable Entity","status":422,"detail":"validation failed: type: expected value to be one of \"kubernetes, docker, local, simulated\"",` +
			`"errors":[{"field":"type","message":"expected value to be one of \"kubernetes, docker, local, simulated\""}]}`))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// An operation the package does not wrap, sent with the generated client,
// has read its answer's body: ResponseError and CheckResponse still give
// the problem, as the package's own calls (and Do) do.
func TestGeneratedClientsProblem(t *testing.T) {
	srv := problemServer(t)
	c, err := avxrm.New(srv.URL, avxrm.WithRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r, err := c.API.CreatePluginWithResponse(ctx, &api.CreatePluginParams{}, api.PluginBody{Name: "x", Type: "bogus"})
	if err != nil || r.StatusCode() != http.StatusUnprocessableEntity {
		t.Fatalf("CreatePluginWithResponse: %v, %v", r, err)
	}
	_, doErr := c.Do(ctx, http.MethodPost, "/plugins", api.PluginBody{Name: "x", Type: "bogus"}, nil)
	want := doErr.Error()
	if !strings.Contains(want, "type: expected value") {
		t.Fatalf("Do: %v", doErr)
	}
	check := func(what string, err error) {
		t.Helper()
		var e *avxrm.Error
		if !errors.As(err, &e) || !errors.Is(err, avxrm.ErrBadRequest) || err.Error() != want ||
			len(e.FieldErrors()) != 1 || e.FieldErrors()[0].Field != "type" || e.Server != srv.URL {
			t.Errorf("%s: %v, want %q with the field error", what, err, want)
		}
	}
	check("ResponseError", avxrm.ResponseError(r.HTTPResponse))
	check("ResponseError again", avxrm.ResponseError(r.HTTPResponse))
	check("CheckResponse", avxrm.CheckResponse(r.HTTPResponse, r.Body))
	// The client without responses leaves the body to the caller.
	resp, err := c.API.CreatePlugin(ctx, &api.CreatePluginParams{}, api.PluginBody{Name: "x", Type: "bogus"})
	if err != nil {
		t.Fatal(err)
	}
	check("ResponseError of an unread answer", avxrm.ResponseError(resp))
	resp.Body.Close()
}

// CheckResponse is nil for an answer below 400, whatever its body.
func TestCheckResponseOfSuccess(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"items":[],"next_cursor":null}`))
	}))
	defer srv.Close()
	c, _ := avxrm.New(srv.URL)
	r, err := c.API.ListPluginsWithResponse(context.Background(), &api.ListPluginsParams{})
	if err != nil {
		t.Fatal(err)
	}
	if err := avxrm.CheckResponse(r.HTTPResponse, r.Body); err != nil {
		t.Errorf("CheckResponse of a 200: %v", err)
	}
}

// GET /version answered by something that is not the API (not JSON, or
// labelled JSON and not JSON, at any status below 500) is the NotAPI
// *Error that every other call gives, not a plain error or ErrNotFound.
func TestServerVersionOfAnotherServer(t *testing.T) {
	for _, tc := range []struct {
		status   int
		ct, body string
		want     string
	}{
		{http.StatusOK, "application/json", "<html>welcome</html>", "application/json that is not JSON"},
		{http.StatusNotFound, "application/json", "<html>404</html>", "application/json that is not JSON"},
		{http.StatusOK, "", "welcome", "no Content-Type"},
		{http.StatusOK, "text/plain", "welcome", "text/plain"},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tc.ct == "" {
				w.Header()["Content-Type"] = nil // no sniffing either
			} else {
				w.Header().Set("Content-Type", tc.ct)
			}
			w.WriteHeader(tc.status)
			_, _ = w.Write([]byte(tc.body))
		}))
		c, _ := avxrm.New(srv.URL, avxrm.WithRetries(0))
		_, err := c.ServerVersion(context.Background())
		var e *avxrm.Error
		want := fmt.Sprintf("the server at %s answered %d with %s, not the Resource Manager's API", srv.URL, tc.status, tc.want)
		if !errors.As(err, &e) || !e.NotAPI() || errors.Is(err, avxrm.ErrNotFound) || err.Error() != want {
			t.Errorf("%d %q %q: %v, want %q", tc.status, tc.ct, tc.body, err, want)
		}
		srv.Close()
	}
}

// An error's message is one line of bounded length: the detail and at
// most three field errors it does not say, then how many more; every one
// stays in FieldErrors.
func TestErrorMessageStaysShort(t *testing.T) {
	var fields []string
	for i := range 100 {
		fields = append(fields, fmt.Sprintf(`{"field":"depends_on[%d].job_id","message":"no job \"job-%03d\""}`, i, i))
	}
	body := `{"title":"Unprocessable Entity","status":422,"detail":"validation failed","errors":[` + strings.Join(fields, ",") + `]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	c, err := avxrm.New(srv.URL, avxrm.WithRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.GetQueue(context.Background(), "q")
	var e *avxrm.Error
	if !errors.As(err, &e) {
		t.Fatalf("GetQueue: %v, want an *avxrm.Error", err)
	}
	msg := err.Error()
	if len(msg) > 300 || !strings.Contains(msg, "depends_on[2].job_id") || strings.Contains(msg, "depends_on[3].job_id") ||
		!strings.Contains(msg, "and 97 more") || len(e.FieldErrors()) != 100 {
		t.Errorf("message (%d characters) %q with %d field errors; want three of them and \"and 97 more\", all 100 in FieldErrors",
			len(msg), msg, len(e.FieldErrors()))
	}
}
