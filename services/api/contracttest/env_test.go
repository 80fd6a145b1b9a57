package contracttest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/services/api/internal/apitest"
	"github.com/avxrm/rm/services/launcher"
	export "github.com/avxrm/rm/services/scenario-export"
	"github.com/avxrm/rm/services/scheduler"
)

// startAPI serves the API over in-process FerretDB and NATS on loopback,
// with the scheduler, the launcher (simulated and local drivers) and the
// scenario-export service beside it, so that jobs run, instances have logs
// and exports get ready; it returns the server's root URL (http://127.0.0.1:port).
func startAPI(t *testing.T) string {
	t.Helper()
	url, releaseExports := startAPIHeld(t)
	releaseExports()
	return url
}

// startAPIHeld is startAPI with the scenario-export service started only
// once releaseExports is called: until then every export stays pending, so
// that a request for a download that is not ready gets its 409 however fast
// the machine builds the zip. The service's consumer then receives the
// exports' events from the stream's start.
func startAPIHeld(t *testing.T) (url string, releaseExports func()) {
	t.Helper()
	a := apitest.Start(t, nil)
	db, js, ob, quiet := a.DB, a.JS, a.Outbox, apitest.Discard()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	exp, err := export.New(ctx, export.Config{}, export.Deps{DB: db, JS: js, Outbox: ob, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	sched, err := scheduler.New(ctx, scheduler.Config{}, scheduler.Deps{DB: db, JS: js, Outbox: ob, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	launch, err := launcher.New(launcher.Config{DataDir: t.TempDir(), DefaultDriver: "local", APIURL: a.URL},
		launcher.Deps{DB: db, JS: js, Outbox: ob, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	const services = 3
	done := make(chan error, services)
	for _, run := range []func(context.Context) error{sched.Run, launch.Run} {
		go func() { done <- run(runCtx) }()
	}
	releaseExports = sync.OnceFunc(func() { go func() { done <- exp.Run(runCtx) }() })
	t.Cleanup(func() {
		releaseExports()
		stop()
		for range services {
			if err := <-done; err != nil && runCtx.Err() == nil {
				t.Errorf("service: %v", err)
			}
		}
	})
	return a.URL, releaseExports
}
