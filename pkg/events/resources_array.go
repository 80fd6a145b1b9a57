package events

// JobArraysCollection holds the job arrays (POST /job-arrays). An array is
// written once, by the API, when it is created (and again when its cancel
// is asked); its jobs carry array_id and array_index, and the scheduler
// reads an array's max_parallel from here. Its counts are read from its
// jobs by index when it is read (jobdoc.CountArray).
const JobArraysCollection = "job_arrays"

// JobArray is count jobs made from one job body, of which at most
// MaxParallel are admitted at once.
type JobArray struct {
	Meta            `bson:",inline"`
	Name            string    `json:"name" bson:"name" readOnly:"true" doc:"the jobs are named <name>-<index>"`
	QueueID         string    `json:"queue_id" bson:"queue_id" readOnly:"true"`
	Count           int       `json:"count" bson:"count" readOnly:"true"`
	MaxParallel     int       `json:"max_parallel" bson:"max_parallel" readOnly:"true"`
	Owner           *JobOwner `json:"owner,omitempty" bson:"owner,omitempty" readOnly:"true"`
	CancelRequested bool      `json:"cancel_requested,omitempty" bson:"cancel_requested,omitempty" readOnly:"true"`
	// Counts and FailedIndexes are read from its jobs by index when the
	// array is read (jobdoc.CountArray); they are not stored.
	Counts        map[string]int `json:"counts" bson:"-" readOnly:"true" doc:"how many of its jobs have each status"`
	FailedIndexes []int          `json:"failed_indexes" bson:"-" readOnly:"true" doc:"array_index of each failed job, ascending"`
}
