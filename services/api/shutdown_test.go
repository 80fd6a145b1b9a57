package api_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/api"
	"github.com/avxrm/rm/services/api/internal/apitest"
)

// TestStopEndsOpenStreams: a stop does not wait for the event streams open
// at the time to end by themselves (they end when their client leaves): it
// ends them, and Serve returns well within its drain timeout (before the
// change it took the whole timeout, 10 s by default, with one stream open).
func TestStopEndsOpenStreams(t *testing.T) {
	uri, _ := mongotest.Start(t)
	js := eventstest.Run(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	deps := api.Deps{DB: mongotest.Client(t, uri).Database("rm"), Outbox: outbox.New(events.NewPublisher(js), apitest.Discard()),
		JS: js, Logger: apitest.Discard(), Listener: ln}
	const drain = time.Minute
	svc, err := api.New(ctx, api.Config{ShutdownTimeout: drain}, deps)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- svc.Serve(ctx) }()

	res, err := http.Get("http://" + ln.Addr().String() + "/api/resources/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /events = %s", res.Status)
	}
	ended := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, res.Body); ended <- err }()

	stopped := time.Now()
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(drain / 2):
		t.Fatalf("Serve still draining %v after the stop, with a stream open", drain/2)
	}
	t.Logf("stopped in %v", time.Since(stopped).Round(time.Millisecond))
	select {
	case err := <-ended:
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Logf("the stream ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the event stream is still open after the stop")
	}
}
