//go:build storefault

// The fault of FerretDB v1.24 with modernc.org/sqlite v1.32 that the proxy
// works around (maxtime.go), shown on FerretDB's own port. It depends on
// timing, so it runs in make test-linearizability (go test -tags
// storefault), not in make test.

package ferretembed_test

import (
	"testing"
	"time"
)

// TestFerretDBReadsGoStaleWhenQueriesTimeOut shows the fault the proxy
// works around, on FerretDB's own port: it must find a stale read or a
// read that failed with "interrupted" although its own deadline was far.
// If an upgrade of FerretDB or modernc.org/sqlite fixes it, this test
// fails, and the maxTimeMS stripping can go.
func TestFerretDBReadsGoStaleWhenQueriesTimeOut(t *testing.T) {
	srv := startInterruptStore(t)
	for attempt := 1; attempt <= 5; attempt++ {
		stale, errs := staleReadsUnderTimeouts(t, srv.InternalURI(), 3*time.Second)
		t.Logf("attempt %d: %d stale reads, %d failed reads", attempt, stale, errs)
		if stale+errs > 0 {
			return
		}
	}
	t.Fatal("no stale or interrupted read on FerretDB's own port in 5 attempts")
}
