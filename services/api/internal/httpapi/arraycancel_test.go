package httpapi

import (
	"context"
	"slices"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events"
)

// The sweep of cancelled arrays finds them (not deleted ones, not others)
// on the embedded store by a partial index of them: the find it sent made
// FerretDB read every array every 30 s.
func TestCancelledArraysFound(t *testing.T) {
	bothWays(t, func(t *testing.T, byIndex bool) {
		mon, scans := mongotest.FindsNotByID(events.JobArraysCollection)
		e := newEnvSeen(t, nil, byIndex, mon)
		var docs []any
		for i, d := range []bson.D{
			{{Key: "cancel_requested", Value: true}},
			{{Key: "cancel_requested", Value: false}},
			{},
			{{Key: "cancel_requested", Value: true}, {Key: "_deleted", Value: true}},
			{{Key: "cancel_requested", Value: true}},
		} {
			docs = append(docs, append(bson.D{{Key: "_id", Value: "arr-" + string(rune('a'+i))}, {Key: "count", Value: 3}}, d...))
		}
		if _, err := e.db.Collection(events.JobArraysCollection).InsertMany(context.Background(), docs); err != nil {
			t.Fatal(err)
		}
		got, err := e.srv.cancelledArrays(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if want := []string{"arr-a", "arr-e"}; !slices.Equal(got, want) {
			t.Errorf("cancelled arrays %v, want %v", got, want)
		}
		if s := scans(); byIndex && len(s) > 0 {
			t.Errorf("the sweep read arrays by another field than _id %d times, first %s", len(s), s[0])
		}
	})
}
