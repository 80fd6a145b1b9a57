package events

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Start estimates. The scheduler, which knows the order in which it will
// consider the pending jobs, keeps one document per queue in collection
// EstimatesCollection, rewritten only when the order, a basis or an
// estimate changes; the API joins it into the pending jobs it returns. So
// no pending job is written for its estimate.
const EstimatesCollection = "queue_estimates"

// Estimate bases: what the estimated start of a pending job rests on, the
// least certain source among the run times it counts on.
const (
	// BasisFreeCapacity: the job fits now (it is admitted at the next pass).
	BasisFreeCapacity = "free_capacity"
	// BasisMaxRunSeconds: the max_run_seconds of the jobs it waits for.
	BasisMaxRunSeconds = "max_run_seconds"
	// BasisDefaultMaxRunSeconds: the queue's scheduling.default_max_run_seconds.
	BasisDefaultMaxRunSeconds = "default_max_run_seconds"
	// BasisMedianRunTime: the median run time of the application's last 20
	// finished jobs on the queue.
	BasisMedianRunTime = "median_run_time"
	// BasisUnknown: some job it waits for has no known run time (or the
	// queue is too long to simulate); estimated_start_at is null.
	BasisUnknown = "unknown"
)

// QueueEstimates is the scheduler's snapshot of one queue's pending jobs.
type QueueEstimates struct {
	QueueID    string        `bson:"_id"`
	Epoch      int64         `bson:"epoch"`
	ComputedAt time.Time     `bson:"computed_at"`
	Jobs       []JobEstimate `bson:"jobs"`
}

// JobEstimate is one pending job in its queue's snapshot, in order.
type JobEstimate struct {
	JobID    string     `bson:"job_id"`
	Position int        `bson:"position"` // 1-based
	StartAt  *time.Time `bson:"start_at,omitempty"`
	Basis    string     `bson:"basis"`
}

// ReadQueueEstimates reads the snapshot of queue queueID from db (one read
// by _id) as its jobs by id; no snapshot yet is an empty one. The API's
// pending jobs and the web view's queue page both read it here.
func ReadQueueEstimates(ctx context.Context, db *mongo.Database, queueID string) (map[string]JobEstimate, error) {
	var doc QueueEstimates
	err := db.Collection(EstimatesCollection).FindOne(ctx, bson.D{{Key: "_id", Value: queueID}}).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return map[string]JobEstimate{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := make(map[string]JobEstimate, len(doc.Jobs))
	for _, e := range doc.Jobs {
		out[e.JobID] = e
	}
	return out, nil
}

// EstimatedTime is a job's estimated_start_at: left out of the JSON unless
// Present (the job is pending), then the time, or null when not Known.
type EstimatedTime struct {
	At      time.Time
	Known   bool
	Present bool
}

// IsZero makes json's omitzero leave out an estimate that is not Present.
func (t EstimatedTime) IsZero() bool { return !t.Present }

// MarshalJSON writes the time, or null when it is not known.
func (t EstimatedTime) MarshalJSON() ([]byte, error) {
	if !t.Known {
		return []byte("null"), nil
	}
	return json.Marshal(t.At)
}

// UnmarshalJSON reads the time or null.
func (t *EstimatedTime) UnmarshalJSON(b []byte) error {
	*t = EstimatedTime{Present: true}
	if string(b) == "null" {
		return nil
	}
	t.Known = true
	return json.Unmarshal(b, &t.At)
}

// UnmarshalText reads an RFC 3339 time; it also makes schema generators
// describe the field as a string.
func (t *EstimatedTime) UnmarshalText(b []byte) error {
	*t = EstimatedTime{Present: true, Known: true}
	return t.At.UnmarshalText(b)
}

// Set makes t present, with start if it is not nil.
func (t *EstimatedTime) Set(start *time.Time) {
	*t = EstimatedTime{Present: true}
	if start != nil {
		t.At, t.Known = start.UTC(), true
	}
}
