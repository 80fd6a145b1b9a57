package store

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events/eventstest"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// `avxrm store` serves FerretDB on its address and data dir: probe answers,
// and a document written survives a restart on the same directory.
func TestStoreServesAndKeepsData(t *testing.T) {
	addr := eventstest.FreeAddr(t)
	dir := t.TempDir()
	env := map[string]string{"RM_STORE_ADDR": addr, "RM_DATA_DIR": dir}
	cfg, err := Load([]string{"--index-interval=100ms"}, func(k string) string { return env[k] })
	if err != nil || cfg.Addr != addr || cfg.IndexGap != 100*time.Millisecond {
		t.Fatalf("load: %+v %v", cfg, err)
	}
	if _, err := Load(nil, func(k string) string { return map[string]string{"RM_STORE_INDEX_INTERVAL": "-1s"}[k] }); err == nil {
		t.Error("negative interval accepted")
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	serve := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Run(ctx, cfg, log) }()
		deadline := time.Now().Add(60 * time.Second)
		for Probe(context.Background(), addr) != nil {
			if time.Now().After(deadline) {
				t.Fatal("store never answered")
			}
			time.Sleep(50 * time.Millisecond)
		}
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	stop := serve()
	client, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + addr + "/"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := client.Database("rm").Collection("jobs").InsertOne(ctx, bson.D{{Key: "_id", Value: "j1"}}); err != nil {
		t.Fatal(err)
	}
	_ = client.Disconnect(ctx)
	stop()
	if err := Probe(ctx, addr); err == nil || err.Error() != "no store answers at "+addr+" (waited 5s)" {
		t.Fatalf("probe after stop: %v, want that no store answers", err)
	}
	stop = serve()
	defer stop()
	client, err = mongo.Connect(options.Client().ApplyURI("mongodb://" + addr + "/"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = client.Disconnect(ctx) }()
	if n, err := client.Database("rm").Collection("jobs").CountDocuments(ctx, bson.D{}); err != nil || n != 1 {
		t.Errorf("after restart: %d documents, %v", n, err)
	}
}

// --pprof-addr serves Go's profiles beside the store, for finding where its
// CPU goes under load; nothing is served without it.
func TestStoreServesProfilesWhenAsked(t *testing.T) {
	addr, pprofAddr := eventstest.FreeAddr(t), eventstest.FreeAddr(t)
	env := map[string]string{"RM_STORE_ADDR": addr, "RM_DATA_DIR": t.TempDir(), "RM_STORE_PPROF_ADDR": pprofAddr}
	cfg, err := Load(nil, func(k string) string { return env[k] })
	if err != nil || cfg.PprofAddr != pprofAddr {
		t.Fatalf("load: %+v %v", cfg, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for Probe(context.Background(), addr) != nil {
		if time.Now().After(deadline) {
			t.Fatal("store never answered")
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile") {
		t.Errorf("goroutine profile: %d %.200s", resp.StatusCode, body)
	}
}
