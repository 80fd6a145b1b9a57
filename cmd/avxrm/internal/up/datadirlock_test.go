package up_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/avxrm/rm/cmd/avxrm/internal/up"
)

// A second system on a data directory in use is refused, naming the
// holder, before it starts anything; once the first has stopped, the
// directory is free again.
func TestDataDirIsLocked(t *testing.T) {
	dir := t.TempDir()
	first := startSystemIn(t, dir)
	cfg, err := up.Load([]string{"--data-dir", dir, "--http-addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:0",
		"--mongo-addr", "127.0.0.1:0"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, err = up.Start(context.Background(), cfg, quiet)
	want := fmt.Sprintf("data dir: %s is in use by another process (pid %d); stop it, or give this one another directory", dir, os.Getpid())
	if err == nil || err.Error() != want {
		t.Fatalf("a second system on %s: %v, want %q", dir, err, want)
	}
	if _, err := os.Stat(dir + "/nats"); err != nil {
		t.Fatalf("the first system's NATS store: %v", err)
	}

	first.Stop()
	if err := first.Wait(); err != nil {
		t.Fatal(err)
	}
	again, err := up.Start(context.Background(), cfg, quiet)
	if err != nil {
		t.Fatalf("after the first stopped: %v", err)
	}
	again.Stop()
	if err := again.Wait(); err != nil {
		t.Fatal(err)
	}
}
