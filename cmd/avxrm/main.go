// Command avxrm is the Resource Manager's user binary: `avxrm up` runs the
// whole system locally on embedded NATS and FerretDB.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/avxrm/rm/cmd/avxrm/internal/up"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "avxrm:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	cmd := "help"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "up":
		cfg, err := up.Load(args, os.Getenv)
		if err != nil {
			return err
		}
		log := up.NewLogger(cfg.LogFormat, cfg.LogLevel, os.Stderr)
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return up.Run(ctx, cfg, log)
	case "store":
		return storeMain(args)
	case "config-table":
		fmt.Print(up.Usage())
		return nil
	case "help", "-h", "--help":
		fmt.Print(`avxrm: the Resource Manager for simulation jobs

usage:
  avxrm up [flags]      run the whole system locally (embedded NATS and FerretDB); 'avxrm up -h' lists the flags
  avxrm config-table    print the configuration settings as a Markdown table
  avxrm store [probe]   serve the embedded MongoDB-wire store alone (FerretDB); probe pings it; -h lists the flags
`)
		return nil
	}
	return fmt.Errorf("unknown command %q (try 'avxrm help')", cmd)
}
