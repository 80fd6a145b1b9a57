package up_test

import (
	"os"
	"strings"
	"testing"

	"github.com/avxrm/rm/cmd/avxrm/internal/up"
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
