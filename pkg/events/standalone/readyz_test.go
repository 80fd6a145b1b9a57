package standalone

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events/eventstest"
)

type readyBody struct {
	Ready  bool              `json:"ready"`
	Checks map[string]string `json:"checks"`
}

// /readyz of a service binary goes 503 while the store or NATS is gone,
// naming which, and 200 again once it is back; a service check that hangs
// is cut off in readyTimeout rather than leaving the probe waiting.
func TestReadyzFollowsStoreAndNATS(t *testing.T) {
	mongoURI, _ := mongotest.Start(t)
	var store mongotest.Outage
	ns := eventstest.RunRestartable(t)
	addr := eventstest.FreeAddr(t)
	vars := env(map[string]string{"RM_MONGO_URI": store.Forward(t, mongoURI), "RM_NATS_URL": ns.ClientURL(),
		"RM_MONGO_DB": "readyz_t", "RM_HTTP_ADDR": addr})
	var hang atomic.Bool
	serving := make(chan struct{})
	svc := &Service{Name: "rm-t", HTTPAddr: ":0", Run: func(ctx context.Context, e *Env) error {
		err := e.ServeOps(ctx, e.HTTPAddr, func(ctx context.Context) error {
			if hang.Load() {
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		})
		close(serving)
		if err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan int)
	go func() { exited <- Exec(ctx, svc, nil, vars, io.Discard, io.Discard) }()
	t.Cleanup(func() { cancel(); <-exited })
	select {
	case <-serving:
	case code := <-exited:
		t.Fatalf("exited %d before serving", code)
	}

	readyz := func() (int, readyBody, time.Duration) {
		t.Helper()
		start := time.Now()
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b readyBody
		if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
			t.Fatalf("/readyz body: %v", err)
		}
		return resp.StatusCode, b, time.Since(start)
	}
	until := func(what string, ok func(int, readyBody) bool) readyBody {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, b, took := readyz()
			if took > readyTimeout+time.Second {
				t.Errorf("%s: /readyz took %v, want at most %v", what, took, readyTimeout)
			}
			if ok(code, b) {
				return b
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: /readyz still %d %+v", what, code, b)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	isReady := func(code int, b readyBody) bool { return code == http.StatusOK && b.Ready }
	failing := func(check string) func(int, readyBody) bool {
		return func(code int, b readyBody) bool {
			return code == http.StatusServiceUnavailable && !b.Ready && b.Checks[check] != "ok" && b.Checks[check] != ""
		}
	}

	b := until("at start", isReady)
	for _, c := range []string{"nats", "mongodb", "rm-t"} {
		if b.Checks[c] != "ok" {
			t.Errorf("checks %v, want %s ok", b.Checks, c)
		}
	}

	store.Down()
	b = until("store gone", failing("mongodb"))
	if b.Checks["nats"] != "ok" {
		t.Errorf("store gone: checks %v, want nats ok", b.Checks)
	}
	store.Up()
	until("store back", isReady)

	ns.Stop()
	b = until("NATS gone", failing("nats"))
	if !strings.Contains(b.Checks["nats"], "not connected") {
		t.Errorf("NATS gone: checks %v", b.Checks)
	}
	ns.Start()
	until("NATS back", isReady)

	hang.Store(true)
	b = until("service check hanging", failing("rm-t"))
	if !strings.Contains(b.Checks["rm-t"], "deadline") {
		t.Errorf("hanging check: checks %v", b.Checks)
	}
}
