package launch

import (
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// naiveTailStart is where the last n lines of log begin, by splitting it.
func naiveTailStart(log string, n int) int64 {
	lines := strings.SplitAfter(log, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) <= n {
		return 0
	}
	return int64(len(strings.Join(lines[:len(lines)-n], "")))
}

// tailStart finds the last n lines' start as splitting the log would, read
// backwards (a seekable log, in blocks, with lines longer than a block) and
// forwards (a stream), with and without a last newline.
func TestTailStart(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	logs := []string{"", "\n", "\n\n\n", "a", "a\n", "a\nb", "a\nb\n", "a\n\nb\n\n", strings.Repeat("x", 3*tailBlock+5) + "\nend\n"}
	for range 30 {
		var b strings.Builder
		for range rng.IntN(200) {
			b.WriteString(strings.Repeat("y", rng.IntN(2*tailBlock/3)+rng.IntN(3)-1))
			b.WriteByte('\n')
		}
		if rng.IntN(2) == 0 {
			b.WriteString("partial")
		}
		logs = append(logs, b.String())
	}
	for _, log := range logs {
		for _, n := range []int{1, 2, 3, 10, 150, 1000} {
			want := naiveTailStart(log, n)
			seeking, err := tailStart(strings.NewReader(log), n)
			if err != nil || seeking != want {
				t.Errorf("seekable log of %d bytes, last %d lines: start %d (%v), want %d", len(log), n, seeking, err, want)
			}
			stream, err := tailStart(struct{ io.Reader }{strings.NewReader(log)}, n)
			if err != nil || stream != want {
				t.Errorf("streamed log of %d bytes, last %d lines: start %d (%v), want %d", len(log), n, stream, err, want)
			}
		}
	}
}
