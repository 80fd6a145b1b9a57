package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
	"github.com/oapi-codegen/nullable"
	"github.com/spf13/cobra"
)

func exportCommand(g *globals) *cobra.Command {
	var samples, include, declarations []string
	var out string
	cmd := &cobra.Command{
		Use:   "export <job> [--samples s-001,s-007] [--include scenario,asset] [--declaration road-network] [-o out.zip]",
		Short: "Export a job's scenario files as a zip: wait for it, download it (resuming), verify its manifest",
		Long: "Ask for a scenario export, wait until it is ready, download it into <out>.part (a lost connection\n" +
			"is resumed where it broke off), check the zip's size and sha256 and every file against manifest.json,\n" +
			"then move it to <out>. Each run is a new export, so a <out>.part an earlier run left is replaced;\n" +
			"'avxrm exports download <export>' downloads an export that exists again, resuming its .part.",
		Example: "  avxrm export job-01J… --samples s-001,s-007 -o sweep.zip\n  avxrm export job-01J… --include asset --declaration road-network",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
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
			if out != "" {
				if err := checkWritable(out); err != nil {
					return err
				}
			}
			ctx := cmd.Context()
			x, err := c.CreateExport(ctx, args[0], req)
			if err != nil {
				return err
			}
			if out == "" {
				out = *x.Id + ".zip"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "export %s: waiting\n", *x.Id)
			if x, err = c.WaitExport(ctx, *x.Id); err != nil {
				return err
			}
			if *x.Status != "ready" {
				return fmt.Errorf("export %s failed: %s", *x.Id, deref(x.Reason))
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "export %s: ready, %s, %d bytes; downloading to %s\n", *x.Id, files(deref64(x.FileCount)), deref64(x.Size), out)
			d, err := c.DownloadExportFile(ctx, *x.Id, out, avxrm.DownloadOptions{})
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("%w; 'avxrm exports download %s -O %s' tries again (resuming what is in %s.part)", err, *x.Id, out, out)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s verified against manifest.json, sha256 %s\n", out, files(int64(d.Files)), d.SHA256)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&samples, "samples", nil, "the samples whose scenario files to include (comma-separated)")
	f.StringSliceVar(&include, "include", nil, "the kinds of document: scenario, asset (default both)")
	f.StringSliceVar(&declarations, "declaration", nil, "only the assets of these declarations")
	f.StringVarP(&out, "output", "o", "", "the zip to write (default <export id>.zip)")
	return cmd
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
		return fmt.Errorf("%s is a directory: -o names the zip to write", out)
	}
	f, err := os.CreateTemp(filepath.Dir(out), ".avxrm-check-*")
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", out, err)
	}
	f.Close()
	return os.Remove(f.Name())
}
