package cli

import (
	"fmt"

	"github.com/avxrm/rm/pkg/events/buildinfo"
	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/spf13/cobra"
)

// versionCommand prints this binary's build and the server's.
func versionCommand(g *globals) *cobra.Command {
	var clientOnly bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of avxrm and of the server",
		Long: "Print the build of this avxrm and of the server it talks to (its GET /version).\n" +
			"With --client, or when the server cannot be reached, only this binary's;\n" +
			"the server's error then makes the exit code 1.",
		Example: "  avxrm version\n  avxrm version --client\n  avxrm version -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client := clientBuild()
			if clientOnly {
				return printVersions(cmd, g.output, client, nil, "")
			}
			// GET /version is open: no token is sent, so none that has
			// expired can stand in the way.
			c, err := avxrm.New(g.server)
			if err != nil {
				return err
			}
			server, err := c.ServerVersion(cmd.Context())
			if err != nil {
				if perr := printVersions(cmd, g.output, client, nil, ""); perr != nil {
					return perr
				}
				return err
			}
			return printVersions(cmd, g.output, client, &server, c.Server())
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "only this binary's version; do not ask the server")
	return cmd
}

// clientBuild is this binary's build, in the SDK's form of a server's.
func clientBuild() avxrm.Version {
	b := buildinfo.Get()
	return avxrm.Version{Version: b.Version, GoVersion: b.GoVersion, Platform: b.Platform}
}

func printVersions(cmd *cobra.Command, format string, client avxrm.Version, server *avxrm.Version, at string) error {
	w := cmd.OutOrStdout()
	if format != "table" {
		return printItem(w, format, struct {
			Client avxrm.Version  `json:"client"`
			Server *avxrm.Version `json:"server,omitempty"`
		}{client, server})
	}
	fmt.Fprintf(w, "Client: avxrm %s\n", client)
	if server != nil {
		fmt.Fprintf(w, "Server: %s at %s\n", server, at)
	}
	return nil
}
