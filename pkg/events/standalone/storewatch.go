package standalone

import (
	"log/slog"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"
)

// storeWatch logs when the MongoDB driver loses a store server and when it
// reaches it again, with how long it was gone: after a store restart this
// says when each service could write again, which the services' own
// errors (one per failed operation) do not.
type storeWatch struct {
	log *slog.Logger

	mu   sync.Mutex
	lost map[string]time.Time // by address: since when it is unknown
}

func newStoreWatch(log *slog.Logger) *storeWatch {
	return &storeWatch{log: log, lost: map[string]time.Time{}}
}

// monitor is the watch as the driver's server monitor.
func (w *storeWatch) monitor() *event.ServerMonitor {
	return &event.ServerMonitor{ServerDescriptionChanged: w.changed}
}

const unknownServer = "Unknown"

func (w *storeWatch) changed(e *event.ServerDescriptionChangedEvent) {
	addr := e.Address.String()
	was, is := e.PreviousDescription.Kind, e.NewDescription.Kind
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case was != unknownServer && is == unknownServer:
		w.lost[addr] = time.Now()
		w.log.Warn("store server unreachable", "addr", addr, "was", was)
	case was == unknownServer && is != unknownServer:
		since, ok := w.lost[addr]
		if !ok {
			return // the first contact at start
		}
		delete(w.lost, addr)
		w.log.Info("store server reachable again", "addr", addr, "kind", is,
			"after", time.Since(since).Round(time.Millisecond).String())
	}
}
