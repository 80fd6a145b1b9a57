package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
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
		Long: "Ask for a scenario export, wait until it is ready, and download it. It holds the scenario files\n" +
			"of every sample the job has them for (said on stderr), or of --samples alone, and the job's\n" +
			"common asset data, or the assets of --declaration; --include scenario or asset takes one kind\n" +
			"alone. A job with none of what is asked for is an error, one with assets and no scenario file a\n" +
			"warning. The zip goes into the file named by -O\n" +
			"(default: <export id>.zip, here; a directory: under that name there; '-' writes it to stdout)\n" +
			"through <file>.part: a lost connection is resumed where it broke off. The zip's size and sha256\n" +
			"and every file are checked against manifest.json before it is moved into place. Each run is a\n" +
			"new export, so a .part an earlier run left is replaced; 'avxrm exports download <export>'\n" +
			"downloads an export that exists again, resuming its .part. -o json|yaml prints the export.",
		Example: "  avxrm export job-01J… -O sweep.zip   # every sample's scenario files\n" +
			"  avxrm export job-01J… --samples s-001,s-007 -O sweep.zip\n" +
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
				if err := makeOutDir(out); err != nil {
					return err
				}
				if err := checkWritable(zipPath(out, "<export id>")); err != nil {
					return err
				}
			}
			ctx := cmd.Context()
			if !cmd.Flags().Changed("samples") && (len(include) == 0 || slices.Contains(include, "scenario")) {
				// The API exports no scenario file of a request without
				// samples: by default, those of every sample the job has.
				if samples, err = everySample(ctx, c, args[0], include, declarations, cmd.ErrOrStderr()); err != nil {
					return err
				}
			}
			if len(samples) > 0 {
				req.Samples = nullable.NewNullableWithValue(samples)
			}
			x, err := c.CreateExport(ctx, args[0], req)
			if err != nil {
				return flagErrors(err, paramFlags(map[string]string{"samples": "samples", "include": "include", "filter_by_asset_declaration": "declaration"}))
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
	f.StringSliceVar(&samples, "samples", nil, "the samples whose scenario files to include, comma-separated (default: every sample the job has scenario files for)")
	f.StringSliceVar(&include, "include", nil, "the kinds of document: scenario, asset, or both (default both)")
	f.StringSliceVar(&declarations, "declaration", nil, "the assets of these declarations (default: the common asset data, of no declaration)")
	outputFileFlag(cmd, &out, "zip", "<export id>.zip")
	return cmd
}

// everySample is every sample the job has scenario files for, read from
// its artifacts, said on w. When it has none, that is said on w if the
// export still holds some of what include asks for (the assets of
// declarations, or its common asset data), else it is an error: the zip
// would hold nothing that was asked for.
func everySample(ctx context.Context, c *avxrm.Client, job string, include, declarations []string, w io.Writer) ([]string, error) {
	var samples []string
	assets := 0
	for it, err := range c.List(ctx, "/jobs/"+avxrm.PathSegment(job)+"/artifacts", nil) {
		if err != nil {
			return nil, err
		}
		var a api.Artifact
		if err := json.Unmarshal(it, &a); err != nil {
			return nil, err
		}
		switch {
		case a.Kind == "scenario" && a.SampleId != nil && !slices.Contains(samples, *a.SampleId):
			samples = append(samples, *a.SampleId)
		case a.Kind == "asset" && (len(declarations) == 0 && a.Declaration == nil ||
			a.Declaration != nil && slices.Contains(declarations, *a.Declaration)):
			assets++
		}
	}
	slices.Sort(samples)
	if len(samples) > 0 {
		fmt.Fprintf(w, "export: the scenario files of every sample job %s has (%d: %s); --samples picks some\n",
			job, len(samples), joinStrings(samples, 10))
		return samples, nil
	}
	noAssets := "common asset data"
	if len(declarations) > 0 {
		noAssets = "assets of " + strings.Join(declarations, ", ")
	}
	ls := fmt.Sprintf("'avxrm artifacts ls %s' lists what it has", job)
	switch {
	case len(include) > 0 && !slices.Contains(include, "asset"):
		return nil, fmt.Errorf("job %s has no scenario files to export; %s", job, ls)
	case assets == 0:
		return nil, fmt.Errorf("job %s has no scenario files and no %s to export; %s", job, noAssets, ls)
	}
	fmt.Fprintf(w, "export: warning: job %s has no scenario files: the zip holds its %s alone (%s)\n", job, noAssets, ls)
	return nil, nil
}

// joinStrings lists at most limit of xs, comma-separated, then how many
// more there are.
func joinStrings(xs []string, limit int) string {
	if len(xs) <= limit {
		return strings.Join(xs, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(xs[:limit], ", "), len(xs)-limit)
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
// asked of the server. -O given as a directory to be (ending in a
// separator: "-O exports/") is made first (makeOutDir).
func checkWritable(out string) error {
	if st, err := os.Stat(out); err == nil && st.IsDir() {
		return fmt.Errorf("%s is a directory: -O names the file to write", out)
	}
	dir := filepath.Dir(out)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cannot write %s: there is no directory %s (make it, or end -O with %c to have it made)", out, dir, filepath.Separator)
	}
	f, err := os.CreateTemp(dir, ".avxrm-check-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // not the probe's own name
		}
		return fmt.Errorf("cannot write %s: %w", out, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// makeOutDir makes the directory -O names by ending in a separator
// ("-O exports/"), if missing, as a user who wrote it expects.
func makeOutDir(out string) error {
	if !strings.HasSuffix(out, string(filepath.Separator)) {
		return nil
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("-O %s: %w", out, err)
	}
	return nil
}
