package contracttest

import (
	"context"
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
	runs := []func(context.Context) error{exp.Run, sched.Run, launch.Run}
	done := make(chan error, len(runs))
	for _, run := range runs {
		go func() { done <- run(runCtx) }()
	}
	t.Cleanup(func() {
		stop()
		for range runs {
			if err := <-done; err != nil && runCtx.Err() == nil {
				t.Errorf("service: %v", err)
			}
		}
	})
	return a.URL
}
