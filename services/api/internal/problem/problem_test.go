package problem

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
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

// A 422's detail spells out its first field errors and counts the rest;
// errors lists them all.
func TestInvalidDetailIsBounded(t *testing.T) {
	var fields []*FieldError
	for i := range 10000 {
		fields = append(fields, Field(fmt.Sprintf("samples[%d]", i), "no sample %q in this job", fmt.Sprintf("s-%05d", i)))
	}
	p := Invalid(fields...)
	if len(p.Errors) != 10000 || len(p.Detail) > 1000 || !strings.HasSuffix(p.Detail, "; and 9990 more (errors lists them all)") ||
		!strings.Contains(p.Detail, "samples[9]") || strings.Contains(p.Detail, "samples[10]") {
		t.Fatalf("detail of %d bytes: %.300s…; %d errors", len(p.Detail), p.Detail, len(p.Errors))
	}
	if one := Invalid(fields[0]); one.Detail != "validation failed: "+fields[0].Error() {
		t.Fatalf("one field: %q", one.Detail)
	}
}
