package main

import (
	"strings"
	"testing"
	"time"
)

// The digest counts each service's messages in the window only, earliest
// first, and says how many lines it left out.
func TestDigestOfTheServicesLogs(t *testing.T) {
	out := strings.Join([]string{
		"Attaching to p_rm-api_1, p_mongo_1",
		`rm-launcher-1_1  | 2026-12-01T23:02:57.9Z {"time":"2026-12-01T23:02:57.9Z","level":"INFO","msg":"before the window"}`,
		`rm-launcher-1_1  | 2026-12-01T23:02:58.3Z {"time":"2026-12-01T23:02:58.3Z","level":"WARN","msg":"reconcile failed; retrying","key":"job/a"}`,
		`mongo_1          | 2026-12-01T23:02:58.2Z {"time":"2026-12-01T23:02:58.2Z","level":"INFO","msg":"store stopping"}`,
		`nats_1           | 2026-12-01T23:02:58.5Z [1] 2026/12/01 23:02:58.5 [INF] Server is ready`,
		`rm-launcher-1_1  | 2026-12-01T23:03:04.1Z {"time":"2026-12-01T23:03:04.1Z","level":"WARN","msg":"reconcile failed; retrying","key":"job/b"}`,
		`rm-api_1         | 2026-12-01T23:03:05.0Z {"time":"2026-12-01T23:03:05.0Z","level":"INFO","msg":"store server reachable again"}`,
		`rm-api_1         | 2026-12-01T23:03:20.0Z {"time":"2026-12-01T23:03:20.0Z","level":"INFO","msg":"after the window"}`,
	}, "\n")
	lines := parseLogs(out)
	if len(lines) != 6 {
		t.Fatalf("parsed %d lines, want the 6 JSON ones: %+v", len(lines), lines)
	}
	at := func(s string) time.Time { v, _ := time.Parse(time.RFC3339, s); return v }
	var b strings.Builder
	printDigest(&b, lines, at("2026-12-01T23:02:58Z"), at("2026-12-01T23:03:10Z"), 10)
	want := `  mongo INFO "store stopping" ×1 23:02:58.2
  rm-launcher-1 WARN "reconcile failed; retrying" ×2 23:02:58.3–23:03:04.1
  rm-api INFO "store server reachable again" ×1 23:03:05.0
`
	if b.String() != want {
		t.Errorf("digest:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	printDigest(&b, lines, at("2026-12-01T23:02:58Z"), at("2026-12-01T23:03:10Z"), 1)
	if got := b.String(); !strings.HasSuffix(got, "  … 2 more\n") || strings.Count(got, "\n") != 2 {
		t.Errorf("capped digest:\n%s", got)
	}
}
