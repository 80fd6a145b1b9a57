package problem

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"go.mongodb.org/mongo-driver/v2/mongo"
)

// A store the API cannot reach is a 503, however the driver says so; a
// store that answered too slowly, or any other failure, is not.
func TestFromStoreErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want int
	}{
		{"connection closed mid-request", fmt.Errorf("claim idempotency key: %w", mongo.CommandError{
			Message: "connection(mongo:27017[-10]) incomplete read of message header: EOF", Labels: []string{"NetworkError"}}), http.StatusServiceUnavailable},
		{"timed out", fmt.Errorf("insert job: %w", mongo.CommandError{
			Message: "timed out", Labels: []string{"NetworkError"}, Wrapped: context.DeadlineExceeded}), http.StatusInternalServerError},
		{"command failed", mongo.CommandError{Code: 2, Message: "bad value"}, http.StatusInternalServerError},
		{"anything else", errors.New("boom"), http.StatusInternalServerError},
	} {
		p := From(c.err)
		if p.Status != c.want {
			t.Errorf("%s: status %d, want %d", c.name, p.Status, c.want)
		}
		if c.want == http.StatusServiceUnavailable && p.Detail != StoreUnavailable {
			t.Errorf("%s: detail %q", c.name, p.Detail)
		}
		if c.want == http.StatusInternalServerError && p.Detail != "internal error" {
			t.Errorf("%s: detail %q shows the error", c.name, p.Detail)
		}
	}
}
