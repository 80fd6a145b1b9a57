package up_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/up"
	"github.com/avxrm/rm/pkg/events/eventstest"
)

// TestStopSaysLocalJobsGoOn: stopped cleanly (Ctrl-C, SIGTERM), avxrm up
// says that the jobs' processes on the local driver go on and that the next
// start on the data dir takes them up. Before, it stopped without a word,
// and a user found the processes of the jobs still running after Ctrl-C.
func TestStopSaysLocalJobsGoOn(t *testing.T) {
	addr := eventstest.FreeAddr(t)
	cfg, err := up.Load([]string{"--data-dir", t.TempDir(), "--http-addr", addr, "--nats-addr", "127.0.0.1:0",
		"--mongo-addr", "127.0.0.1:0"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	var logs eventstest.SyncBuffer
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	ran := make(chan error, 1)
	go func() { ran <- up.Run(ctx, cfg, slog.New(slog.NewTextHandler(&logs, nil))) }()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready; logs:\n%s", logs.String())
		}
	}
	if strings.Contains(logs.String(), up.StoppedMessage) {
		t.Fatal("said it stopped before it was stopped")
	}
	stop()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run() after a stop = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run() did not return within 30s of the stop")
	}
	if !strings.Contains(logs.String(), up.StoppedMessage) {
		t.Errorf("logs after a clean stop do not say the local jobs go on; logs:\n%s", logs.String())
	}
}
