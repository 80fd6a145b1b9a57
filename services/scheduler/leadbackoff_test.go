package scheduler

import (
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestFailedTakeoversBackOff: the store answers the resync's read of the
// jobs only after 3 s, past the client's 1 s timeout, as the fault suite's
// store did after the NATS restart. A scheduler whose takeover fails so must
// not campaign and read again one RenewInterval later: in 12 s, stepping
// down and retrying after 200 ms sent the read 10 times (each one left
// running in the store); with the back-off (1 s, 2 s, 4 s, …) it is sent at
// most 4 times.
func TestFailedTakeoversBackOff(t *testing.T) {
	e := newEnv(t)
	e.queue("q", ptr(1))
	slow := &mongotest.SlowReplies{Match: [][]byte{[]byte("\x02find\x00"), []byte("\x02find\x00\x05\x00\x00\x00jobs\x00")}, Delay: 3 * time.Second}
	s := runOnSlowStore(t, e, options.Client().ApplyURI(e.uri).SetDialer(slow).SetTimeout(time.Second).SetRetryReads(false))

	time.Sleep(12 * time.Second)
	n := slow.Matched.Load()
	if n == 0 {
		t.Fatal("no read of the jobs reached the store: the test does not slow what it means to")
	}
	if s.Leading() {
		t.Fatal("the scheduler leads although its resync cannot finish")
	}
	if n > 4 {
		t.Errorf("reads of the jobs sent in 12 s of failed takeovers: %d, want at most 4 (back-off 1 s, 2 s, 4 s)", n)
	}
	t.Logf("reads of the jobs sent in 12 s of failed takeovers: %d", n)
}
