package api_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// benchClients is the number of concurrent clients of the benchmarks.
const benchClients = 32

// BenchmarkQueueAPI measures GET /queues/{id} and POST /queues through the
// whole stack: HTTP on loopback, the API, FerretDB/SQLite with the _id index
// remedy, NATS JetStream for the events of creates, at 32 concurrent clients.
// It reports requests per second and the 99th percentile latency.
//
//	go test -run '^$' -bench BenchmarkQueueAPI -benchtime 3000x .
func BenchmarkQueueAPI(b *testing.B) {
	e := startEnv(b)
	ctx := context.Background()
	names, err := e.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range names {
		if err := e.ferret.EnsureIDIndex(ctx, e.db.Name(), c); err != nil {
			b.Fatal(err)
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchClients * 2, MaxConnsPerHost: benchClients * 2}}
	// Some queues so that a lookup is not in a one-document collection.
	var ids []string
	for i := range 200 {
		ids = append(ids, e.create("/queues", queueBody(fmt.Sprintf("seed-%03d", i))).str("id"))
	}

	b.Run("GET /queues/{id}", func(b *testing.B) {
		runClients(b, func(i int) (*http.Request, int) {
			req, _ := http.NewRequest(http.MethodGet, e.base+v1+"/queues/"+ids[i%len(ids)], nil)
			return req, http.StatusOK
		}, client)
	})
	var n atomic.Int64
	b.Run("POST /queues", func(b *testing.B) {
		runClients(b, func(int) (*http.Request, int) {
			body := fmt.Sprintf(`{"name":"bench-%d","maximum_allowed_worker_instances":10}`, n.Add(1))
			req, _ := http.NewRequest(http.MethodPost, e.base+v1+"/queues", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			return req, http.StatusCreated
		}, client)
	})
}

// runClients sends b.N requests from benchClients goroutines and reports
// req/s and p99 latency.
func runClients(b *testing.B, next func(i int) (*http.Request, int), client *http.Client) {
	lat := make([]time.Duration, b.N)
	var idx atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range benchClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(idx.Add(1)) - 1
				if i >= b.N {
					return
				}
				req, want := next(i)
				t0 := time.Now()
				res, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				var sink [512]byte
				for {
					if _, err := res.Body.Read(sink[:]); err != nil {
						break
					}
				}
				res.Body.Close()
				lat[i] = time.Since(t0)
				if res.StatusCode != want {
					b.Errorf("%s %s = %d", req.Method, req.URL.Path, res.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	p99 := lat[min(len(lat)-1, len(lat)*99/100)]
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
}
