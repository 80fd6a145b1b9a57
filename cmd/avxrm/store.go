package main

import (
	"errors"
	"flag"
	"log/slog"
	"os"

	"github.com/avxrm/rm/cmd/avxrm/internal/cli"
	"github.com/avxrm/rm/cmd/avxrm/internal/store"
	"github.com/spf13/cobra"
)

// storeCommand is `avxrm store`: the embedded MongoDB-wire store (FerretDB
// behind its write-serializing proxy) served alone, for the compose stack.
// Its flags are store.Main's (the standard flag package's, which also reads
// the RM_* environment).
func storeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store [probe] [flags]",
		Short: "Serve the embedded MongoDB-wire store alone (FerretDB); 'probe' pings a running one",
		Long: "Serve the embedded MongoDB-wire store (FerretDB on SQLite, behind the proxy that serializes writes) alone,\n" +
			"as the compose stack's store container does. 'avxrm store probe' pings a running one at --addr\n" +
			"(exit 0 when it answers). Every flag can be given as its RM_* variable instead.",
		Example: "  avxrm store --data-dir /data --addr 0.0.0.0:27017\n" +
			"  avxrm store probe --addr 127.0.0.1:27017",
		Annotations:        map[string]string{cli.EndsOnSignal: "a server stops on SIGINT or SIGTERM"},
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("service", "avxrm-store")
			err := store.Main(cmd.Context(), args, os.Getenv, log)
			if errors.Is(err, flag.ErrHelp) {
				return cmd.Help()
			}
			return err
		},
	}
	cmd.SetHelpFunc(ownFlagsHelp(store.PrintFlags))
	return cmd
}
