package ui

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// A page shows at most logTailLines lines and logTailBytes of a log, and
// says when the log had more: the logs route is asked for one line more.
func TestLogTail(t *testing.T) {
	lines := func(n int) []byte {
		var b bytes.Buffer
		for i := range n {
			fmt.Fprintf(&b, "line %d\n", i)
		}
		return b.Bytes()
	}
	for _, tc := range []struct {
		name  string
		raw   []byte
		first string
		lines int
		cut   bool
	}{
		{"empty", nil, "", 0, false},
		{"a few lines", lines(3), "line 0", 3, false},
		{"as many as shown", lines(logTailLines), "line 0", logTailLines, false},
		{"one more: there was more", lines(logTailLines + 1), "line 1", logTailLines, true},
		{"a last line without its newline", append(lines(logTailLines), "tail"...), "line 1", logTailLines, true},
		{"long lines: cut to the bytes", bytes.Repeat([]byte(strings.Repeat("x", 99)+"\n"), 300), strings.Repeat("x", 99), logTailBytes / 100, true},
	} {
		got, cut := logTail(tc.raw)
		n := strings.Count(got, "\n")
		if len(got) > 0 && !strings.HasSuffix(got, "\n") {
			n++
		}
		first, _, _ := strings.Cut(got, "\n")
		if first != tc.first || n != tc.lines || cut != tc.cut || len(got) > logTailBytes {
			t.Errorf("%s: first line %q, %d lines, cut %v (%d bytes); want %q, %d, %v", tc.name, first, n, cut, len(got), tc.first, tc.lines, tc.cut)
		}
	}
	// Bytes that are not UTF-8 (a program's binary output, a log cut inside a
	// character) went into the UTF-8 page as they were.
	if got, _ := logTail([]byte("a\xff\xfeb\x00c\n\xe2\x82")); got != "a\uFFFDb\x00c\n\uFFFD" {
		t.Errorf("a log that is not UTF-8 shows as %q", got)
	}
	if logTailQuery != "?tail="+strconv.Itoa(logTailLines+1) {
		t.Errorf("logTailQuery = %q", logTailQuery)
	}
}
