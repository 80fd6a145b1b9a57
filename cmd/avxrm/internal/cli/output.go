package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

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
	p := &listPrinter{w: w, format: format, cols: cols}
	if err := p.page(items); err != nil {
		return err
	}
	return p.end()
}

// printPages prints the list whose pages pages yields as they come, holding
// one page at a time (listPrinter): a list of 40,000 jobs shows its first
// rows at once, not once the last page is read. A page that fails ends it
// after what was printed, with that error; so does one whose items cannot
// be shown. empty, if set, is called once all pages are read if none had
// an item, before the list is ended.
func printPages(w io.Writer, format string, cols []column, pages iter.Seq2[[]json.RawMessage, error], empty func()) error {
	p := &listPrinter{w: w, format: format, cols: cols}
	for page, err := range pages {
		if err == nil {
			err = p.page(page)
		}
		if err != nil {
			p.cut()
			return err
		}
	}
	if p.n == 0 && empty != nil {
		empty()
	}
	return p.end()
}

// listPrinter prints a list a page at a time, as printItems prints it
// whole: a JSON array and a YAML list item by item, the same document; a
// table with the header and the first page laid out by a tabwriter, each
// column as wide as they need, and the rows of the later pages in those
// columns, a value wider than its column widening its own row alone. A list
// that fits in one page is printed as it would be at once.
type listPrinter struct {
	w      io.Writer
	format string
	cols   []column
	n      int   // the items printed
	widths []int // a table's column widths, padding included, once its header is printed
}

// page prints the items of one page.
func (p *listPrinter) page(items []json.RawMessage) error {
	if len(items) == 0 {
		return nil
	}
	var b bytes.Buffer
	switch p.format {
	case "json":
		for _, raw := range items {
			b.WriteString(map[bool]string{true: "[\n  ", false: ",\n  "}[p.n == 0])
			// As writeJSON writes it within the array: compacted with
			// HTML escaped, then indented one level in.
			compact, err := json.Marshal(raw)
			if err != nil {
				return err
			}
			if err := json.Indent(&b, compact, "  ", "  "); err != nil {
				return err
			}
			p.n++
		}
	case "yaml":
		for _, raw := range items {
			// A list of one: the items of a YAML list are written alike.
			if err := writeYAML(&b, []json.RawMessage{raw}); err != nil {
				return err
			}
			p.n++
		}
	default:
		rows := make([][]string, len(items))
		for r, raw := range items {
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				return err
			}
			rows[r] = make([]string, len(p.cols))
			for i, c := range p.cols {
				rows[r][i] = strings.ReplaceAll(c.value(m), "\t", " ")
			}
		}
		if p.widths == nil {
			return p.header(rows)
		}
		for _, row := range rows {
			for i, v := range row {
				b.WriteString(v)
				if i < len(row)-1 {
					b.WriteString(strings.Repeat(" ", max(p.widths[i]-utf8.RuneCountInString(v), tablePadding)))
				}
			}
			b.WriteByte('\n')
			p.n++
		}
	}
	_, err := p.w.Write(b.Bytes())
	return err
}

// tablePadding is the spaces between a table's columns.
const tablePadding = 2

// header prints a table's header and first rows, and keeps the widths of
// its columns for the rows that follow.
func (p *listPrinter) header(rows [][]string) error {
	hs := make([]string, len(p.cols))
	for i, c := range p.cols {
		hs[i] = c.header
	}
	rows = append([][]string{hs}, rows...)
	p.widths = make([]int, len(p.cols))
	tw := tabwriter.NewWriter(p.w, 0, 0, tablePadding, ' ', 0)
	for _, row := range rows {
		for i, v := range row {
			p.widths[i] = max(p.widths[i], utf8.RuneCountInString(v)+tablePadding)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	p.n += len(rows) - 1
	return tw.Flush()
}

// end ends the list once its last page is printed: the JSON array's ],
// [] for an empty one with -o json or yaml (not YAML's null, which reads
// as no answer at all), a table's header alone.
func (p *listPrinter) end() error {
	var err error
	switch {
	case p.format != "json" && p.format != "yaml":
		if p.widths == nil {
			err = p.header(nil)
		}
	case p.n == 0:
		_, err = io.WriteString(p.w, "[]\n")
	case p.format == "json":
		_, err = io.WriteString(p.w, "\n]\n")
	}
	return err
}

// cut ends a list that a failure cut short after what was printed: a JSON
// array is left open, so that it does not parse as the whole list, and
// only its last line ended.
func (p *listPrinter) cut() {
	if p.format == "json" && p.n > 0 {
		_, _ = io.WriteString(p.w, "\n")
	}
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
