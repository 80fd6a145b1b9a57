package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// column is one column of a table: its header and how to read it from an
// item (the JSON the server sent, decoded into a map).
type column struct {
	header string
	value  func(m map[string]any) string
}

// field reads a dotted path of m as text ("" when absent, "-" for null).
func field(path string) func(map[string]any) string {
	return func(m map[string]any) string { return text(lookup(m, path)) }
}

func lookup(m map[string]any, path string) any {
	var v any = m
	for _, p := range strings.Split(path, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	return v
}

func text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	default:
		raw, _ := json.Marshal(x)
		return string(raw)
	}
}

// timeAt reads the RFC 3339 time at path and shows it with show; none when
// it is absent or null.
func timeAt(path, none string, show func(time.Time) string) func(map[string]any) string {
	return func(m map[string]any) string {
		t, err := time.Parse(time.RFC3339, text(lookup(m, path)))
		if err != nil {
			return none
		}
		return show(t)
	}
}

// age is how long ago the time at path was, kubectl-style.
func age(path string) func(map[string]any) string {
	return timeAt(path, "", func(t time.Time) string { return shortDuration(time.Since(t)) })
}

// startIn reads an estimated time at path as how long until it: "in 2m",
// "now" once it has passed, "unknown" when null or absent.
func startIn(path string) func(map[string]any) string {
	return timeAt(path, "unknown", func(t time.Time) string { return inDuration(time.Until(t)) })
}

func inDuration(d time.Duration) string {
	if d < time.Second {
		return "now"
	}
	return "in " + shortDuration(d)
}

func shortDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// printItems writes items (raw JSON objects) in format: a table of cols, a
// JSON array, or a YAML list.
func printItems(w io.Writer, format string, items []json.RawMessage, cols []column) error {
	if items == nil {
		items = []json.RawMessage{} // [], not null
	}
	switch format {
	case "json":
		return writeJSON(w, items)
	case "yaml":
		return writeYAML(w, items)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	hs := make([]string, len(cols))
	for i, c := range cols {
		hs[i] = c.header
	}
	fmt.Fprintln(tw, strings.Join(hs, "\t"))
	for _, raw := range items {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			return err
		}
		vs := make([]string, len(cols))
		for i, c := range cols {
			vs[i] = strings.ReplaceAll(c.value(m), "\t", " ")
		}
		fmt.Fprintln(tw, strings.Join(vs, "\t"))
	}
	return tw.Flush()
}

// printItem writes one object: as JSON, YAML, or (table) YAML too, which
// reads best for a single resource.
func printItem(w io.Writer, format string, v any) error {
	if format == "json" {
		return writeJSON(w, v)
	}
	return writeYAML(w, v)
}

// table says whether -o table was given: a get, which shows one resource
// as YAML by default, then prints it as a table, as ls does.
func (g *globals) table(cmd *cobra.Command) bool {
	return g.output == "table" && cmd.Flags().Changed("output")
}

// printOne prints one resource (raw JSON) as get does: a table of cols
// with -o table, else as printItem does.
func (g *globals) printOne(cmd *cobra.Command, v json.RawMessage, cols []column) error {
	if g.table(cmd) {
		return printItems(cmd.OutOrStdout(), "table", []json.RawMessage{v}, cols)
	}
	return printItem(cmd.OutOrStdout(), g.output, v)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func writeYAML(w io.Writer, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	out, err := yaml.JSONToYAML(raw)
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

// structured says whether -o asks for a document (json or yaml) rather
// than the text a person reads.
func (g *globals) structured() bool { return g.output != "table" }

// progress is where a command shows what happens while it runs: stdout as
// text, stderr with -o json|yaml, so that stdout holds one document alone.
func (g *globals) progress(cmd *cobra.Command) io.Writer {
	if g.structured() {
		return cmd.ErrOrStderr()
	}
	return cmd.OutOrStdout()
}

// result is what a command did to one resource, as -o json|yaml prints it.
type result struct {
	ID     string `json:"id"`
	Result string `json:"result,omitempty"`
	NewID  string `json:"new_id,omitempty"` // what it made: a resubmission's job
	Error  string `json:"error,omitempty"`
}

// line is the result as text: "<id> <result>[ as <new id>]".
func (r result) line() string {
	s := r.ID + " " + r.Result
	if r.NewID != "" {
		s += " as " + r.NewID
	}
	return s
}

// printResult prints what a command did to one resource: a line, or the
// result as a document.
func printResult(cmd *cobra.Command, g *globals, r result) error {
	if g.structured() {
		return printItem(cmd.OutOrStdout(), g.output, r)
	}
	_, err := fmt.Fprintln(cmd.OutOrStdout(), r.line())
	return err
}
