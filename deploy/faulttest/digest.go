package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// logLine is one JSON line of `docker-compose logs --timestamps`:
// "rm-api_1  | 2026-12-01T22:37:45.36Z {"time":…,"level":…,"msg":…}".
type logLine struct {
	Service    string
	At         time.Time
	Level, Msg string
}

// parseLogs reads the services' JSON lines; other lines (NATS's own
// format, compose's banner) are skipped.
func parseLogs(out string) []logLine {
	var lines []logLine
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		svc, rest, ok := strings.Cut(sc.Text(), "|")
		if !ok {
			continue
		}
		_, body, ok := strings.Cut(strings.TrimSpace(rest), " ")
		if !ok || !strings.HasPrefix(body, "{") {
			continue
		}
		var rec struct {
			Time       time.Time `json:"time"`
			Level, Msg string
		}
		if json.Unmarshal([]byte(body), &rec) != nil || rec.Msg == "" {
			continue
		}
		lines = append(lines, logLine{Service: serviceName(svc), At: rec.Time, Level: rec.Level, Msg: rec.Msg})
	}
	return lines
}

// serviceName is compose's container label without the project's suffix
// ("rm-launcher-1_1" → "rm-launcher-1").
func serviceName(label string) string {
	label = strings.TrimSpace(label)
	if i := strings.LastIndex(label, "_"); i > 0 {
		return label[:i]
	}
	return label
}

// printDigest writes, one line per service and message, what the
// services logged from from to to: how often, the first and last time.
// At most max lines, the earliest first, then how many were left out.
func printDigest(w io.Writer, lines []logLine, from, to time.Time, max int) {
	type key struct{ svc, level, msg string }
	type seen struct {
		n           int
		first, last time.Time
	}
	got := map[key]*seen{}
	for _, l := range lines {
		if l.At.Before(from) || l.At.After(to) {
			continue
		}
		k := key{l.Service, l.Level, l.Msg}
		if s := got[k]; s != nil {
			s.n++
			s.first, s.last = minTime(s.first, l.At), maxTime(s.last, l.At)
			continue
		}
		got[k] = &seen{n: 1, first: l.At, last: l.At}
	}
	keys := slices.SortedFunc(maps.Keys(got), func(a, b key) int { return cmp.Or(got[a].first.Compare(got[b].first), strings.Compare(a.svc, b.svc)) })
	clock := func(t time.Time) string { return t.UTC().Format("15:04:05.0") }
	for i, k := range keys {
		if i == max {
			fmt.Fprintf(w, "  … %d more\n", len(keys)-max)
			return
		}
		s := got[k]
		when := clock(s.first)
		if s.n > 1 {
			when += "–" + clock(s.last)
		}
		fmt.Fprintf(w, "  %s %s %q ×%d %s\n", k.svc, k.level, k.msg, s.n, when)
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
