//go:build storefault

// The fault of FerretDB v1.24 with modernc.org/sqlite v1.32 that the proxy
// was made to work around (maxtime.go), tried on FerretDB's own port. It
// depends on timing, so it runs in make test-linearizability (go test -tags
// storefault), not in make test.

package ferretembed_test

import (
	"testing"
	"time"
)

// TestFerretDBReadsStayFreshWhenQueriesTimeOut: on FerretDB's own port,
// finds whose deadlines expire while FerretDB runs them leave no stale read
// and make no unrelated read fail with "interrupted". With
// modernc.org/sqlite v1.32 they did (8 stale and 69 failed reads in the
// first 3 s attempt; this test, named
// TestFerretDBReadsGoStaleWhenQueriesTimeOut then, asserted the fault).
// modernc.org/sqlite v1.62, which pkg/embedded requires since 2026-12-02,
// leaves neither, and this test keeps it so.
func TestFerretDBReadsStayFreshWhenQueriesTimeOut(t *testing.T) {
	srv := startInterruptStore(t)
	for attempt := 1; attempt <= 5; attempt++ {
		stale, errs := staleReadsUnderTimeouts(t, srv.InternalURI(), 3*time.Second)
		t.Logf("attempt %d: %d stale reads, %d failed reads", attempt, stale, errs)
		if stale+errs > 0 {
			t.Fatalf("attempt %d on FerretDB's own port: %d stale reads, %d failed reads", attempt, stale, errs)
		}
	}
}
