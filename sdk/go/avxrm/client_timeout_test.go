package avxrm

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// A job array's creation may take the API longer than ResponseHeaderTimeout
// (it answers once every job is stored): its request gets a header timeout
// that grows with the count, on the default client only.
func TestClientForLongAnswers(t *testing.T) {
	req := func(ctx context.Context) *http.Request {
		r, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://127.0.0.1:1/job-arrays", nil)
		return r
	}
	long := withHeaderTimeout(context.Background(), 10*time.Minute)
	if c := clientFor(DefaultHTTPClient, req(context.Background())); c != DefaultHTTPClient {
		t.Errorf("a plain request got another client")
	}
	c := clientFor(DefaultHTTPClient, req(long))
	if tr, ok := c.Transport.(*http.Transport); !ok || tr.ResponseHeaderTimeout != 10*time.Minute {
		t.Errorf("a long request's client: %+v", c.Transport)
	}
	if DefaultHTTPClient.Transport.(*http.Transport).ResponseHeaderTimeout != ResponseHeaderTimeout {
		t.Errorf("the default client's timeout changed")
	}
	own := &http.Client{}
	if c := clientFor(own, req(long)); c != own {
		t.Errorf("a caller's own client was replaced")
	}
}
