package httpapi

import (
	"context"
	"errors"
	"fmt"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/api/internal/store"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The scheduler's lease ledger, as docs/scheduling.md describes it: one
// document whose leases map a holder (a job id, or "<job id>/post-controller")
// to the instances it holds on each queue. The API only reads it.
const (
	leasesCollection = "leases"
	ledgerID         = "ledger"
)

type ledgerClaim struct {
	Queue string `bson:"queue"`
	Count int    `bson:"count"`
}

type ledgerDoc struct {
	Leases map[string][]ledgerClaim `bson:"leases"`
}

// fillUsage sets the read-only usage of q: allocated instances from the live
// leases (the scheduler's ledger, so it is exactly what admission counts),
// running jobs (admitted or running), and pending jobs and the workers they
// ask for (submitted or pending, not being cancelled).
func (s *Server) fillUsage(ctx context.Context, q *events.Queue) error {
	u := &events.QueueUsage{}
	db := s.opts.Store.DB
	var ledger ledgerDoc
	err := db.Collection(leasesCollection).FindOne(ctx, bson.D{{Key: "_id", Value: ledgerID}}).Decode(&ledger)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return fmt.Errorf("usage of queue %s: read leases: %w", q.ID, err)
	}
	for _, claims := range ledger.Leases {
		for _, c := range claims {
			if c.Queue == q.ID {
				u.AllocatedWorkerInstances += c.Count
			}
		}
	}
	// One read of the queue's active jobs, counted here: on FerretDB/SQLite
	// every such query decodes the whole jobs collection, so one is half
	// the cost of a count and a find.
	cur, err := db.Collection(store.Jobs).Find(ctx, bson.D{
		{Key: "queue_id", Value: q.ID},
		{Key: "status", Value: bson.D{{Key: "$in", Value: bson.A{events.JobAdmitted, events.JobRunning, events.JobSubmitted, events.JobPending}}}},
		outbox.NotDeleted(),
	}, options.Find().SetProjection(bson.D{{Key: "status", Value: 1}, {Key: "worker_instances", Value: 1}, {Key: "cancel_requested", Value: 1}}))
	if err != nil {
		return fmt.Errorf("usage of queue %s: active jobs: %w", q.ID, err)
	}
	var active []struct {
		Status          string `bson:"status"`
		WorkerInstances int    `bson:"worker_instances"`
		CancelRequested bool   `bson:"cancel_requested"`
	}
	if err := cur.All(ctx, &active); err != nil {
		return fmt.Errorf("usage of queue %s: active jobs: %w", q.ID, err)
	}
	for _, j := range active {
		switch {
		case j.Status == events.JobAdmitted || j.Status == events.JobRunning:
			u.RunningJobs++
		case !j.CancelRequested:
			u.PendingJobs++
			u.PendingWorkerInstances += j.WorkerInstances
		}
	}
	q.Usage = u
	return nil
}
