package main

import (
	"errors"
	"flag"
	"log/slog"
	"os"

	"github.com/avxrm/rm/cmd/avxrm/internal/store"
	"github.com/spf13/cobra"
)

// storeCommand is `avxrm store`: the embedded MongoDB-wire store (FerretDB
// behind its write-serializing proxy) served alone, for the compose stack.
// Its flags are store.Main's (the standard flag package's, which also reads
// the RM_* environment).
func storeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "store [probe] [flags]",
		Short: "Serve the embedded MongoDB-wire store alone (FerretDB); 'probe' pings a running one",
		Example: "  avxrm store --data-dir /data --mongo-addr 0.0.0.0:27017\n" +
			"  avxrm store probe",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("service", "avxrm-store")
			err := store.Main(cmd.Context(), args, os.Getenv, os.Stderr, log)
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return err
		},
	}
}
