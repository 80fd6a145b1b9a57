package up_test

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// simulated makes jobs run without a runtime: a simulated plugin, the default,
// also on the controller queue, whose instances run for an hour.
func (c *client) simulated() {
	c.t.Helper()
	c.simulatedFor(3600)
}

// simulatedFor is simulated with instances that run for seconds.
func (c *client) simulatedFor(seconds float64) {
	c.t.Helper()
	c.must(http.MethodPost, "/api/resources/v1/plugins", map[string]any{"name": "sim", "type": "simulated",
		"config": map[string]any{"run_seconds": seconds}, "is_default": true}, http.StatusCreated, nil)
	req, err := http.NewRequest(http.MethodPatch, c.base+"/api/resources/v1/queues/"+events.ControllerQueue,
		strings.NewReader(`{"plugin_id":"sim"}`))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/merge-patch+json")
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("PATCH controller queue = %d", resp.StatusCode)
	}
}

func isAdmitted(j events.Job) bool {
	return j.Status == events.JobAdmitted || j.Status == events.JobRunning
}

// kill -9 of the all-in-one with admitted and pending jobs, and submissions
// in flight; after a restart every job keeps its state or moves on
// legitimately, no job is admitted twice, the ledger and usage match the
// active jobs and no queue is over its limit.
func TestKillNineWithAdmittedAndPendingJobs(t *testing.T) {
	dataDir := t.TempDir()
	addrs := [3]string{eventstest.FreeAddr(t), eventstest.FreeAddr(t), eventstest.FreeAddr(t)}
	proc := startChild(t, dataDir, addrs)
	c := newClient(t, proc.http)
	c.simulated()
	q := c.createQueue("kq", 10)

	a, b := c.submit("kq", 6), c.submit("kq", 4)
	c.waitJob(a.ID, "admitted", isAdmitted)
	c.waitJob(b.ID, "admitted", isAdmitted)
	p1, p2 := c.submit("kq", 5), c.submit("kq", 3)
	c.waitJob(p1.ID, "pending", hasStatus(events.JobPending))
	c.waitJob(p2.ID, "pending", hasStatus(events.JobPending))

	// Submissions in flight when the process dies.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		hc := &http.Client{Timeout: 2 * time.Second}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			body := `{"queue_id":"kq","worker_instances":` + string(rune('1'+i%4)) + `,"application":{"image":"sim:1"}}`
			resp, err := hc.Post(c.base+jobsPath, "application/json", strings.NewReader(body))
			if err != nil {
				return
			}
			resp.Body.Close()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	time.Sleep(time.Duration(300+rand.IntN(700)) * time.Millisecond)
	proc.kill(t)
	close(stop)
	wg.Wait()

	proc = startChild(t, dataDir, addrs)
	c = newClient(t, proc.http)
	ctx := context.Background()
	mc, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + proc.mongoAddr + "/"))
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Disconnect(ctx)
	db := mc.Database("rm")
	nc, err := nats.Connect("nats://" + proc.natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	// Every submission stored before the kill is taken up.
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := db.Collection("jobs").CountDocuments(ctx, bson.D{{Key: "status", Value: events.JobSubmitted}})
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d jobs still submitted 30s after the restart", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The jobs admitted before the kill are still admitted or running (their
	// simulated instances run for an hour), or final if the launcher found
	// them lost: never back to waiting.
	for _, j := range []events.Job{a, b} {
		if got := c.job(j.ID); !isAdmitted(got) && !events.JobFinal(got.Status) {
			t.Errorf("job %s admitted before the kill is %s after it", j.ID, got.Status)
		}
	}
	for _, j := range []events.Job{p1, p2} {
		if got := c.job(j.ID); got.Status == events.JobSubmitted {
			t.Errorf("pending job %s is back to submitted", j.ID)
		}
	}
	eventuallyConsistent(t, c, db, q)
	onlyOnce(t, admittedEvents(t, js))
	all := c.jobsOf("kq", "")
	states := map[string]int{}
	for _, j := range all {
		states[j.Status]++
	}
	t.Logf("%d jobs after the restart: %v; usage %+v", len(all), states, *c.queue("kq").Usage)
}
