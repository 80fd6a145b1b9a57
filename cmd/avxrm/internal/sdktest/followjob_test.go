package sdktest

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
)

// WaitJob follows the job's events from the moment it reads the job: it
// opens the stream with no Last-Event-ID (it asked for the job's whole
// history from event 0, a replay that holds one of the API's replay
// slots), and a job that ends after that read and before the stream is
// open is found by reading it again once the stream is open.
func TestWaitJobFollowsOnlyNewEvents(t *testing.T) {
	sys := start(t, t.TempDir(), "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	direct := newClient(t, sys.Addr)
	app := sleeperApp(t, direct)
	holdQueue(t, direct, "hold", app)
	j, err := direct.SubmitJob(ctx, api.JobBody{QueueId: "hold", WorkerInstances: 1, Application: api.JobApplicationRef{Id: &app}})
	if err != nil {
		t.Fatal(err)
	}
	var cancelled atomic.Bool
	tap := &streamTap{}
	hc := tap.client(func(r *http.Request) {
		// The job ends before its stream is open.
		if !cancelled.CompareAndSwap(false, true) {
			return
		}
		if _, err := direct.CancelJob(ctx, *j.Id); err != nil {
			t.Error(err)
		}
		for {
			got, err := direct.GetJob(ctx, *j.Id)
			if err != nil || avxrm.JobFinal(got) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	c := newClient(t, sys.Addr, avxrm.WithHTTPClient(hc))
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	got, err := c.WaitJob(wctx, *j.Id)
	if err != nil || *got.Status != "cancelled" {
		t.Fatalf("WaitJob of a job that ended before its stream opened: %v", err)
	}
	t.Logf("events received: %d", len(tap.onlyNewEvents(t)))
}
