// Package cli holds the client commands of avxrm (queues, submit, jobs,
// logs, watch, events, artifacts, export, login): thin cobra commands over
// the Go SDK (sdk/go/avxrm). It must not import the server's packages: the
// commands talk to a Resource Manager only through its API.
package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes of the client commands.
const (
	ExitOK        = 0
	ExitFailed    = 1 // an error, or the job failed
	ExitCancelled = 3 // the job was cancelled
)

// exitError ends the program with code after printing msg (if any).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// ExitCode prints err as one line on w and returns the process's exit code.
func ExitCode(err error, w io.Writer) int {
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(w, "avxrm:", ee.msg)
		}
		return ee.code
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(w, "avxrm: interrupted")
		return ExitFailed
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		fmt.Fprintf(w, "avxrm: cannot reach the server (%v); is 'avxrm up' running? --server or $RM_SERVER says where it is\n", op.Err)
		return ExitFailed
	}
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	var api *avxrm.Error
	if errors.As(err, &api) {
		switch api.StatusCode {
		case http.StatusUnauthorized:
			msg += " (log in with 'avxrm login', or give a token with --token or $RM_TOKEN)"
		case http.StatusForbidden:
			msg += " ('avxrm whoami' shows your roles and what you may do on each queue)"
		}
	}
	fmt.Fprintln(w, "avxrm:", msg)
	return ExitFailed
}

// globals are the flags every client command takes.
type globals struct {
	server string
	output string
	token  string
}

// Root returns the avxrm command with every client command.
func Root() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "avxrm",
		Short: "avxrm: the Resource Manager for simulation jobs",
		Long: "avxrm runs the Resource Manager locally ('avxrm up') and talks to a running one:\n" +
			"queues, applications, jobs, their logs, events and scenario exports.\n\n" +
			"The server is --server, else $RM_SERVER, else " + avxrm.DefaultServer + ".",
		Example: "  avxrm up &\n" +
			"  avxrm queues create Default --limit 10\n" +
			"  avxrm submit --queue Default --app sim:1.0 --workers 8 --wait\n" +
			"  avxrm jobs ls\n" +
			"  avxrm logs -f job-01J… --role worker --index 3",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       clientBuild().String(), // --version
	}
	root.SetVersionTemplate("avxrm {{.Version}}\n")
	root.SetFlagErrorFunc(flagError)
	pf := root.PersistentFlags()
	pf.StringVar(&g.server, "server", envOr("RM_SERVER", envOr("RM_API_URL", avxrm.DefaultServer)),
		"the server's root URL ($RM_SERVER; in a job's instance $RM_API_URL)")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table, json or yaml")
	pf.StringVar(&g.token, "token", "", "a bearer token to send ($RM_TOKEN; in a job's instance $RM_JOB_TOKEN; else the one 'avxrm login' stored)")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	root.AddGroup(&cobra.Group{ID: "resources", Title: "Resources:"}, &cobra.Group{ID: "jobs", Title: "Jobs:"},
		&cobra.Group{ID: "other", Title: "Other:"})
	for _, k := range kinds {
		c := resourceCommand(g, k)
		c.GroupID = "resources"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{submitCommand(g), jobsCommand(g), arraysCommand(g), logsCommand(g), watchCommand(g),
		eventsCommand(g), artifactsCommand(g), exportCommand(g)} {
		c.GroupID = "jobs"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{loginCommand(g), logoutCommand(), versionCommand(g), whoamiCommand(g)} {
		c.GroupID = "other"
		root.AddCommand(c)
	}
	withUsageOnArgErrors(root)
	return root
}

// withUsageOnArgErrors makes the argument checks of cmd and its commands
// say how the command is used: cobra's 'accepts 1 arg(s), received 0'
// alone does not say which argument is missing.
func withUsageOnArgErrors(cmd *cobra.Command) {
	if check := cmd.Args; check != nil {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if err := check(c, args); err != nil {
				return fmt.Errorf("%w; usage: %s", err, c.UseLine())
			}
			return nil
		}
	}
	for _, c := range cmd.Commands() {
		withUsageOnArgErrors(c)
	}
}

// flagError says what a flag takes instead of the parser's words
// (`invalid argument "abc" for "--workers" flag: strconv.ParseInt: parsing
// "abc": invalid syntax`), in the form of the commands' own checks.
func flagError(_ *cobra.Command, err error) error {
	var ive *pflag.InvalidValueError
	if !errors.As(err, &ive) {
		return err
	}
	want := map[string]string{
		"int": "a whole number", "int64": "a whole number", "uint": "a whole number ≥ 0",
		"bool": "true or false", "duration": "a duration such as 30s, 5m or 1h30m", "float64": "a number",
	}[ive.GetFlag().Value.Type()]
	if want == "" {
		return err
	}
	return fmt.Errorf("--%s %q: want %s", ive.GetFlag().Name, ive.GetValue(), want)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (g *globals) checkOutput() error {
	if g.output != "table" && g.output != "json" && g.output != "yaml" {
		return fmt.Errorf("-o %q: want table, json or yaml", g.output)
	}
	return nil
}

// client connects to the server with the token of --token, $RM_TOKEN,
// $RM_JOB_TOKEN (a job's instance has it: its own job's uploads and logs) or
// the login cache.
func (g *globals) client(ctx context.Context) (*avxrm.Client, error) {
	if err := g.checkOutput(); err != nil {
		return nil, err
	}
	var opts []avxrm.Option
	tok := cmp.Or(g.token, os.Getenv("RM_TOKEN"), os.Getenv("RM_JOB_TOKEN"))
	if tok != "" {
		opts = append(opts, avxrm.WithTokenSource(avxrm.StaticToken(tok)))
	} else if ts, err := cachedTokenSource(ctx); err != nil {
		return nil, err
	} else if ts != nil {
		opts = append(opts, avxrm.WithTokenSource(ts))
	}
	return avxrm.New(g.server, opts...)
}
