package mongotest

import (
	"context"
	"slices"
	"sync"

	"go.mongodb.org/mongo-driver/v2/event"
)

// FindsNotByID returns a monitor, for a client's options, that records the
// filter of every find on the collections colls that is not by _id alone
// (a filter the embedded store answers by reading the whole collection),
// and a function returning those filters so far.
func FindsNotByID(colls ...string) (*event.CommandMonitor, func() []string) {
	var mu sync.Mutex
	var seen []string
	mon := &event.CommandMonitor{Started: func(_ context.Context, ev *event.CommandStartedEvent) {
		if c, _ := ev.Command.Lookup("find").StringValueOK(); ev.CommandName != "find" || !slices.Contains(colls, c) {
			return
		}
		f, _ := ev.Command.Lookup("filter").DocumentOK()
		if els, _ := f.Elements(); len(els) != 1 || els[0].Key() != "_id" {
			mu.Lock()
			seen = append(seen, f.String())
			mu.Unlock()
		}
	}}
	return mon, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}
