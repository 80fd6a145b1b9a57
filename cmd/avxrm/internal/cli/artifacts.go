package cli

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
	"github.com/spf13/cobra"
)

// artifactColumns name each artifact as get and put take it.
var artifactColumns = []column{{"ARTIFACT", artifactName}, {"DECLARATION", field("declaration")},
	{"SIZE", field("size")}, {"SHA256", field("sha256")}}

// artifactName is how the API's URLs name an artifact: scenarios/<sample>/<path> or assets/<path>.
func artifactName(m map[string]any) string {
	if text(m["kind"]) == "scenario" {
		return "scenarios/" + text(m["sample_id"]) + "/" + text(m["path"])
	}
	return "assets/" + text(m["path"])
}

// artifactOf is the artifact called name (scenarios/<sample>/<path> or
// assets/<path>), of the asset declaration if one is given.
func artifactOf(name, declaration string) (api.Artifact, error) {
	segs := strings.Split(name, "/")
	switch {
	case len(segs) >= 3 && segs[0] == "scenarios":
		if declaration != "" {
			return api.Artifact{}, fmt.Errorf("--declaration is for assets; %s is a scenario file of sample %s", name, segs[1])
		}
		return api.Artifact{Kind: "scenario", SampleId: &segs[1], Path: strings.Join(segs[2:], "/")}, nil
	case len(segs) >= 2 && segs[0] == "assets":
		a := api.Artifact{Kind: "asset", Path: strings.Join(segs[1:], "/")}
		if declaration != "" {
			a.Declaration = &declaration
		}
		return a, nil
	}
	return api.Artifact{}, fmt.Errorf("artifact %q: want scenarios/<sample>/<path> or assets/<path>, as 'avxrm artifacts ls' names them", name)
}

// artifactPath is the API path of the job's artifact called name, as
// artifactOf takes it.
func artifactPath(job, name, declaration string) (string, error) {
	if _, err := artifactOf(name, declaration); err != nil {
		return "", err
	}
	segs := strings.Split(name, "/")
	for i, s := range segs {
		segs[i] = avxrm.PathSegment(s)
	}
	p := "/jobs/" + avxrm.PathSegment(job) + "/artifacts/" + strings.Join(segs, "/")
	if declaration != "" {
		p += "?declaration=" + url.QueryEscape(declaration)
	}
	return p, nil
}

func artifactsCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "artifacts", Short: "The files a job's workers uploaded: list, download, upload",
		Long: "A job's artifacts are the concrete scenario files of its samples (scenarios/<sample>/<path>)\n" +
			"and its asset files (assets/<path>, of an asset declaration with --declaration).\n" +
			"Inside a job's instance the commands need no settings: the server is $RM_API_URL and\n" +
			"the token $RM_JOB_TOKEN, which the instance is given."}
	ls := &cobra.Command{
		Use: "ls <job>", Aliases: []string{"list"}, Short: "List a job's artifacts", Args: cobra.ExactArgs(1),
		Example: "  avxrm artifacts ls job-01J…\n  avxrm artifacts ls job-01J… -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			return printPages(cmd.OutOrStdout(), g.output, artifactColumns, c.ListPages(cmd.Context(), "/jobs/"+avxrm.PathSegment(args[0])+"/artifacts", nil), nil)
		},
	}
	var getDecl, out string
	get := &cobra.Command{
		Use:   "get <job> <artifact> [-O file|-] [--declaration name]",
		Short: "Download one artifact and check its size and sha256",
		Long: "Download an artifact into the file named by -O (default: the artifact's file name, here;\n" +
			"a directory: under that name there; '-' writes it to stdout). A lost connection is resumed where\n" +
			"it broke off, and so is a partial download left in <file>.part; the file is moved into place only\n" +
			"once its size and sha256 match the server's.",
		Example: "  avxrm artifacts get job-01J… scenarios/s-001/scenario.xosc\n" +
			"  avxrm artifacts get job-01J… assets/roads/a.xodr --declaration road-network -O a.xodr\n" +
			"  avxrm artifacts get job-01J… scenarios/s-001/scenario.xosc -O - | head",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := artifactOf(args[1], getDecl)
			if err != nil {
				return err
			}
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			if err := g.checkStdout(out); err != nil {
				return err
			}
			if out == "-" {
				_, err := c.DownloadArtifact(cmd.Context(), args[0], a, cmd.OutOrStdout(), avxrm.DownloadOptions{})
				return err
			}
			if err := makeOutDir(out); err != nil {
				return err
			}
			if out == "" {
				out = path.Base(args[1])
			} else if st, err := os.Stat(out); err == nil && st.IsDir() {
				out = filepath.Join(out, path.Base(args[1]))
			}
			d, err := c.DownloadArtifactFile(cmd.Context(), args[0], a, out, avxrm.DownloadOptions{})
			if err != nil {
				return err
			}
			if g.structured() {
				return printItem(cmd.OutOrStdout(), g.output, map[string]any{"file": out, "size": d.Size, "sha256": d.SHA256})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d bytes, sha256 %s\n", out, d.Size, d.SHA256)
			return nil
		},
	}
	get.Flags().StringVar(&getDecl, "declaration", "", "the asset declaration of an assets/… artifact")
	outputFileFlag(get, &out, "file", "the artifact's file name")
	var putDecl string
	put := &cobra.Command{
		Use:   "put <job> <artifact> <file|->",
		Short: "Upload a file as one of a job's artifacts (a worker's scenario file, an asset)",
		Long: "Upload a file ('-': stdin) as the job's artifact: scenarios/<sample>/<path> is a concrete\n" +
			"scenario file of that sample, assets/<path> an asset (of --declaration, else common\n" +
			"asset data). An upload of the same name replaces the file. Prints what was stored.",
		Example: "  avxrm artifacts put \"$RM_JOB_ID\" scenarios/s-$RM_INSTANCE_INDEX/scenario.xosc out.xosc\n" +
			"  avxrm artifacts put job-01J… assets/roads/a.xodr a.xodr --declaration road-network",
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := artifactPath(args[0], args[1], putDecl)
			if err != nil {
				return err
			}
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			raw, err := upload(cmd, c, p, args[2])
			if err != nil {
				return err
			}
			if g.output == "table" {
				return printItems(cmd.OutOrStdout(), g.output, []json.RawMessage{raw}, artifactColumns)
			}
			return printItem(cmd.OutOrStdout(), g.output, json.RawMessage(raw))
		},
	}
	put.Flags().StringVar(&putDecl, "declaration", "", "the asset declaration of an assets/… artifact (else common asset data)")
	cmd.AddCommand(ls, get, put)
	return cmd
}

// upload PUTs the file (or stdin) to p and returns the stored artifact.
func upload(cmd *cobra.Command, c *avxrm.Client, p, file string) ([]byte, error) {
	var body io.Reader = cmd.InOrStdin()
	var getBody func() (io.ReadCloser, error) // a file can be sent again after a lost connection
	var size int64 = -1
	var digest string
	if file != "-" {
		open := func() (io.ReadCloser, error) { return os.Open(file) }
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return nil, err
		}
		if st.IsDir() {
			return nil, fmt.Errorf("%s is a directory; upload its files one by one", file)
		}
		// Its digest goes with it (Content-Digest), so that the server keeps
		// it only as it was read here: not cut short, nor changed meanwhile.
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return nil, err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		digest = "sha-256=:" + base64.StdEncoding.EncodeToString(h.Sum(nil)) + ":"
		body, getBody, size = f, open, st.Size()
	}
	req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPut, c.URL(p), body)
	if err != nil {
		return nil, err
	}
	req.GetBody, req.ContentLength = getBody, size
	req.Header.Set("Content-Type", "application/octet-stream")
	if digest != "" {
		req.Header.Set("Content-Digest", digest)
	}
	resp, err := c.Send(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return nil, avxrm.ResponseError(resp)
	}
	return io.ReadAll(resp.Body)
}
