package main

import (
	"bytes"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestHelpExamplesTakeTheirFlags runs every example of every command's
// --help, with --help added, through the command tree main runs: the flags
// parse first, so an example that names a flag the command does not take
// (as `avxrm store`'s once gave --mongo-addr for --addr) fails here
// instead of on a user's machine. Examples that pipe, redirect or go to
// the background are run up to the pipe, the redirection or the &.
func TestHelpExamplesTakeTheirFlags(t *testing.T) {
	var examples []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, line := range strings.Split(c.Example, "\n") {
			if line = strings.TrimSpace(line); line != "" {
				examples = append(examples, line)
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root())
	if len(examples) < 100 {
		t.Fatalf("found %d examples; the command tree changed?", len(examples))
	}
	ran := 0
	for _, ex := range examples {
		line, _, _ := strings.Cut(ex, " #")
		line, _, _ = strings.Cut(line, " | ")
		line, _, _ = strings.Cut(line, " < ")
		line = strings.TrimSuffix(strings.TrimSpace(line), " &") // `avxrm up &`
		args := shellWords(line)
		if len(args) == 0 || args[0] != "avxrm" {
			continue
		}
		args = args[1:]
		if i := slices.Index(args, "--"); i >= 0 {
			args = args[:i] // the job's own arguments
		}
		cmd := root() // a new tree each time: flags keep what they parsed
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append(args, "--help"))
		if err := cmd.Execute(); err != nil {
			t.Errorf("%s\n  with --help: %v\n%s", ex, err, out.String())
		}
		ran++
	}
	t.Logf("%d examples parsed", ran)
}

var (
	word    = regexp.MustCompile(`'[^']*'|"(?:[^"\\]|\\.)*"|[^\s'"]+`)
	escaped = regexp.MustCompile(`\\(.)`)
)

// shellWords splits line as sh would, for the quoting the examples use:
// single quotes, double quotes with backslash escapes, and words glued
// to quoted parts (--set 'x=1').
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	last := -1
	for _, loc := range word.FindAllStringIndex(line, -1) {
		if last >= 0 && loc[0] != last {
			words = append(words, cur.String())
			cur.Reset()
		}
		part := line[loc[0]:loc[1]]
		switch part[0] {
		case '\'':
			part = part[1 : len(part)-1]
		case '"':
			part = escaped.ReplaceAllString(part[1:len(part)-1], "$1")
		}
		cur.WriteString(part)
		last = loc[1]
	}
	if last >= 0 {
		words = append(words, cur.String())
	}
	return words
}
