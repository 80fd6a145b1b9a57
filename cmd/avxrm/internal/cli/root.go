// Package cli holds the client commands of avxrm (queues, submit, jobs,
// logs, watch, events, artifacts, export, exports, login): thin cobra commands over
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
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes of the client commands.
const (
	ExitOK        = 0
	ExitFailed    = 1 // an error, or the job failed
	ExitCancelled = 3 // the job was cancelled
	// ExitInterrupted is the code of a command that SIGINT (Ctrl-C) ended,
	// as a shell gives 128+2; SIGTERM gives ExitTerminated.
	ExitInterrupted = 130
	ExitTerminated  = 143
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
		return ExitInterrupted
	}
	fmt.Fprintln(w, "avxrm:", message(err))
	return ExitFailed
}

// Interrupted is the exit code of a command that sig ended:
// ExitInterrupted for SIGINT, ExitTerminated for SIGTERM, whatever the
// command made of its cancelled context, which is not printed: the user
// ended it. A command that takes a signal as its normal end
// (Annotations[EndsOnSignal], such as 'avxrm up') keeps its own code and
// message, printed on w.
func Interrupted(cmd *cobra.Command, sig os.Signal, err error, w io.Writer) int {
	if cmd != nil && cmd.Annotations[EndsOnSignal] != "" {
		return ExitCode(err, w)
	}
	if sig == syscall.SIGTERM {
		return ExitTerminated
	}
	return ExitInterrupted
}

// EndsOnSignal is the annotation of a command, such as a server, that
// SIGINT or SIGTERM ends normally, with the code it returns.
const EndsOnSignal = "avxrm/ends-on-signal"

// message is err as one line that says what to do about it.
func message(err error) string {
	server := "the server"
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			server += " at " + avxrm.ServerRoot(u)
		}
	}
	var op *net.OpError
	switch {
	case errors.As(err, &op) && op.Op == "dial":
		return fmt.Sprintf("cannot reach %s (%v); is 'avxrm up' running? --server or $RM_SERVER says where it is", server, op.Err)
	case ue != nil && strings.Contains(ue.Err.Error(), "timeout awaiting response headers"):
		return fmt.Sprintf("%s took the request but did not answer within %s; is --server the Resource Manager's root URL, and is it well?",
			server, avxrm.ResponseHeaderTimeout)
	case ue != nil && errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("%s did not answer in time", server)
	}
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	var api *avxrm.Error
	switch {
	case !errors.As(err, &api):
		return msg
	case api.NotAPI():
		return msg + ": is --server its root URL?"
	case notTheAPI(api):
		return fmt.Sprintf("the server at %s answered %d with %s, not the Resource Manager's API: is --server its root URL?",
			api.Server, api.StatusCode, api.ContentType)
	case routeNotFound(api) && hasPath(api.Server):
		return fmt.Sprintf("the API was not found under %s (404): --server is the server's root URL, such as %s",
			api.Server, withoutPath(api.Server))
	}
	if d := deref(api.Problem.Detail); d != "" {
		msg = strings.Replace(msg, d, cliWords(api.StatusCode, d), 1)
	}
	switch api.StatusCode {
	case http.StatusUnauthorized:
		msg += " (log in with 'avxrm login', or give a token with --token or $RM_TOKEN)"
	case http.StatusForbidden:
		msg += " ('avxrm whoami' shows your roles and what you may do on each queue)"
	}
	return msg
}

// routeNotFound says whether the API answered 404 for want of a route, not
// of a resource (whose 404 names it).
func routeNotFound(e *avxrm.Error) bool {
	return e.StatusCode == http.StatusNotFound && !e.NotAPI() &&
		(e.Problem.Detail == nil || *e.Problem.Detail == "" || *e.Problem.Detail == e.Problem.Title)
}

// hasPath says whether the root URL root has a path: a server's root URL
// seldom has, and the API's 404 under one means --server is not the root.
func hasPath(root string) bool {
	u, err := url.Parse(root)
	return err == nil && strings.Trim(u.Path, "/") != ""
}

func withoutPath(root string) string {
	u, err := url.Parse(root)
	if err != nil {
		return root
	}
	u.Path, u.RawPath = "", ""
	return u.String()
}

// globals are the flags every client command takes.
type globals struct {
	server string
	output string
	token  string
	// notices is where a command says why the server has not answered
	// yet (a retry it waits for); nil in a shell completion, which must
	// print nothing but its candidates.
	notices io.Writer
}

// Root returns the avxrm command with every client command.
func Root() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "avxrm",
		Short: "avxrm: the Resource Manager for simulation jobs",
		Long: "avxrm runs the Resource Manager locally ('avxrm up') and talks to a running one:\n" +
			"queues, applications, jobs, their logs, events and scenario exports.\n\n" +
			"The server is --server, else $RM_SERVER, else " + avxrm.DefaultServer + ": its root URL\n" +
			"(host:port is taken as http://host:port).\n\n" +
			"Exit codes: 0 done; 1 an error, or the job failed; 3 the job was cancelled;\n" +
			"130 interrupted by Ctrl-C (SIGINT), 143 by SIGTERM.",
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
	// Before any command does anything: a bad -o, such as a file name
	// meant for -O, must not first create an export or cancel a job.
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		g.normalizeServer()
		g.notices = cmd.ErrOrStderr()
		if err := emptyArg(cmd, args); err != nil {
			return err
		}
		return g.checkOutput(cmd)
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.server, "server", envOr("RM_SERVER", envOr("RM_API_URL", avxrm.DefaultServer)),
		"the server's root URL; host:port means http://host:port ($RM_SERVER; in a job's instance $RM_API_URL)")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table, json or yaml (a get shows its one resource as YAML unless -o is given)")
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
		eventsCommand(g), artifactsCommand(g), exportCommand(g), exportsCommand(g)} {
		c.GroupID = "jobs"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{loginCommand(g), logoutCommand(), versionCommand(g), whoamiCommand(g)} {
		c.GroupID = "other"
		root.AddCommand(c)
	}
	addCompletions(root, g)
	withUsageOnArgErrors(root)
	root.InitDefaultCompletionCmd() // now, not at Execute, so that it is a group like the others
	rejectUnknownCommands(root)
	// A group is runnable only to refuse unknown words: its usage is
	// "avxrm queues [command]", not also "avxrm queues [flags]".
	root.SetUsageTemplate(strings.Replace(root.UsageTemplate(), "Usage:{{if .Runnable}}",
		`Usage:{{if and .Runnable (not (index .Annotations "`+groupAnnotation+`"))}}`, 1))
	return root
}

// rejectUnknownCommands makes cmd and each group of commands under it
// answer a word that is none of its commands with an error, and suggest
// the command meant. Cobra prints the help of such a group and exits 0, as
// if `avxrm queues lss` had done something; without a word it still does.
func rejectUnknownCommands(cmd *cobra.Command) {
	if cmd.HasSubCommands() && cmd.Run == nil && cmd.RunE == nil {
		cmd.Args = unknownCommand
		cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
		if cmd.Annotations == nil {
			cmd.Annotations = map[string]string{}
		}
		cmd.Annotations[groupAnnotation] = "true"
	}
	for _, c := range cmd.Commands() {
		rejectUnknownCommands(c)
	}
}

// groupAnnotation marks the commands rejectUnknownCommands made runnable.
const groupAnnotation = "avxrm:group"

// unknownCommand is the argument check of a group of commands: a word
// given is not one of them (else cobra would have run that one).
func unknownCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		return fmt.Errorf("%s; did you mean %s?", msg, orList(s))
	}
	return fmt.Errorf("%s; '%s --help' lists its commands", msg, cmd.CommandPath())
}

// orList is "a", "a" or "b", "a", "b" or "c", each quoted.
func orList(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = strconv.Quote(w)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
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
// "abc": invalid syntax`), in the form of the commands' own checks, and
// what to give instead of a flag the command does not have.
func flagError(cmd *cobra.Command, err error) error {
	if name, short := unknownFlag(err); name != "" {
		hint := unknownFlagHint
		if short {
			hint = unknownShorthandHint
		}
		if h := hint(cmd, name); h != "" {
			return fmt.Errorf("%w: %s", err, h)
		}
		return err
	}
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

// normalizeServer makes a --server given as host:port the URL it stands
// for, http://host:port.
func (g *globals) normalizeServer() {
	if g.server != "" && !strings.Contains(g.server, "://") {
		g.server = "http://" + g.server // host:port, as typed
	}
}

// emptyArg refuses an empty argument (an id from an empty variable: avxrm
// jobs get "$JOB") before any request, which would ask for the collection
// or no route; the job's own args, after --, may be empty.
func emptyArg(cmd *cobra.Command, args []string) error {
	if strings.HasPrefix(cmd.Name(), "__") { // cobra's __complete: its last word is the one being completed, "" too
		return nil
	}
	if n := cmd.ArgsLenAtDash(); n >= 0 {
		args = args[:n]
	}
	for i, a := range args {
		if strings.TrimSpace(a) == "" {
			return fmt.Errorf("argument %d is empty; usage: %s", i+1, cmd.UseLine())
		}
	}
	return nil
}

// checkOutput refuses an -o that is no output format. Where cmd writes a
// file (its -O/--output-file) and -o looks like one (a path, a name with
// an extension, '-' for stdout), it says that -O is the flag meant.
func (g *globals) checkOutput(cmd *cobra.Command) error {
	if g.output == "table" || g.output == "json" || g.output == "yaml" {
		return nil
	}
	msg := fmt.Sprintf("-o/--output %q: want an output format: table, json or yaml", g.output)
	if f := cmd.Flags().Lookup(outputFile); f != nil && looksLikeFile(g.output) {
		msg += fmt.Sprintf("; the %s to write is -O/--output-file", f.Annotations[outputFile][0])
	}
	return errors.New(msg)
}

// looksLikeFile says whether an -o value was likely meant as a file.
func looksLikeFile(v string) bool {
	return v == "-" || strings.ContainsRune(v, '/') || strings.ContainsRune(v, filepath.Separator) || filepath.Ext(v) != ""
}

// outputFile is the flag (-O) of the file a command writes, which -o,
// the output format, is not.
const outputFile = "output-file"

// outputFileFlag gives cmd -O/--output-file: the file (what: "zip",
// "file") to write, a directory to write it in under its own name (def),
// or '-' for stdout.
func outputFileFlag(cmd *cobra.Command, p *string, what, def string) {
	cmd.Flags().StringVarP(p, outputFile, "O", "", fmt.Sprintf("the %s (or directory; one ending in / is made if missing) to write, '-' for stdout (default: %s)", what, def))
	_ = cmd.Flags().SetAnnotation(outputFile, outputFile, []string{what})
}

// checkStdout refuses -O - beside -o json|yaml: both would write to stdout.
func (g *globals) checkStdout(out string) error {
	if out == "-" && g.structured() {
		return fmt.Errorf("-O - writes the file to stdout, so -o %s cannot print there too", g.output)
	}
	return nil
}

// client connects to the server with the token of --token, $RM_TOKEN,
// $RM_JOB_TOKEN (a job's instance has it: its own job's uploads and logs) or
// the login cache.
func (g *globals) client(ctx context.Context) (*avxrm.Client, error) {
	var opts []avxrm.Option
	tok := cmp.Or(g.token, os.Getenv("RM_TOKEN"), os.Getenv("RM_JOB_TOKEN"))
	if tok != "" {
		opts = append(opts, avxrm.WithTokenSource(avxrm.StaticToken(tok)))
	} else if ts, err := cachedTokenSource(ctx, g.server, os.Stderr); err != nil {
		return nil, err
	} else if ts != nil {
		opts = append(opts, avxrm.WithTokenSource(ts))
	}
	if w := g.notices; w != nil {
		opts = append(opts, avxrm.WithOnRetry(func(err error, retry int, wait time.Duration) {
			// The backoff's short waits after a lost connection pass
			// unnoticed; a 503's Retry-After is seconds.
			if wait >= time.Second {
				fmt.Fprintf(w, "avxrm: %s; trying again in %s (retry %d of %d)\n", message(err), wait.Round(100*time.Millisecond), retry, avxrm.DefaultRetries)
			}
		}))
	}
	return avxrm.New(g.server, opts...)
}
