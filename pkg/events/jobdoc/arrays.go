package jobdoc

import (
	"context"
	"fmt"
	"slices"

	"github.com/avxrm/rm/pkg/events"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Array counts. An array's record (events.JobArraysCollection) keeps how
// many of its jobs have each status (counts) and the indexes of its failed
// jobs (failed_indexes), so that reading them costs one lookup by _id
// instead of a pass over every job: FerretDB pushes no other filter down,
// so an aggregation on array_id reads the whole jobs collection. The API
// stores them when it creates the array (every job submitted); every
// writer of a job of an array then moves it from its old status to its new
// one right after storing the job (Update, Delete), with $inc and $push,
// which commute, so the writers need no version of the array between them.
//
// The move is a second write: a writer that dies between the two leaves
// one job counted under its old status, and an error of the move is
// returned after the job is stored (ErrArrayCount). The counts are then
// off by that job until the array is recounted (CountArray).

// ErrArrayCount: the job was stored, its array's counts were not moved.
var ErrArrayCount = fmt.Errorf("jobdoc: job stored but its array's counts not updated")

// moveInArray moves job j of an array from status from to status to in the
// array's counts; from "" for a new job, to "" for a deleted one.
func (s *Store) moveInArray(ctx context.Context, j *events.Job, from, to string) error {
	if j.ArrayID == "" || from == to {
		return nil
	}
	inc := bson.D{}
	if from != "" {
		inc = append(inc, bson.E{Key: "counts." + from, Value: -1})
	}
	if to != "" {
		inc = append(inc, bson.E{Key: "counts." + to, Value: 1})
	}
	update := bson.D{{Key: "$inc", Value: inc}}
	idx := 0
	if j.ArrayIndex != nil {
		idx = *j.ArrayIndex
	}
	switch {
	case to == events.JobFailed:
		update = append(update, bson.E{Key: "$push", Value: bson.D{{Key: "failed_indexes", Value: idx}}})
	case from == events.JobFailed:
		update = append(update, bson.E{Key: "$pull", Value: bson.D{{Key: "failed_indexes", Value: idx}}})
	}
	// {_id} alone: the one filter FerretDB looks up by index.
	if _, err := s.arrays.UpdateOne(ctx, bson.D{{Key: "_id", Value: j.ArrayID}}, update); err != nil {
		return fmt.Errorf("job %s: move from %q to %q in array %s: %w: %w", j.ID, from, to, j.ArrayID, ErrArrayCount, err)
	}
	return nil
}

// CountArray counts the jobs of array id from the jobs themselves (one pass
// over the jobs collection on FerretDB): counts per status and the failed
// indexes, ascending. For arrays stored without counts, and to repair
// counts a writer that died left off.
func (s *Store) CountArray(ctx context.Context, id string) (map[string]int, []int, error) {
	cur, err := s.jobs.Find(ctx, bson.D{{Key: "array_id", Value: id}, {Key: "_deleted", Value: bson.D{{Key: "$ne", Value: true}}}},
		options.Find().SetProjection(bson.D{{Key: "status", Value: 1}, {Key: "array_index", Value: 1}}))
	if err != nil {
		return nil, nil, fmt.Errorf("count the jobs of array %s: %w", id, err)
	}
	var docs []struct {
		Status string `bson:"status"`
		Index  int    `bson:"array_index"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, nil, fmt.Errorf("count the jobs of array %s: %w", id, err)
	}
	counts, failed := map[string]int{}, []int{}
	for _, d := range docs {
		counts[d.Status]++
		if d.Status == events.JobFailed {
			failed = append(failed, d.Index)
		}
	}
	slices.Sort(failed)
	return counts, failed, nil
}
