package cli

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// liveLine shows a changing status: on a terminal one line redrawn in
// place; otherwise one line per change, so logs and pipes read well.
type liveLine struct {
	w     io.Writer
	tty   bool
	width int
	last  string
	drawn bool
}

func newLiveLine(w io.Writer) *liveLine {
	l := &liveLine{w: w, width: 200}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		l.tty = true
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			l.width = cols
		}
	}
	return l
}

func (l *liveLine) show(s string) {
	if s == l.last {
		return
	}
	l.last = s
	if !l.tty {
		fmt.Fprintln(l.w, s)
		return
	}
	if r := []rune(s); len(r) >= l.width {
		s = string(r[:l.width-1])
	}
	// Carriage return, then erase the line: the status redraws in place.
	fmt.Fprint(l.w, "\r\x1b[K"+s)
	l.drawn = true
}

// done ends the live line, leaving the last status on screen.
func (l *liveLine) done() {
	if l.tty && l.drawn {
		fmt.Fprintln(l.w)
		l.drawn = false
	}
}
