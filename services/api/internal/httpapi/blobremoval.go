package httpapi

import (
	"context"
	"sync"
	"time"

	"github.com/avxrm/rm/pkg/blob"
)

// blobRemovalTimeout bounds the removal of one blob in the background: a
// file of the 1 GiB upload limit is about a thousand chunk writes.
const blobRemovalTimeout = 10 * time.Minute

// blobRemovals removes the bytes of deleted artifacts and scenario exports
// after the answer, one blob at a time. pkg/blob removes a file a 1 MiB
// chunk at a time (FerretDB answers only a filter on one _id without a
// scan), some 50 ms a chunk on the embedded store: a job's GiBs of
// artifacts and zips took minutes, far longer than a client waits, and a
// client that gave up cancelled the removal half-way, the job still there.
// So DELETE removes the records (and announces the exports' deletion) and
// answers; the bytes follow here. A blob this misses (a crash, a store
// error) has no record pointing to it, and the export service's orphan
// sweep removes it.
type blobRemovals struct {
	mu      sync.Mutex
	queue   []queuedBlob
	running bool
	// pending counts the blobs queued and not yet removed (tests wait on it).
	pending sync.WaitGroup
	// before, set by tests only, runs before each blob is removed.
	before func(bucket, id string)
}

type queuedBlob struct{ bucket, id string }

// removeBlobsLater queues blobs ids of bucket for removal in the background.
func (s *Server) removeBlobsLater(bucket string, ids ...string) {
	r := &s.blobRemovals
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		if id == "" {
			continue
		}
		r.pending.Add(1)
		r.queue = append(r.queue, queuedBlob{bucket, id})
	}
	if r.running || len(r.queue) == 0 {
		return
	}
	r.running = true
	go s.removeQueuedBlobs()
}

func (s *Server) removeQueuedBlobs() {
	r := &s.blobRemovals
	for {
		r.mu.Lock()
		if len(r.queue) == 0 {
			r.running = false
			r.mu.Unlock()
			return
		}
		b := r.queue[0]
		r.queue = r.queue[1:]
		before := r.before
		r.mu.Unlock()
		if before != nil {
			before(b.bucket, b.id)
		}
		ctx, cancel := context.WithTimeout(context.Background(), blobRemovalTimeout)
		err := blob.NewBucket(s.opts.Store.DB, b.bucket, 0).Delete(ctx, b.id)
		cancel()
		if err != nil {
			s.opts.Logger.Warn("removing the bytes of a deleted file; the export service's orphan sweep removes what is left",
				"bucket", b.bucket, "blob", b.id, "err", err)
		}
		r.pending.Done()
	}
}
