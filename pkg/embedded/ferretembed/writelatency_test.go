package ferretembed_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// BenchmarkWriteLatency times job-shaped writes one after another (a
// replacement by _id and an insert, alternately) and reports their median,
// 99th and 99.9th percentile and the longest: the stalls that a hand-over's
// writes can meet (docs/benchmarks.md, "Hand-over outliers").
func BenchmarkWriteLatency(b *testing.B) {
	ctx := context.Background()
	coll, _ := storeWithJob(b)
	doc := jobLike(when)
	ds := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		st := time.Now()
		var err error
		if i%2 == 0 {
			doc[0].Value = int64(i/2 + 3)
			_, err = coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "job"}, {Key: "version", Value: int64(i/2 + 2)}}, doc)
		} else {
			_, err = coll.InsertOne(ctx, append(bson.D{{Key: "_id", Value: fmt.Sprint("job-", i)}}, doc...))
		}
		if err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(st))
	}
	b.StopTimer()
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(ds[len(ds)/2]), "p50-ms")
	b.ReportMetric(ms(ds[len(ds)*99/100]), "p99-ms")
	b.ReportMetric(ms(ds[len(ds)*999/1000]), "p99.9-ms")
	b.ReportMetric(ms(ds[len(ds)-1]), "max-ms")
}
