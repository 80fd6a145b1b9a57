package up_test

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// maxEventBytes is the bound docs/API.md promises for every event.
const maxEventBytes = 64 << 10

// TestBigJob runs a job of 20,000 workers (simulated driver, 1 s each)
// through the all-in-one: it succeeds, an SSE client and a consumer of the
// event stream each see it admitted, running and succeeded in events under 64 KiB, and
// GET /jobs/{id}/instances pages through all its instances.
func TestBigJob(t *testing.T) {
	runBigJob(t, 20000)
}

// BenchmarkBigJob is TestBigJob with 100,000 workers, the most the API
// accepts; it takes minutes, so it runs once whatever b.N is:
//
//	go test -run '^$' -bench BenchmarkBigJob -benchtime 1x -timeout 60m ./cmd/avxrm/internal/up/
func BenchmarkBigJob(b *testing.B) {
	start := time.Now()
	runBigJob(b, envInt("RM_BIG_WORKERS", 100000))
	b.ReportMetric(time.Since(start).Seconds(), "s-total")
}

// seenEvent is a job event as one of the two clients received it.
type seenEvent struct {
	typ  string
	size int
}

func runBigJob(t testing.TB, workers int) {
	sys := startSystemIn(t, t.TempDir())
	c := newClient(t, sys.HTTPAddr)
	c.http.Timeout = 5 * time.Minute
	c.simulatedFor(1)
	c.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "big"}, http.StatusCreated, nil)

	var mu sync.Mutex
	seen := map[string][]seenEvent{} // by client
	add := func(client, typ string, size int) {
		mu.Lock()
		defer mu.Unlock()
		seen[client] = append(seen[client], seenEvent{typ, size})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The NATS client reads the stream, as docs/API.md tells subscribers to:
	// a core subscription also sees a publication the outbox retried, which
	// the stream drops as a duplicate (once under make test's load, a
	// 20,000-worker job's running and succeeded were published twice).
	nc, err := nats.Connect(sys.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.FilterSubject(events.KindJob, "", "")},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	consuming, err := cons.Consume(func(m jetstream.Msg) {
		add("nats", m.Headers().Get("ce-type"), len(m.Data()))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer consuming.Stop()
	sse := openEvents(t, ctx, "http://"+sys.HTTPAddr+"/api/resources/v1/events?type="+
		url.QueryEscape("rm.job.admitted,rm.job.running,rm.job.succeeded,rm.job.failed"), "")
	go func() {
		for e := range sse {
			add("sse", e.Event, e.Size)
		}
	}()

	start := time.Now()
	j := c.submit("big", workers)
	done := c.waitJobFor(j.ID, "final", 30*time.Minute, isFinal)
	t.Logf("%d workers: %s after %s", workers, done.Status, time.Since(start).Round(time.Millisecond))
	if done.Status != events.JobSucceeded {
		t.Fatalf("job %s: %s %+v", j.ID, done.Status, done.Conditions)
	}
	if got := done.InstanceCounts[events.RoleWorker][events.InstanceSucceeded]; got != workers || !done.InstancesTruncated || len(done.Instances) != 1000 {
		t.Errorf("GET job: %d workers succeeded, %d instances shown, truncated %v", got, len(done.Instances), done.InstancesTruncated)
	}
	checkBigJobEvents(t, &mu, seen)
	start = time.Now()
	if n := pageInstances(t, c, j.ID); n != workers+1 {
		t.Errorf("paged through %d instances, want %d", n, workers+1)
	}
	t.Logf("paged through %d instances in %s; job version %d at the end, %d after paging",
		workers+1, time.Since(start).Round(time.Millisecond), done.Version, c.job(j.ID).Version)
}

// checkBigJobEvents waits until both clients have seen admitted, running
// and succeeded, and checks every event's size.
func checkBigJobEvents(t testing.TB, mu *sync.Mutex, seen map[string][]seenEvent) {
	t.Helper()
	want := []string{events.TypeJobAdmitted, events.TypeJobRunning, events.TypeJobSucceeded}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		ok := true
		for _, client := range []string{"nats", "sse"} {
			var got []string
			for _, e := range seen[client] {
				if e.size > maxEventBytes {
					t.Errorf("%s: %s event of %d bytes", client, e.typ, e.size)
				}
				for _, w := range want {
					if e.typ == w && (len(got) == 0 || got[len(got)-1] != w) {
						got = append(got, w)
					}
				}
			}
			ok = ok && len(got) == len(want)
			if time.Now().After(deadline) && len(got) != len(want) {
				t.Errorf("%s saw %v, want %v", client, got, want)
			}
		}
		mu.Unlock()
		if ok || time.Now().After(deadline) || t.Failed() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pageInstances reads every instance of job id through
// GET /jobs/{id}/instances and returns how many there were, checking that
// each is listed once, in order, and succeeded.
func pageInstances(t testing.TB, c *client, id string) int {
	t.Helper()
	type instancePage struct {
		Items      []events.Instance `json:"items"`
		NextCursor string            `json:"next_cursor"`
	}
	n, last := 0, -1
	cursor := ""
	for {
		var page instancePage
		c.must(http.MethodGet, jobsPath+"/"+id+"/instances?limit=1000&cursor="+url.QueryEscape(cursor), nil, http.StatusOK, &page)
		for _, in := range page.Items {
			slot := in.Index + 1
			if in.Role == events.RoleController {
				slot = 0
			}
			if slot <= last || in.Status != events.InstanceSucceeded {
				t.Fatalf("instance %+v after slot %d", in, last)
			}
			last = slot
			n++
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	var p struct {
		Errors []struct{ Field string } `json:"errors"`
	}
	c.must(http.MethodGet, jobsPath+"/"+id+"/instances?cursor=bogus", nil, http.StatusBadRequest, &p)
	if len(p.Errors) != 1 || p.Errors[0].Field != "cursor" {
		t.Errorf("malformed cursor: %+v, want a 400 naming cursor", p)
	}
	return n
}
