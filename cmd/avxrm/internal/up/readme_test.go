package up_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/up"
	"github.com/avxrm/rm/pkg/events/eventstest"
)

// The README's configuration table is generated; this keeps it true.
func TestREADMEConfigTableIsCurrent(t *testing.T) {
	raw, err := os.ReadFile("../../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	start := strings.Index(readme, "<!-- config-table")
	end := strings.Index(readme, "<!-- /config-table -->")
	if start < 0 || end < start {
		t.Fatal("README.md has no config-table markers")
	}
	table := readme[start:end]
	table = table[strings.Index(table, "\n")+1:]
	if table != up.Usage() {
		t.Errorf("README.md configuration table is stale; replace it with the output of `avxrm config-table`:\n%s", up.Usage())
	}
}

// TestREADMEQuickstart runs the README's quickstart, command for command, as
// a new user would paste it into bash, against the all-in-one on free ports:
// plugin, queue, application, app-runtime-config, two jobs of 8 workers on a
// queue of 10 (the second waits and says why), the first job's events, a
// worker's log, and an export of two samples' scenario files.
func TestREADMEQuickstart(t *testing.T) {
	raw, err := os.ReadFile("../../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	script := quickstart(t, string(raw))
	c := startChild(t, t.TempDir(), [3]string{eventstest.FreeAddr(t), eventstest.FreeAddr(t), eventstest.FreeAddr(t)})
	script = strings.ReplaceAll(script, "127.0.0.1:8080", c.http)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-c", script)
	cmd.Dir = t.TempDir()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("the README quickstart failed: %v\n%s\nall-in-one:\n%s", err, out.String(), c.stderr)
	}
	got := out.String()
	t.Logf("quickstart output:\n%s", got)
	for _, want := range []string{
		`"name":"Default"`,            // the queue was created
		"allows 10 worker instances",  // B says why it waits
		"event: rm.job.running",       // A's events
		"event: rm.job.succeeded",     //
		"worker 0 of job job-",        // a worker's log
		"scenarios/s-0/scenario.xosc", // the zip's listing
		"scenarios/s-1/scenario.xosc", //
		"manifest.json",               //
	} {
		if !strings.Contains(got, want) {
			t.Errorf("quickstart output lacks %q", want)
		}
	}
}

// quickstart returns the shell blocks between the README's quickstart markers, in order.
func quickstart(t *testing.T, readme string) string {
	t.Helper()
	start := strings.Index(readme, "<!-- quickstart")
	end := strings.Index(readme, "<!-- /quickstart -->")
	if start < 0 || end < start {
		t.Fatal("README.md has no quickstart markers")
	}
	var blocks []string
	rest := readme[start:end]
	for {
		i := strings.Index(rest, "```sh\n")
		if i < 0 {
			break
		}
		rest = rest[i+len("```sh\n"):]
		j := strings.Index(rest, "```\n")
		if j < 0 {
			t.Fatal("README.md: unterminated code block in the quickstart")
		}
		blocks = append(blocks, rest[:j])
		rest = rest[j+len("```\n"):]
	}
	if len(blocks) == 0 {
		t.Fatal("README.md: no sh blocks in the quickstart")
	}
	return strings.Join(blocks, "\n")
}
