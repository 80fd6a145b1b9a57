package jobdoc

import (
	"context"
	"fmt"
	"slices"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/outbox"
)

// Array counts are read from the jobs, by index, whenever an array is read:
// nothing is stored for them, so a job's writer makes one write per change
// (its job's) and the counts cannot drift from the jobs. Each status is
// counted by the index on (array_id, status): on MongoDB the server counts
// from it (CountDocuments); on the embedded store the Reader's Lookup finds
// the matching _ids in its SQLite index and reads no job. The failed jobs
// (few, as a rule) are then read by _id for their array_index.

// arrayStatuses are the statuses an array's jobs are counted under.
var arrayStatuses = []string{events.JobSubmitted, events.JobPending, events.JobAdmitted, events.JobRunning,
	events.JobSucceeded, events.JobFailed, events.JobCancelled}

// ArrayStatuses returns the statuses an array's jobs are counted under:
// every status a job has.
func ArrayStatuses() []string { return slices.Clone(arrayStatuses) }

// ArrayJobs is the filter of the live jobs of array id in the given statuses.
func ArrayJobs(id string, statuses ...string) indexed.Filter {
	in := make([]any, len(statuses))
	for i, st := range statuses {
		in[i] = st
	}
	return indexed.Filter{
		All: []indexed.Cond{outbox.NotDeletedCond()},
		Any: []indexed.Clause{{InArray(id), {Path: "status", In: in}}},
	}
}

// CountArray reads how many live jobs of array id have each status (no
// zeros) and the array_index of each failed one, ascending, through r, a
// Reader of the jobs collection. size is the array's count of jobs.
//
// Each status is counted on its own, in the order jobs go through them, so
// a job that moves on between two counts is counted twice (it cannot be
// missed, but for a retry moving it back). Counts that add up to more than
// size are read again, up to three times, so that an array's counts do not
// show 2 running and 2 succeeded of 2 jobs.
func CountArray(ctx context.Context, r *indexed.Reader, id string, size int) (map[string]int, []int, error) {
	var counts map[string]int
	for range 3 {
		counts = map[string]int{}
		sum := 0
		for _, st := range arrayStatuses {
			n, err := r.Count(ctx, ArrayJobs(id, st))
			if err != nil {
				return nil, nil, fmt.Errorf("count the %s jobs of array %s: %w", st, id, err)
			}
			if n > 0 {
				counts[st] = n
				sum += n
			}
		}
		if sum <= size {
			break
		}
	}
	failed := []int{}
	if counts[events.JobFailed] == 0 {
		return counts, failed, nil
	}
	docs, err := indexed.FindAll[struct {
		Index int `bson:"array_index"`
	}](ctx, r, ArrayJobs(id, events.JobFailed))
	if err != nil {
		return nil, nil, fmt.Errorf("read the failed jobs of array %s: %w", id, err)
	}
	for _, d := range docs {
		failed = append(failed, d.Index)
	}
	slices.Sort(failed)
	return counts, failed, nil
}
