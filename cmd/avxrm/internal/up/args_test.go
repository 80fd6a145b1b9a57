package up_test

import (
	"strings"
	"testing"

	"github.com/avxrm/rm/cmd/avxrm/internal/up"
)

// 'avxrm up extra' is refused: it would otherwise start a server as if the
// argument were not there.
func TestLoadRefusesArguments(t *testing.T) {
	_, err := up.Load([]string{"--data-dir", t.TempDir(), "extra"}, func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), `unexpected argument "extra"`) {
		t.Errorf("Load(extra) = %v, want it refused", err)
	}
}
