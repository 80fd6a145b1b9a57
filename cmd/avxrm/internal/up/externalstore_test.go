package up_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
)

// On an external store (--mongo-uri), a request that cannot reach it
// answers 503 with Retry-After after the API's store wait, before a client
// that waits 30 s for an answer (avxrm, the SDKs) gives up, not after the
// MongoDB client's 30 s; once the store is back the system serves again.
func TestExternalStoreDownAnswers503BeforeClientsGiveUp(t *testing.T) {
	uri, _ := mongotest.Start(t)
	var outage mongotest.Outage
	sys := startSystemWith(t, "--mongo-uri", outage.Forward(t, uri))
	base := "http://" + sys.HTTPAddr + "/api/resources/v1"
	hc := &http.Client{Timeout: 15 * time.Second} // half the clients' 30 s
	resp, err := hc.Post(base+"/queues", "application/json", strings.NewReader(`{"name":"before","maximum_allowed_worker_instances":2}`))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /queues: %v, %v", resp, err)
	}
	resp.Body.Close()
	outage.Check503(t, hc, base+"/queues/before", "store cannot be reached")
}
