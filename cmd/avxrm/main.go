// Command avxrm is the Resource Manager's user binary: `avxrm up` runs the
// whole system locally on embedded NATS and FerretDB, and the other commands
// (queues, submit, jobs, logs, watch, export, …) talk to a running one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/avxrm/rm/cmd/avxrm/internal/cli"
	"github.com/avxrm/rm/cmd/avxrm/internal/up"
	"github.com/spf13/cobra"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	var got os.Signal
	go func() {
		if s, ok := <-sig; ok {
			got = s
			cancel()
		}
	}()
	cmd, err := root().ExecuteContextC(ctx)
	signal.Stop(sig)
	interrupted := ctx.Err() != nil
	cancel()
	if interrupted {
		os.Exit(cli.Interrupted(cmd, got, err, os.Stderr))
	}
	os.Exit(cli.ExitCode(err, os.Stderr))
}

// root is the avxrm command with all of its commands.
func root() *cobra.Command {
	root := cli.Root()
	root.AddCommand(upCommand(), configTableCommand(), storeCommand())
	return root
}

// upCommand runs the all-in-one; its flags are up.Load's (the standard
// flag package's, which also reads the RM_* environment).
func upCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "up [flags]",
		Short: "Run the whole system locally (embedded NATS and FerretDB)",
		Long: "Run the API, scheduler, launcher and scenario export in one process, on embedded NATS and FerretDB,\n" +
			"all data under --data-dir. Every flag can be given as its RM_* variable instead;\n" +
			"'avxrm config-table' lists every setting.",
		Example:            "  avxrm up\n  avxrm up --http-addr 127.0.0.1:9090 --data-dir /tmp/rm\n  avxrm up --dev-idp   # with auth on, against a development identity provider",
		Annotations:        map[string]string{cli.EndsOnSignal: "a server stops on SIGINT or SIGTERM"},
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := up.Load(args, os.Getenv)
			if errors.Is(err, flag.ErrHelp) {
				return cmd.Help()
			}
			if err != nil {
				return err
			}
			log := up.NewLogger(cfg.LogFormat, cfg.LogLevel, os.Stderr)
			// Libraries that log to slog's default (the dev IdP's OIDC
			// provider) or to the log package write in the same format.
			slog.SetDefault(log)
			return up.Run(cmd.Context(), cfg, log)
		},
	}
	cmd.SetHelpFunc(ownFlagsHelp(up.PrintFlags))
	return cmd
}

// ownFlagsHelp is the help of a command whose flags are the flag
// package's, not cobra's (up, store): it lists those, listed by
// printFlags, and not the client commands' global flags, which such a
// command does not take.
func ownFlagsHelp(printFlags func(w io.Writer, getenv func(string) string) error) func(*cobra.Command, []string) {
	return func(cmd *cobra.Command, _ []string) {
		w := cmd.OutOrStdout()
		fmt.Fprintf(w, "%s\n\nUsage:\n  avxrm %s\n\nExamples:\n%s\n\nFlags:\n", cmd.Long, cmd.Use, cmd.Example)
		if err := printFlags(w, os.Getenv); err != nil {
			fmt.Fprintln(cmd.ErrOrStderr(), "avxrm:", err)
		}
	}
}

func configTableCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "config-table",
		Short: "Print the configuration settings of 'avxrm up' as a Markdown table",
		Args:  cobra.NoArgs,
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprint(cmd.OutOrStdout(), up.Usage()) },
	}
}
