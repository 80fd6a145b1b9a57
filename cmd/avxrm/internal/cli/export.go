package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
	"github.com/oapi-codegen/nullable"
	"github.com/spf13/cobra"
)

func exportCommand(g *globals) *cobra.Command {
	var samples, include, declarations []string
	var out string
	cmd := &cobra.Command{
		Use:   "export <job> [--samples s-001,s-007] [--include scenario,asset] [--declaration road-network] [-O file|dir|-]",
		Short: "Export a job's scenario files as a zip: wait for it, download it (resuming), verify its manifest",
		Long: "Ask for a scenario export, wait until it is ready, and download it into the file named by -O\n" +
			"(default: <export id>.zip, here; a directory: under that name there; '-' writes it to stdout)\n" +
			"through <file>.part: a lost connection is resumed where it broke off. The zip's size and sha256\n" +
			"and every file are checked against manifest.json before it is moved into place. Each run is a\n" +
			"new export, so a .part an earlier run left is replaced; 'avxrm exports download <export>'\n" +
			"downloads an export that exists again, resuming its .part. -o json|yaml prints the export.",
		Example: "  avxrm export job-01J… --samples s-001,s-007 -O sweep.zip\n" +
			"  avxrm export job-01J… --include asset --declaration road-network -O exports/\n" +
			"  avxrm export job-01J… -O sweep.zip -o json",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkStdout(out); err != nil {
				return err
			}
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			req := api.ExportRequest{}
			if len(samples) > 0 {
				req.Samples = nullable.NewNullableWithValue(samples)
			}
			if len(include) > 0 {
				inc := make([]api.ExportRequestInclude, len(include))
				for i, s := range include {
					inc[i] = api.ExportRequestInclude(s)
				}
				req.Include = nullable.NewNullableWithValue(inc)
			}
			if len(declarations) > 0 {
				req.FilterByAssetDeclaration = nullable.NewNullableWithValue(declarations)
			}
			if out != "-" { // before the export is asked for
				if err := checkWritable(zipPath(out, "<export id>")); err != nil {
					return err
				}
			}
			ctx := cmd.Context()
			x, err := c.CreateExport(ctx, args[0], req)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "export %s: waiting\n", *x.Id)
			if x, err = c.WaitExport(ctx, *x.Id); err != nil {
				return err
			}
			if *x.Status != "ready" {
				return fmt.Errorf("export %s failed: %s", *x.Id, deref(x.Reason))
			}
			file := zipPath(out, *x.Id)
			if out == "-" {
				file = "stdout"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "export %s: ready, %s, %d bytes; downloading to %s\n", *x.Id, files(deref64(x.FileCount)), deref64(x.Size), file)
			if ws, err := x.Warnings.Get(); err == nil {
				for _, w := range ws {
					fmt.Fprintf(cmd.ErrOrStderr(), "export %s: warning: %s\n", *x.Id, w)
				}
			}
			if out == "-" {
				_, err := c.DownloadExport(ctx, *x.Id, cmd.OutOrStdout(), avxrm.DownloadOptions{})
				return err
			}
			d, err := c.DownloadExportFile(ctx, *x.Id, file, avxrm.DownloadOptions{})
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("%w; 'avxrm exports download %s -O %s' tries again (resuming what is in %s.part)", err, *x.Id, file, file)
			}
			if err != nil {
				return err
			}
			if g.structured() {
				return printItem(cmd.OutOrStdout(), g.output, x)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s verified against manifest.json, %d bytes, sha256 %s\n", file, files(int64(d.Files)), d.Size, d.SHA256)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&samples, "samples", nil, "the samples whose scenario files to include (comma-separated)")
	f.StringSliceVar(&include, "include", nil, "the kinds of document: scenario, asset (default both)")
	f.StringSliceVar(&declarations, "declaration", nil, "only the assets of these declarations")
	outputFileFlag(cmd, &out, "zip", "<export id>.zip")
	return cmd
}

// zipPath is where -O out puts the zip of export id: out itself; <id>.zip
// in out when it is a directory, or ends in a separator as one not there
// yet does (an error then names it); <id>.zip here when out is empty.
func zipPath(out, id string) string {
	name := filepath.Base(id) + ".zip"
	if out == "" {
		return name
	}
	if st, err := os.Stat(out); (err == nil && st.IsDir()) || strings.HasSuffix(out, string(filepath.Separator)) {
		return filepath.Join(out, name)
	}
	return out
}

// files says "1 file", "n files".
func files(n int64) string {
	if n == 1 {
		return "1 file"
	}
	return fmt.Sprintf("%d files", n)
}

// checkWritable refuses an output file that could not be written (its
// directory missing or read-only, or it is a directory), before anything is
// asked of the server.
func checkWritable(out string) error {
	if st, err := os.Stat(out); err == nil && st.IsDir() {
		return fmt.Errorf("%s is a directory: -O names the file to write", out)
	}
	f, err := os.CreateTemp(filepath.Dir(out), ".avxrm-check-*")
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", out, err)
	}
	f.Close()
	return os.Remove(f.Name())
}
