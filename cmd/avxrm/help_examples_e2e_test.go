package main_test

import (
	"bufio"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestHelpExamplesTakeTheirFlags runs every example of every command's
// --help with --help added: the flags parse first, so an example that
// names a flag the command does not take (as `avxrm store`'s once gave
// --mongo-addr for --addr) fails here instead of on a user's machine.
// Examples that pipe, redirect or go to the background are run up to
// the pipe, the redirection or the &.
func TestHelpExamplesTakeTheirFlags(t *testing.T) {
	var examples []string
	commands := [][]string{nil}
	for len(commands) > 0 {
		path := commands[0]
		commands = commands[1:]
		help := helpOf(t, path)
		examples = append(examples, section(help, "Examples:")...)
		for _, title := range []string{"Available Commands:", "Resources:", "Jobs:", "Other:", "Additional Commands:"} {
			for _, line := range section(help, title) {
				name := strings.Fields(line)[0]
				if name != "help" && name != "completion" {
					commands = append(commands, append(slices.Clone(path), name))
				}
			}
		}
	}
	if len(examples) < 50 {
		t.Fatalf("found %d examples; the help's layout changed?", len(examples))
	}
	ran := 0
	for _, ex := range examples {
		line, _, _ := strings.Cut(ex, " #")
		line, _, _ = strings.Cut(line, " | ")
		line, _, _ = strings.Cut(line, " < ")
		line = strings.TrimSuffix(strings.TrimSpace(line), " &") // `avxrm up &`
		args := shellWords(t, strings.TrimSpace(line))
		if len(args) == 0 || args[0] != "avxrm" {
			continue
		}
		args = args[1:]
		if i := slices.Index(args, "--"); i >= 0 {
			args = args[:i] // the job's own arguments
		}
		out, err := exec.Command(binary, append(args, "--help")...).CombinedOutput()
		if err != nil {
			t.Errorf("%s\n  with --help: %v\n%s", ex, err, out)
		}
		ran++
	}
	t.Logf("%d examples parsed", ran)
}

// helpOf is the --help of the command at path.
func helpOf(t *testing.T, path []string) string {
	t.Helper()
	out, err := exec.Command(binary, append(slices.Clone(path), "--help")...).CombinedOutput()
	if err != nil {
		t.Fatalf("avxrm %s --help: %v\n%s", strings.Join(path, " "), err, out)
	}
	return string(out)
}

// section is the indented lines under title in help, up to the next blank line.
func section(help, title string) []string {
	var lines []string
	in := false
	sc := bufio.NewScanner(strings.NewReader(help))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case l == title:
			in = true
		case in && strings.TrimSpace(l) == "":
			in = false
		case in && strings.HasPrefix(l, "  "):
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	return lines
}

var word = regexp.MustCompile(`'[^']*'|"(?:[^"\\]|\\.)*"|[^\s'"]+`)

// shellWords splits line as sh would, for the quoting the examples use:
// single quotes, double quotes with backslash escapes, and words glued
// to quoted parts (--set 'x=1').
func shellWords(t *testing.T, line string) []string {
	t.Helper()
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
			part = regexp.MustCompile(`\\(.)`).ReplaceAllString(part[1:len(part)-1], "$1")
		}
		cur.WriteString(part)
		last = loc[1]
	}
	if last >= 0 {
		words = append(words, cur.String())
	}
	return words
}
