package standalone

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/eventstest"
)

// A service that has written through its outbox stops cleanly (exit 0)
// with the store and NATS both gone, within seconds: the outbox's Close
// gives up after 5 s, and the client's Disconnect, whose ending of the
// sessions waited for the store for the client's 30 s (Kubernetes' grace,
// after which it kills), after disconnectWait.
func TestStopWithStoreAndNATSGone(t *testing.T) {
	mongoURI, _ := mongotest.Start(t)
	var store mongotest.Outage
	ns := eventstest.RunRestartable(t)
	vars := env(map[string]string{"RM_MONGO_URI": store.Forward(t, mongoURI), "RM_NATS_URL": ns.ClientURL(),
		"RM_MONGO_DB": "stop_t", "RM_HTTP_ADDR": eventstest.FreeAddr(t)})
	wrote := make(chan struct{})
	svc := &Service{Name: "rm-t", HTTPAddr: ":0", Run: func(ctx context.Context, e *Env) error {
		coll := e.DB.Collection("things")
		e.Outbox.Register(coll)
		ev, err := events.New("rm.thing.created", "/test", events.NoQueue, "t-1", map[string]string{"id": "t-1"})
		if err != nil {
			return err
		}
		if err := e.Outbox.Insert(ctx, coll, "t-1", 1, bson.D{{Key: "_id", Value: "t-1"}, {Key: "version", Value: 1}}, ev); err != nil {
			return err
		}
		close(wrote)
		<-ctx.Done()
		return nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var log bytes.Buffer
	exited := make(chan int, 1)
	go func() { exited <- Exec(ctx, svc, nil, vars, io.Discard, &log) }()
	select {
	case <-wrote:
	case code := <-exited:
		t.Fatalf("exited %d before writing:\n%s", code, log.String())
	}

	store.Down()
	ns.Stop()
	cancel() // as SIGTERM does
	const bound = 10 * time.Second
	select {
	case code := <-exited:
		if code != 0 {
			t.Errorf("stop with the store and NATS gone: exit %d, want 0:\n%s", code, log.String())
		}
	case <-time.After(bound):
		t.Fatalf("still stopping %v after the stop with the store and NATS gone", bound)
	}
	if want := "outbox not closed; other relays will sweep for it"; !strings.Contains(log.String(), want) {
		t.Errorf("log without %q:\n%s", want, log.String())
	}
}
