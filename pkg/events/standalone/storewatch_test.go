package standalone

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events/eventstest"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// A service's log says when the store went away and when it came back,
// with how long it was gone, and nothing at the first contact.
func TestStoreWatchLogsLossAndReturn(t *testing.T) {
	uri, _ := mongotest.Start(t)
	var logs eventstest.SyncBuffer
	outage := &mongotest.Outage{}
	mc, err := mongo.Connect(options.Client().ApplyURI(uri).SetDialer(outage).SetTimeout(2 * time.Second).
		SetServerMonitor(newStoreWatch(slog.New(slog.NewJSONHandler(&logs, nil))).monitor()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mc.Disconnect(context.Background()) })
	ctx := context.Background()
	if err := mc.Ping(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if s := logs.String(); s != "" {
		t.Fatalf("logged at the first contact: %s", s)
	}

	outage.Down()
	if err := mc.Ping(ctx, nil); err == nil {
		t.Fatal("ping worked while the store was away: the test takes nothing away")
	}
	if s := logs.String(); !strings.Contains(s, `"msg":"store server unreachable"`) {
		t.Fatalf("no loss logged: %s", s)
	}
	outage.Up()
	deadline := time.Now().Add(10 * time.Second)
	for mc.Ping(ctx, nil) != nil && time.Now().Before(deadline) {
	}
	if s := logs.String(); !strings.Contains(s, `"msg":"store server reachable again"`) || !strings.Contains(s, `"after":"`) {
		t.Fatalf("no return logged: %s", s)
	}
	if n := strings.Count(logs.String(), "unreachable"); n != 1 {
		t.Errorf("the loss logged %d times, want once: %s", n, logs.String())
	}
}
