package up_test

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/avxrm/rm/cmd/avxrm/internal/up"
)

// childEnv makes the test binary run the all-in-one instead of the tests, so
// crash tests can SIGKILL a real process and start it again on the same data.
const childEnv = "RM_TEST_RUN_ALL_IN_ONE"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		cfg, err := up.Load(nil, os.Getenv)
		if err != nil {
			slog.Error("config", "err", err)
			os.Exit(2)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		if err := up.Run(ctx, cfg, log); err != nil {
			slog.Error("all-in-one", "err", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
