package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/elect"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
)

// composeNATSPasswords are the variables compose/nats.conf reads.
var composeNATSPasswords = map[string]string{
	"api": "RM_NATS_API_PASSWORD", "scheduler": "RM_NATS_SCHEDULER_PASSWORD", "launcher": "RM_NATS_LAUNCHER_PASSWORD",
	"export": "RM_NATS_EXPORT_PASSWORD", "client": "RM_NATS_CLIENT_PASSWORD",
}

// TestComposeNATSPermissions starts a real NATS server with compose/nats.conf
// and checks that each service's user can do what that service does with
// NATS (the same calls: pkg/events' streams, publisher, durable consumers
// with dead letters, pkg/events/elect, ordered consumers, log requests) and
// is refused what it does not need; anonymous clients are refused.
func TestComposeNATSPermissions(t *testing.T) {
	creds := map[string]natsCred{}
	for user, env := range composeNATSPasswords {
		pw := "pw-" + user
		t.Setenv(env, pw)
		creds[user] = natsCred{user, pw}
	}
	checkNATSPermissions(t, "compose/nats.conf", creds)
}

type natsCred struct{ user, password string }

// startNATS runs the server of conf on a free port with JetStream in a
// temporary directory and returns its URL.
func startNATS(t *testing.T, conf string) string {
	t.Helper()
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("%s: %v", conf, err)
	}
	opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", -1, 0
	opts.StoreDir = t.TempDir()
	opts.NoSigs, opts.NoLog = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s.ClientURL()
}

// natsClient is one user's connection and the permission errors the server sent it.
type natsClient struct {
	t      *testing.T
	name   string
	nc     *nats.Conn
	js     jetstream.JetStream
	mu     sync.Mutex
	denied []string
}

func connectAs(t *testing.T, url, name string, c natsCred) *natsClient {
	t.Helper()
	cl := &natsClient{t: t, name: name}
	nc, err := nats.Connect(url, nats.UserInfo(c.user, c.password), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		cl.mu.Lock()
		cl.denied = append(cl.denied, err.Error())
		cl.mu.Unlock()
	}))
	if err != nil {
		t.Fatalf("%s: connect as %s: %v", name, c.user, err)
	}
	t.Cleanup(nc.Close)
	cl.nc = nc
	cl.js, _ = jetstream.New(nc)
	return cl
}

// ok fails the test if err is not nil or the server refused anything so far.
func (c *natsClient) ok(what string, err error) {
	c.t.Helper()
	_ = c.nc.Flush()
	time.Sleep(50 * time.Millisecond)
	c.mu.Lock()
	denied := c.denied
	c.denied = nil
	c.mu.Unlock()
	if err != nil || len(denied) > 0 {
		c.t.Errorf("%s: %s: %v %v", c.name, what, err, denied)
	}
}

// refused publishes to subject and expects the server to refuse it.
func (c *natsClient) refused(subject string) {
	c.t.Helper()
	_ = c.nc.Publish(subject, []byte("{}"))
	_ = c.nc.Flush()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		c.mu.Lock()
		denied := c.denied
		c.denied = nil
		c.mu.Unlock()
		for _, d := range denied {
			if strings.Contains(d, "Permissions Violation for Publish to \""+subject+"\"") {
				return
			}
		}
	}
	c.t.Errorf("%s: publishing to %s was not refused", c.name, subject)
}

func checkNATSPermissions(t *testing.T, conf string, creds map[string]natsCred) {
	url := startNATS(t, conf)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Error("an anonymous client may connect")
	}
	api := connectAs(t, url, "api", creds["api"])
	sched := connectAs(t, url, "scheduler", creds["scheduler"])
	launcher := connectAs(t, url, "launcher", creds["launcher"])
	export := connectAs(t, url, "export", creds["export"])

	// Every service declares the streams at start, whichever comes first.
	for _, c := range []*natsClient{api, sched, launcher, export} {
		c.ok("declare the streams", events.EnsureStreams(ctx, c.js, 0, 1))
	}

	// The elections of the scheduler and the launcher, each in its own bucket.
	for _, x := range []struct {
		c      *natsClient
		bucket string
	}{{sched, "rm_scheduler"}, {launcher, "rm_launcher"}} {
		e, err := elect.New(ctx, x.c.js, elect.Config{Bucket: x.bucket, ID: x.c.name + "-1"}, log)
		x.c.ok("join the election", err)
		if err == nil {
			rev, err := e.Campaign(ctx)
			x.c.ok("win the election", err)
			hctx, hcancel := context.WithTimeout(ctx, 1500*time.Millisecond)
			err = e.Hold(hctx, rev) // renews, then gives up the lead when hctx ends
			hcancel()
			if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				x.c.ok("hold the lead", err)
			}
			x.c.ok("hold the lead", nil)
		}
	}

	// The launcher answers log requests; the API asks.
	sub, err := launcher.nc.QueueSubscribe("rm.launcher.logs.>", "rm-launcher", func(m *nats.Msg) { _ = m.Respond([]byte("log")) })
	launcher.ok("answer log requests", err)
	defer sub.Unsubscribe()
	reply, err := api.nc.Request("rm.launcher.logs.job-1.worker.0", []byte(`{"offset":0}`), 5*time.Second)
	api.ok("request a log", err)
	if err == nil && string(reply.Data) != "log" {
		t.Errorf("log reply %q", reply.Data)
	}

	// The API's outbox publishes events; SSE and the view read them back.
	ev, err := events.New(events.TypeJobSubmitted, "deploy-test", "q-1", "job-1", map[string]any{"id": "job-1"})
	if err != nil {
		t.Fatal(err)
	}
	api.ok("publish an event", events.NewPublisher(api.js).Publish(ctx, ev))
	oc, err := api.js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.FilterSubject(events.KindJob, "", "")}})
	api.ok("ordered consumer", err)
	if err == nil {
		_, err = oc.Next(jetstream.FetchMaxWait(5 * time.Second))
		api.ok("read an event", err)
	}
	st, err := api.js.Stream(ctx, events.StreamName)
	api.ok("stream info", err)
	if err == nil {
		_, err = st.GetLastMsgForSubject(ctx, events.FilterSubject(events.KindJob, "", ""))
		api.ok("last job event", err)
	}

	// Each consumer service takes the event on its durable consumer; the
	// handler gives up on it, so it is dead-lettered (rm.deadletter.<durable>).
	for i, x := range []struct {
		c       *natsClient
		durable string
	}{{sched, "rm-scheduler"}, {launcher, "rm-launcher"}, {export, "scenario-export"}} {
		cctx, ccancel := context.WithCancel(ctx)
		got := make(chan struct{}, 1)
		done := make(chan error, 1)
		go func() {
			done <- events.Consume(cctx, x.c.js, events.ConsumerSpec{Durable: x.durable}, func(context.Context, events.Event) error {
				select {
				case got <- struct{}{}:
				default:
				}
				return events.Permanent(fmt.Errorf("refused by the test"))
			}, log)
		}()
		select {
		case <-got:
		case err := <-done:
			x.c.ok("consume", err)
		case <-time.After(20 * time.Second):
			t.Errorf("%s: no event on %s", x.c.name, x.durable)
		}
		want := uint64(i + 1) // one dead letter per consumer so far
		var n uint64
		for deadline := time.Now().Add(10 * time.Second); n < want && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if ds, err := x.c.js.Stream(ctx, events.DeadLetterStream); err == nil {
				if info, err := ds.Info(ctx); err == nil {
					n = info.State.Msgs
				}
			}
		}
		if n < want {
			t.Errorf("%s: %d dead letters, want %d", x.c.name, n, want)
		}
		// Between two pull requests the consumer briefly has none waiting,
		// so the readiness check is asked until it holds (what a probe's
		// retries do), not once. Within 20 s, as the waits above: 5 s once
		// ran out in make test on a loaded machine (2026-12-03 22:28).
		var attached error
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if attached = events.ConsumerAttached(ctx, x.c.js, x.durable); attached == nil || time.Now().After(deadline) {
				break
			}
		}
		x.c.ok("check its consumer", attached)
		ccancel()
		<-done
		x.c.ok("consume and dead-letter", nil)
	}
	sched.ok("delete its consumer", sched.js.DeleteConsumer(ctx, events.StreamName, "rm-scheduler"))
	if ds, err := api.js.Stream(ctx, events.DeadLetterStream); err == nil {
		if info, err := ds.Info(ctx); err != nil || info.State.Msgs != 3 {
			t.Errorf("dead letters: %v %v, want 3", info, err)
		}
	}

	// What each does not need.
	for _, c := range []*natsClient{api, sched, launcher, export} {
		c.refused("$JS.API.STREAM.DELETE." + events.StreamName)
		c.refused("$JS.API.STREAM.PURGE." + events.StreamName)
		c.refused("other.subject")
	}
	api.refused("rm.deadletter.rm-scheduler")
	api.refused("$KV.rm_scheduler.leader")
	sched.refused("$KV.rm_launcher.leader")
	sched.refused("rm.launcher.logs.job-1.worker.0")
	launcher.refused("$KV.rm_scheduler.leader")
	export.refused("$KV.rm_scheduler.leader")
	export.refused("rm.launcher.logs.job-1.worker.0")
	if _, err := sched.nc.SubscribeSync("rm.launcher.logs.>"); err == nil {
		_ = sched.nc.Flush()
		time.Sleep(100 * time.Millisecond)
		sched.mu.Lock()
		denied := strings.Join(sched.denied, " ")
		sched.denied = nil
		sched.mu.Unlock()
		if !strings.Contains(denied, "Permissions Violation for Subscription") {
			t.Errorf("scheduler may subscribe to log requests")
		}
	}

	// An outside reader follows the events and the elections, nothing more.
	if cr, ok := creds["client"]; ok {
		cl := connectAs(t, url, "client", cr)
		oc, err := cl.js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{})
		cl.ok("ordered consumer", err)
		if err == nil {
			_, err = oc.Next(jetstream.FetchMaxWait(5 * time.Second))
			cl.ok("read an event", err)
		}
		kv, err := cl.js.KeyValue(ctx, "rm_scheduler")
		cl.ok("open the scheduler's election", err)
		if err == nil {
			if _, err := kv.Get(ctx, "leader"); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
				cl.ok("read the leader", err)
			}
			cl.ok("read the leader", nil)
		}
		cl.refused(events.SubjectRoot + ".job.q-1.job-2")
		cl.refused("$KV.rm_scheduler.leader")
		cl.refused("$JS.API.CONSUMER.CREATE.RM_EVENTS.rm-launcher")
		cl.refused("$JS.API.CONSUMER.MSG.NEXT.RM_EVENTS.rm-launcher")
		cl.refused("$JS.API.CONSUMER.DELETE.RM_EVENTS.rm-launcher")
		cl.refused("rm.launcher.logs.job-1.worker.0")
	}
}

// natsPermissions are the users' permissions in conf, by user name.
func natsPermissions(t *testing.T, conf string) map[string]*server.Permissions {
	t.Helper()
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("%s: %v", conf, err)
	}
	out := map[string]*server.Permissions{}
	for _, u := range opts.Users {
		out[u.Username] = u.Permissions
	}
	return out
}

// TestHelmNATSPermissions renders the chart's nats-auth Secret and checks
// that its auth.conf gives each service's user the same permissions as
// compose/nats.conf, and that they work against a real server.
func TestHelmNATSPermissions(t *testing.T) {
	users := map[string]any{}
	creds := map[string]natsCred{}
	for svc, key := range map[string]string{"api": "api", "scheduler": "scheduler", "launcher": "launcher", "export": "scenarioExport", "client": "client"} {
		c := natsCred{"rm-" + svc, "pw \"" + svc + "\" $x"}
		users[key] = map[string]any{"user": c.user, "password": c.password}
		creds[svc] = c
	}
	vals := map[string]any{"mongo": testValues["mongo"], "nats": map[string]any{"url": "nats://nats:4222", "users": users}}
	var conf string
	for _, o := range decode(t, render(t, vals)) {
		if s, ok := o.(*corev1.Secret); ok && s.Name == "rm-nats-auth" {
			conf = s.StringData["auth.conf"]
		}
	}
	if conf == "" {
		t.Fatal("no Secret rm-nats-auth with auth.conf")
	}
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte("jetstream {}\n"+conf), 0o600); err != nil {
		t.Fatal(err)
	}
	for user, env := range composeNATSPasswords {
		t.Setenv(env, "pw-"+user)
	}
	want, got := natsPermissions(t, "compose/nats.conf"), natsPermissions(t, path)
	for svc, c := range creds {
		if !reflect.DeepEqual(got[c.user], want[svc]) {
			t.Errorf("%s: the chart's permissions differ from compose/nats.conf's:\n%+v\n%+v", svc, got[c.user], want[svc])
		}
		if pw := natsPasswords(t, path)[c.user]; pw != c.password {
			t.Errorf("%s: password %q, want %q", svc, pw, c.password)
		}
	}
	checkNATSPermissions(t, path, creds)

	// Without users the chart renders no auth.conf.
	for _, o := range decode(t, render(t, testValues)) {
		if s, ok := o.(*corev1.Secret); ok && s.Name == "rm-nats-auth" {
			t.Error("rm-nats-auth rendered without nats.users")
		}
	}
}

func natsPasswords(t *testing.T, conf string) map[string]string {
	t.Helper()
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, u := range opts.Users {
		out[u.Username] = u.Password
	}
	return out
}
