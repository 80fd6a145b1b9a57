package cli

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
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
			n, err := downloadExport(ctx, c, *x.Id, deref(x.Sha256), out)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s verified against manifest.json, sha256 %s\n", out, files(int64(n)), deref(x.Sha256))
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

// downloadExport fetches the export's zip into out, resuming out.part, and
// checks its sha256 and every file against its manifest; it returns the
// number of files the manifest lists.
func downloadExport(ctx context.Context, c *avxrm.Client, id, sum, out string) (int, error) {
	var n int
	_, _, err := fetchFile(ctx, c, "/scenario-exports/"+avxrm.PathSegment(id)+"/download", sum, out,
		func(part string) (err error) { n, err = verifyZip(part); return err })
	return n, err
}

// fetchFile downloads the file at an API path (an export's zip, an
// artifact) into out: into out.part first, resuming what an earlier attempt
// left there (Range, with If-Range on its sha256) and retrying a lost
// connection; then it checks the whole file's sha256 against sum (the
// server's ETag when sum is empty) and check, if given, and moves it to out.
// The .part is made only once the server has answered with the file: a
// download refused or never answered leaves nothing behind. It returns the
// sha256 and the size.
func fetchFile(ctx context.Context, c *avxrm.Client, path, sum, out string, check func(part string) error) (string, int64, error) {
	d := &download{part: out + ".part"}
	defer d.close()
	part := d.part
	if st, err := os.Stat(part); err == nil {
		d.have = st.Size()
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", 0, err
	}
	// Without a sha256 to send with the Range, the .part may be of an
	// earlier upload of the file: if the whole does not match, fetch it anew.
	blindResume := d.have > 0 && sum == ""
	for attempt := 0; ; attempt++ {
		err := d.fetchFrom(ctx, c, path, &sum)
		if err == nil {
			break
		}
		if _, ok := err.(*avxrm.Error); ok || attempt >= 5 || ctx.Err() != nil {
			return "", 0, err
		}
		if err := avxrm.Sleep(ctx, avxrm.DefaultBackoff.Wait(attempt)); err != nil {
			return "", 0, err
		}
	}
	if err := d.close(); err != nil {
		return "", 0, err
	}
	err := checkSum(part, sum)
	if err == nil && check != nil {
		err = check(part)
	}
	if err != nil {
		os.Remove(part) // resuming it would only append to what is wrong
		if blindResume && errors.Is(err, errSumMismatch) {
			return fetchFile(ctx, c, path, "", out, check)
		}
		return "", 0, err
	}
	return sum, d.have, os.Rename(part, out)
}

// download is a file being fetched into part, of which have bytes are there.
type download struct {
	part string
	f    *os.File // nil until the server has answered with the file
	have int64
}

// file opens the .part (making it), positioned at its end.
func (d *download) file() (*os.File, error) {
	if d.f == nil {
		f, err := os.OpenFile(d.part, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, err
		}
		if _, err := f.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			return nil, err
		}
		d.f = f
	}
	return d.f, nil
}

// restart empties the .part, for the file fetched whole.
func (d *download) restart() error {
	f, err := d.file()
	if err != nil {
		return err
	}
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err = f.Seek(0, io.SeekStart)
	d.have = 0
	return err
}

func (d *download) close() error {
	if d.f == nil {
		return nil
	}
	err := d.f.Close()
	d.f = nil
	return err
}

// fetchFrom appends the file at path from d.have on to the .part; it takes
// *sum from the answer's ETag when it is empty.
func (d *download) fetchFrom(ctx context.Context, c *avxrm.Client, path string, sum *string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL(path), nil)
	if err != nil {
		return err
	}
	if d.have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", d.have))
		if *sum != "" {
			req.Header.Set("If-Range", `"`+*sum+`"`)
		}
	}
	resp, err := c.Send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK: // whole file: start again
		if err := d.restart(); err != nil {
			return err
		}
	case http.StatusPartialContent:
	case http.StatusRequestedRangeNotSatisfiable:
		if *sum != "" {
			return nil // already whole, which the sha256 will show
		}
		// A .part at least as long as the file, of an upload not known to be
		// this one: fetch the file whole.
		if err := d.restart(); err != nil {
			return err
		}
		return d.fetchFrom(ctx, c, path, sum)
	default:
		return avxrm.ResponseError(resp)
	}
	if *sum == "" {
		*sum = strings.Trim(resp.Header.Get("ETag"), `"`)
	}
	f, err := d.file()
	if err != nil {
		return err
	}
	n, err := io.Copy(f, resp.Body)
	d.have += n
	return err
}

// checkSum checks the file's sha256 against sum, if the server gave one.
func checkSum(path, sum string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); sum != "" && got != sum {
		return fmt.Errorf("%s: sha256 %s, the server says %s: %w", path, got, sum, errSumMismatch)
	}
	return nil
}

var errSumMismatch = errors.New("the file is not the one the server has")

// verifyZip checks each file of the zip against its manifest.json and
// returns how many the manifest lists.
func verifyZip(path string) (int, error) {
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
