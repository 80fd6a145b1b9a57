package up_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/up"
)

// Every listen address of the all-in-one has a default, so a second one
// started beside the first (another data directory) finds them taken. Each
// refusal comes at once, not after a wait, and names the address and the
// flag that moves it; the address taken is the only one the first system
// holds, so nothing else stands in the way.
func TestAnAddressInUseNamesItsFlag(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, flag := range []string{"mongo-addr", "nats-addr", "http-addr", "dev-idp-addr"} {
		args := []string{"--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:0",
			"--mongo-addr", "127.0.0.1:0", "--dev-idp-addr", "127.0.0.1:0", "--" + flag, addr}
		if flag == "dev-idp-addr" {
			args = append(args, "--dev-idp")
		}
		cfg, err := up.Load(args, func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		sys, err := up.Start(context.Background(), cfg, quiet)
		if err == nil {
			sys.Stop()
			_ = sys.Wait()
			t.Errorf("--%s %s, which is in use: started", flag, addr)
			continue
		}
		if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "give --"+flag+" another address") ||
			!strings.Contains(err.Error(), "another program has "+addr) {
			t.Errorf("--%s %s, which is in use: %v, want EADDRINUSE naming the address and the flag", flag, addr, err)
		}
		if took := time.Since(began); took > 5*time.Second {
			t.Errorf("--%s in use: refused after %s, not at once", flag, took)
		}
	}
}
