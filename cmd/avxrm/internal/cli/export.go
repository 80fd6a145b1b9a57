package cli

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
	"github.com/oapi-codegen/nullable"
	"github.com/spf13/cobra"
)

func artifactsCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "artifacts", Short: "The files a job's workers uploaded"}
	ls := &cobra.Command{
		Use: "ls <job>", Aliases: []string{"list"}, Short: "List a job's artifacts", Args: cobra.ExactArgs(1),
		Example: "  avxrm artifacts ls job-01J…\n  avxrm artifacts ls job-01J… -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			items, err := listAll(cmd.Context(), c, "/jobs/"+url.PathEscape(args[0])+"/artifacts")
			if err != nil {
				return err
			}
			return printItems(cmd.OutOrStdout(), g.output, items, []column{{"KIND", field("kind")}, {"SAMPLE", field("sample_id")},
				{"DECLARATION", field("declaration")}, {"PATH", field("path")}, {"SIZE", field("size")}, {"SHA256", field("sha256")}})
		},
	}
	cmd.AddCommand(ls)
	return cmd
}

func exportCommand(g *globals) *cobra.Command {
	var samples, include, declarations []string
	var out string
	cmd := &cobra.Command{
		Use:   "export <job> [--samples s-001,s-007] [--include scenario,asset] [--declaration road-network] [-o out.zip]",
		Short: "Export a job's scenario files as a zip: wait for it, download it (resuming), verify its manifest",
		Long: "Ask for a scenario export, wait until it is ready, download it (a partial download in <out>.part\n" +
			"is resumed), check the zip's sha256 and every file against manifest.json, then move it to <out>.",
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
			n, err := download(ctx, c, *x.Id, deref(x.Sha256), out)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d files verified against manifest.json, sha256 %s\n", out, n, deref(x.Sha256))
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

// download fetches the export's zip into out, resuming out.part, and
// verifies it; it returns the number of files the manifest lists.
func download(ctx context.Context, c *avxrm.Client, id, sum, out string) (int, error) {
	part := out + ".part"
	f, err := os.OpenFile(part, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	for attempt := 0; ; attempt++ {
		err := fetchFrom(ctx, c, id, sum, f, &have)
		if err == nil {
			break
		}
		if _, ok := err.(*avxrm.Error); ok || attempt >= 5 || ctx.Err() != nil {
			return 0, err
		}
		if err := avxrm.Sleep(ctx, avxrm.DefaultBackoff.Wait(attempt)); err != nil {
			return 0, err
		}
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	n, err := verifyZip(part, sum)
	if err != nil {
		os.Remove(part) // resuming it would only append to what is wrong
		return 0, err
	}
	return n, os.Rename(part, out)
}

// fetchFrom appends the zip from *have on to f.
func fetchFrom(ctx context.Context, c *avxrm.Client, id, sum string, f *os.File, have *int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL("/scenario-exports/"+url.PathEscape(id)+"/download"), nil)
	if err != nil {
		return err
	}
	if *have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", *have))
		if sum != "" {
			req.Header.Set("If-Range", `"`+sum+`"`)
		}
	}
	resp, err := c.Send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK: // whole file: start again
		if err := f.Truncate(0); err != nil {
			return err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		*have = 0
	case http.StatusPartialContent:
	case http.StatusRequestedRangeNotSatisfiable:
		return nil // already whole
	default:
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		_, err := c.Do(ctx, http.MethodGet, "/scenario-exports/"+url.PathEscape(id), nil, nil)
		if err == nil {
			err = fmt.Errorf("download export %s: %s %s", id, resp.Status, strings.TrimSpace(string(raw)))
		}
		return err
	}
	n, err := io.Copy(f, resp.Body)
	*have += n
	return err
}

// verifyZip checks the zip's sha256 and each file against manifest.json.
func verifyZip(path, sum string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return 0, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); sum != "" && got != sum {
		return 0, fmt.Errorf("%s: sha256 %s, the server says %s", path, got, sum)
	}
	zr, err := zip.OpenReader(path)
	if err != nil {
		return 0, err
	}
	defer zr.Close()
	var manifest struct {
		Files []struct {
			Path   string `json:"path"`
			Size   int64  `json:"size"`
			SHA256 string `json:"sha256"`
		} `json:"files"`
	}
	files := map[string]*zip.File{}
	for _, zf := range zr.File {
		files[zf.Name] = zf
	}
	mf := files["manifest.json"]
	if mf == nil {
		return 0, fmt.Errorf("%s: no manifest.json", path)
	}
	if err := readJSON(mf, &manifest); err != nil {
		return 0, fmt.Errorf("%s: manifest.json: %w", path, err)
	}
	for _, e := range manifest.Files {
		zf := files[e.Path]
		if zf == nil {
			return 0, fmt.Errorf("%s: %s is in the manifest, not in the zip", path, e.Path)
		}
		rc, err := zf.Open()
		if err != nil {
			return 0, err
		}
		h := sha256.New()
		n, err := io.Copy(h, rc)
		rc.Close()
		if err != nil {
			return 0, fmt.Errorf("%s: %s: %w", path, e.Path, err)
		}
		if n != e.Size || hex.EncodeToString(h.Sum(nil)) != e.SHA256 {
			return 0, fmt.Errorf("%s: %s does not match the manifest", path, e.Path)
		}
	}
	if len(files) != len(manifest.Files)+1 {
		return 0, fmt.Errorf("%s: %d files, the manifest lists %d", path, len(files)-1, len(manifest.Files))
	}
	return len(manifest.Files), nil
}

func readJSON(zf *zip.File, v any) error {
	rc, err := zf.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	return json.NewDecoder(rc).Decode(v)
}
