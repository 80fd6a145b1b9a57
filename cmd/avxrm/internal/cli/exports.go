package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/spf13/cobra"
)

// exportColumns are what 'avxrm exports ls' shows of each export.
var exportColumns = []column{{"ID", field("id")}, {"STATUS", field("status")}, {"FILES", field("file_count")},
	{"SIZE", field("size")}, {"AGE", age("created_at")}, {"EXPIRES", timeAt("expires_at", "", func(t time.Time) string { return inDuration(time.Until(t)) })},
	{"REASON", field("reason")}}

// exportsCommand is the group of commands on the scenario exports that
// exist; 'avxrm export' makes a new one.
func exportsCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "exports", Short: "A job's scenario exports: list, show, wait for, download, delete",
		Long: "The scenario exports that exist, whoever made them ('avxrm export', the API, the SDKs):\n" +
			"list a job's, show one, wait until it is ready, download its zip again (resuming a .part\n" +
			"an earlier download left), delete them. 'avxrm export' makes a new one.",
		Example: "  avxrm exports ls job-01J…\n  avxrm exports download exp-01J… -O sweep.zip\n  avxrm exports rm exp-01J…"}
	ls := listOf(g, &cobra.Command{
		Use: "ls <job>", Aliases: []string{"list"}, Short: "List a job's scenario exports, oldest first",
		Example: "  avxrm exports ls job-01J…\n  avxrm exports ls job-01J… -o json",
	}, "/jobs/%s/scenario-exports", exportColumns)
	get := &cobra.Command{
		Use: "get <export>", Short: "Show a scenario export", Args: cobra.ExactArgs(1),
		Example: "  avxrm exports get exp-01J…\n  avxrm exports get exp-01J… -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			var v json.RawMessage
			if _, err := c.Do(cmd.Context(), http.MethodGet, "/scenario-exports/"+avxrm.PathSegment(args[0]), nil, &v); err != nil {
				return err
			}
			return g.printOne(cmd, v, exportColumns)
		},
	}
	var timeout time.Duration
	wait := &cobra.Command{
		Use: "wait <export>", Short: "Wait until a scenario export is ready or failed, and show it", Args: cobra.ExactArgs(1),
		Long: "Wait until the export is ready (exit 0) or failed (exit 1, with its reason), then show it.\n" +
			"--timeout gives up after that long (exit 1; the export goes on being built); Ctrl-C stops\n" +
			"waiting with exit 130.",
		Example: "  avxrm exports wait exp-01J…\n  avxrm exports wait exp-01J… --timeout 10m -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel, err := withTimeout(cmd, timeout)
			if err != nil {
				return err
			}
			defer cancel()
			c, err := g.client(ctx)
			if err != nil {
				return err
			}
			x, err := c.WaitExport(ctx, args[0])
			if err != nil {
				return timedOut(ctx, cmd, "export "+args[0], "it is not ready yet", err)
			}
			if err := printItem(cmd.OutOrStdout(), g.output, x); err != nil {
				return err
			}
			if *x.Status != "ready" {
				return fmt.Errorf("export %s failed: %s", args[0], deref(x.Reason))
			}
			return nil
		},
	}
	timeoutFlag(wait, &timeout)
	var out string
	download := &cobra.Command{
		Use:   "download <export> [-O file|dir|-]",
		Short: "Download a ready scenario export's zip, resuming a .part, and verify its manifest",
		Long: "Download the zip of a ready export into the file named by -O (default: <export id>.zip,\n" +
			"here; a directory: under that name there; '-' writes it to stdout) through <file>.part: a lost\n" +
			"connection is resumed where it broke off, and so is a .part an earlier download of the same\n" +
			"export left. The zip is moved into place only once its size and sha256 match the export's and\n" +
			"every file matches manifest.json. An export that is not ready is an error that says its status\n" +
			"('avxrm exports wait' waits for it).",
		Example: "  avxrm exports download exp-01J…\n  avxrm exports download exp-01J… -O sweep.zip\n  avxrm exports download exp-01J… -O exports/\n" +
			"  avxrm exports download exp-01J… -O - | bsdtar -tf -",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			if err := g.checkStdout(out); err != nil {
				return err
			}
			if out == "-" {
				_, err := c.DownloadExport(cmd.Context(), args[0], cmd.OutOrStdout(), avxrm.DownloadOptions{})
				return err
			}
			if err := makeOutDir(out); err != nil {
				return err
			}
			file := zipPath(out, args[0])
			if err := checkWritable(file); err != nil { // before asking the server anything
				return err
			}
			d, err := c.DownloadExportFile(cmd.Context(), args[0], file, avxrm.DownloadOptions{})
			// The SDK's hint names its WaitExport; a user of the CLI has a command for it.
			if nr := (*avxrm.ExportNotReadyError)(nil); errors.As(err, &nr) && nr.Reason == "" {
				return fmt.Errorf("download scenario export %s: it is %s, %w; 'avxrm exports wait %s' waits for it",
					nr.ID, nr.State(), avxrm.ErrExportNotReady, args[0])
			}
			if err != nil {
				return err
			}
			if g.structured() {
				return printItem(cmd.OutOrStdout(), g.output, map[string]any{"file": file, "size": d.Size, "sha256": d.SHA256, "files": d.Files})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s verified against manifest.json, %d bytes, sha256 %s\n", file, files(int64(d.Files)), d.Size, d.SHA256)
			return nil
		},
	}
	outputFileFlag(download, &out, "zip", "<export id>.zip")
	rm := &cobra.Command{
		Use: "rm <export>…", Aliases: []string{"delete"}, Short: "Delete scenario exports and their zips, at any status",
		Long: "Delete each export named and its zip, whatever its status (a build under way is dropped).\n" +
			"Each export's request is made (8 at a time) and a line printed for it; the command fails,\n" +
			"after trying every export, if any request did.",
		Example: "  avxrm exports rm exp-01J…\n  avxrm exports rm exp-01J… exp-01K…",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			var ids []string
			for _, id := range args {
				if !slices.Contains(ids, id) {
					ids = append(ids, id)
				}
			}
			b := bulk{use: "rm", noun: "exports", run: func(ctx context.Context, c *avxrm.Client, id string) (result, error) {
				_, err := c.Do(ctx, http.MethodDelete, "/scenario-exports/"+avxrm.PathSegment(id), nil, nil)
				return result{Result: "deleted"}, err
			}}
			return b.each(cmd, g, c, ids)
		},
	}
	cmd.AddCommand(ls, get, wait, download, rm)
	return cmd
}
