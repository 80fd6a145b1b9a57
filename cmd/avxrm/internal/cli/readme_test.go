package cli

import (
	"os"
	"strings"
	"testing"
)

// Every avxrm command line of the README's "Use it" section names a command
// that exists, with flags it takes.
func TestREADMECommandsParse(t *testing.T) {
	raw, err := os.ReadFile("../../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	start := strings.Index(readme, "## Use it")
	end := strings.Index(readme[start:], "### The Go SDK")
	if start < 0 || end < 0 {
		t.Fatal("README.md has no 'Use it' section with the CLI first")
	}
	n := 0
	for _, line := range strings.Split(readme[start:start+end], "\n") {
		line, _, _ = strings.Cut(line, "#") // a comment
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "avxrm ") {
			continue
		}
		n++
		words := strings.Fields(line)[1:]
		cmd, args, err := Root().Find(words)
		if err != nil || !cmd.Runnable() {
			t.Errorf("%q: no such command (%v)", line, err)
			continue
		}
		if err := cmd.ParseFlags(args); err != nil {
			t.Errorf("%q: %v", line, err)
			continue
		}
		if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
			t.Errorf("%q: %v", line, err)
		}
	}
	if n < 8 {
		t.Errorf("only %d avxrm command lines in 'Use it'", n)
	}
}
