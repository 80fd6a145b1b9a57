package up_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
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

// child is the all-in-one running as a separate process of this test binary.
type child struct {
	cmd                       *exec.Cmd
	http, natsAddr, mongoAddr string
	stderr                    *bytes.Buffer
}

// startChild runs the all-in-one on dataDir and waits until /readyz says 200.
func startChild(t *testing.T, dataDir string, addrs [3]string) *child {
	t.Helper()
	c := &child{http: addrs[0], natsAddr: addrs[1], mongoAddr: addrs[2], stderr: &bytes.Buffer{}}
	c.cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.cmd.Env = append(os.Environ(), childEnv+"=1", "RM_DATA_DIR="+dataDir, "RM_HTTP_ADDR="+c.http,
		"RM_NATS_ADDR="+c.natsAddr, "RM_MONGO_ADDR="+c.mongoAddr, "RM_OUTBOX_INTERVAL=200ms", "RM_LOG_FORMAT=text")
	c.cmd.Stderr = c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.cmd.Process.Kill(); _ = c.cmd.Wait() })
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + c.http + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return c
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("all-in-one not ready; stderr:\n%s", c.stderr)
	return nil
}

func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = c.cmd.Wait()
}

// createQueues posts queues from two clients until the server goes away.
func createQueues(base string, next *atomic.Int64, stop <-chan struct{}) {
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				body := fmt.Sprintf(`{"name":"crash-%d","maximum_allowed_worker_instances":%d}`, next.Add(1), rand.IntN(100))
				resp, err := client.Post(base+"/api/resources/v1/queues", "application/json", bytes.NewBufferString(body))
				if err != nil {
					return // killed
				}
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
}

// TestCrashKeepsChangesAndEventsTogether kills the all-in-one with SIGKILL
// while queues are being created, several times, and checks after a restart
// that every stored queue has exactly one rm.queue.created event in the stream
// and that no event speaks of a queue that was not stored.
func TestCrashKeepsChangesAndEventsTogether(t *testing.T) {
	dataDir := t.TempDir()
	addrs := [3]string{eventstest.FreeAddr(t), eventstest.FreeAddr(t), eventstest.FreeAddr(t)}
	var next atomic.Int64
	rng := rand.New(rand.NewPCG(7, 7))
	for round := range 3 {
		c := startChild(t, dataDir, addrs)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { createQueues("http://"+c.http, &next, stop); close(done) }()
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		c.kill(t)
		close(stop)
		<-done
		t.Logf("round %d: killed after %d attempts", round, next.Load())
	}

	c := startChild(t, dataDir, addrs)
	ctx := context.Background()
	mc, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + c.mongoAddr + "/"))
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Disconnect(ctx)
	nc, err := nats.Connect("nats://" + c.natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	// The relay runs every 200ms; give it a few rounds to publish what the kills left.
	var problems []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		problems = check(t, mc.Database("rm").Collection("queues"), js)
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

func check(t *testing.T, coll *mongo.Collection, js jetstream.JetStream) []string {
	t.Helper()
	ctx := context.Background()
	var stored []struct {
		ID      string `bson:"_id"`
		Name    string `bson:"name"`
		Outbox  []any  `bson:"_outbox"`
		Deleted bool   `bson:"_deleted"`
	}
	cur, err := coll.Find(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cur.All(ctx, &stored); err != nil {
		t.Fatal(err)
	}
	created := map[string][]events.Event{}
	for _, e := range eventstest.ReadAll(t, js, events.FilterSubject(events.KindQueue, "", "")) {
		if e.Type == events.TypeQueueCreated {
			created[e.ResourceID] = append(created[e.ResourceID], e)
		}
	}
	var problems []string
	names := map[string]bool{}
	crashNames := 0
	for _, q := range stored {
		names[q.ID] = true
		if len(q.Name) > 6 && q.Name[:6] == "crash-" {
			crashNames++
		}
		switch evs := created[q.ID]; {
		case len(evs) == 0:
			problems = append(problems, fmt.Sprintf("queue %s (%s) is stored without a created event (unsent: %d)", q.ID, q.Name, len(q.Outbox)))
		case len(evs) > 1:
			problems = append(problems, fmt.Sprintf("queue %s has %d created events", q.ID, len(evs)))
		}
	}
	for id := range created {
		if !names[id] {
			problems = append(problems, fmt.Sprintf("event for queue %s, which is not stored", id))
		}
	}
	if crashNames == 0 {
		problems = append(problems, "no queue was created before the kills; the test exercised nothing")
	}
	if len(problems) == 0 {
		t.Logf("%d queues stored, each with exactly one created event", len(stored))
	}
	return problems
}

// TestSIGTERMStopsCleanlyAndRestartKeepsData stops the all-in-one with SIGTERM
// (exit status 0, promptly) and checks a restart serves what was stored.
func TestSIGTERMStopsCleanlyAndRestartKeepsData(t *testing.T) {
	dataDir := t.TempDir()
	addrs := [3]string{eventstest.FreeAddr(t), eventstest.FreeAddr(t), eventstest.FreeAddr(t)}
	c := startChild(t, dataDir, addrs)
	resp, err := http.Post("http://"+c.http+"/api/resources/v1/queues", "application/json", bytes.NewBufferString(`{"name":"kept","maximum_allowed_worker_instances":3}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create = %d", resp.StatusCode)
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- c.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, c.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("did not stop within 20s of SIGTERM")
	}

	c = startChild(t, dataDir, addrs)
	resp, err = http.Get("http://" + c.http + "/api/resources/v1/queues/kept")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("queue after restart: %d", resp.StatusCode)
	}
	nc, err := nats.Connect("nats://" + c.natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	n := 0
	for _, e := range eventstest.ReadAll(t, js, "") {
		if e.Type == events.TypeQueueCreated {
			n++
		}
	}
	if n != 3 { // the two built-in queues and "kept", each once across the restart
		t.Errorf("%d queue.created events after restart, want 3", n)
	}
}
