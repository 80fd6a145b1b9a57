package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/avxrm/rm/pkg/events/standalone"
	"github.com/avxrm/rm/services/api/internal/httpapi"
)

// --help prints every setting and exits 0; the README's table is current.
func TestSettings(t *testing.T) {
	if err := standalone.Verify(service(), "../../../../README.md"); err != nil {
		t.Fatal(err)
	}
}

// While its store cannot be reached, rm-api answers a request 503 with
// Retry-After after its store wait (StoreWait), not after the MongoDB
// client's 30 s: a client that waits at most 30 s for an answer (avxrm,
// the SDKs) sees the 503 and tries again, instead of giving up on a server
// that does not answer. Once the store is back it serves again.
func TestStoreDownAnswers503BeforeClientsGiveUp(t *testing.T) {
	uri, _ := mongotest.Start(t)
	var outage mongotest.Outage
	ns := eventstest.RunServer(t)
	addr := eventstest.FreeAddr(t)
	vars := map[string]string{"RM_MONGO_URI": outage.Forward(t, uri), "RM_NATS_URL": ns.ClientURL(), "RM_HTTP_ADDR": addr}
	var log eventstest.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan int, 1)
	go func() {
		exited <- standalone.Exec(ctx, service(), nil, func(k string) string { return vars[k] }, io.Discard, &log)
	}()
	defer func() {
		cancel()
		if code := <-exited; code != 0 {
			t.Errorf("rm-api exited %d:\n%s", code, log.String())
		}
	}()
	base := "http://" + addr + httpapi.BasePath
	hc := &http.Client{Timeout: 15 * time.Second} // half the clients' 30 s
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		resp, err := hc.Post(base+"/queues", "application/json", strings.NewReader(`{"name":"before","maximum_allowed_worker_instances":2}`))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusCreated {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("rm-api did not create a queue within a minute (%v, %v):\n%s", resp, err, log.String())
		}
	}
	outage.Check503(t, hc, base+"/queues/before", "store cannot be reached")
}

// A bad RM_JOB_RETENTION stops rm-api at start with a message that names
// it, rather than keeping or deleting jobs by a guess.
func TestBadJobRetentionIsRefused(t *testing.T) {
	for _, v := range []string{"-1h", "soon"} {
		var stderr strings.Builder
		code := standalone.Exec(context.Background(), service(), nil, func(k string) string {
			return map[string]string{"RM_JOB_RETENTION": v}[k]
		}, io.Discard, &stderr)
		if want := `RM_JOB_RETENTION="` + v + `"`; code != 2 || !strings.Contains(stderr.String(), want) {
			t.Errorf("RM_JOB_RETENTION=%s: exit %d, %q; want exit 2 naming %s", v, code, stderr.String(), want)
		}
	}
}
