package events

import "time"

// Job statuses.
const (
	JobSubmitted = "submitted"
	JobPending   = "pending"
	JobAdmitted  = "admitted"
	JobRunning   = "running"
	JobSucceeded = "succeeded"
	JobFailed    = "failed"
	JobCancelled = "cancelled"
)

// JobFinal reports whether a job status is final (leases released, nothing runs).
func JobFinal(status string) bool {
	return status == JobSucceeded || status == JobFailed || status == JobCancelled
}

// JobFinalStatuses returns the statuses JobFinal holds for, in the order
// the API lists them.
func JobFinalStatuses() []string { return []string{JobSucceeded, JobFailed, JobCancelled} }

// JobActiveStatuses returns the statuses of a job that has not ended, in
// the order it passes them.
func JobActiveStatuses() []string { return []string{JobSubmitted, JobPending, JobAdmitted, JobRunning} }

// AllFinal reports whether counts (jobs by status, as a job array's)
// hold no job that has not ended; a deleted job counts in no status.
func AllFinal(counts map[string]int) bool {
	for status, n := range counts {
		if n > 0 && !JobFinal(status) {
			return false
		}
	}
	return true
}

// Instance roles.
const (
	RoleController     = "controller"
	RoleWorker         = "worker"
	RolePostController = "post-controller"
)

// Instance statuses.
const (
	InstancePending   = "pending"
	InstanceRunning   = "running"
	InstanceSucceeded = "succeeded"
	InstanceFailed    = "failed"
	InstanceStopped   = "stopped"
)

// Post controller statuses: the API writes pending (a start request), the
// scheduler admitted, the launcher running and stopped (see docs/job-record.md).
const (
	PostControllerPending  = "pending"
	PostControllerAdmitted = "admitted"
	PostControllerRunning  = "running"
	PostControllerStopped  = "stopped"
)

// InstanceCounts counts a job's instances per role, then per status:
// {"worker": {"running": 5, "succeeded": 3}, "controller": {"running": 1}}.
type InstanceCounts map[string]map[string]int

// Condition is a Kubernetes-style condition.
type Condition struct {
	Type               string    `json:"type" bson:"type" doc:"e.g. Admitted, Running, Failed"`
	Status             string    `json:"status" bson:"status" enum:"True,False,Unknown"`
	Reason             string    `json:"reason,omitempty" bson:"reason,omitempty"`
	Message            string    `json:"message,omitempty" bson:"message,omitempty"`
	LastTransitionTime time.Time `json:"last_transition_time" bson:"last_transition_time"`
}

// JobApplication says what a job runs: a registered application (by id, or
// name + version) or inline details. The server fills in what it resolved.
type JobApplication struct {
	ID                   string            `json:"id,omitempty" bson:"id,omitempty"`
	Name                 string            `json:"name,omitempty" bson:"name,omitempty"`
	Version              string            `json:"version,omitempty" bson:"version,omitempty"`
	Image                string            `json:"image,omitempty" bson:"image,omitempty"`
	EnvironmentVariables map[string]string `json:"environment_variables,omitempty" bson:"environment_variables,omitempty"`
}

// Instance is one controller, worker or post controller of a job.
type Instance struct {
	Role       string     `json:"role" bson:"role" enum:"controller,worker,post-controller"`
	Index      int        `json:"index" bson:"index"`
	Status     string     `json:"status" bson:"status"`
	ExitCode   *int       `json:"exit_code,omitempty" bson:"exit_code,omitempty"`
	Message    string     `json:"message,omitempty" bson:"message,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty" bson:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty" bson:"finished_at,omitempty"`
}

// RuntimeSpec is what every instance of a job is started from, resolved at
// submission (app-runtime-config, then inline application, then application).
// Stored, not shown: the API returns the application as submitted.
type RuntimeSpec struct {
	Image                string            `json:"-" bson:"image"`
	Command              []string          `json:"-" bson:"command,omitempty"`
	Args                 []string          `json:"-" bson:"args,omitempty"`
	WorkingDirectory     string            `json:"-" bson:"working_directory,omitempty"`
	EnvironmentVariables map[string]string `json:"-" bson:"environment_variables,omitempty" doc:"queue, then application, then app-runtime-config, then job; later wins"`
	ResourceLimits       *ResourceLimits   `json:"-" bson:"resource_limits,omitempty"`
	// JobToken is given to every instance as RM_JOB_TOKEN while auth is on:
	// it lets workers upload the job's artifacts. Never in responses or events.
	JobToken string `json:"-" bson:"job_token,omitempty"`
}

// JobOwner is who submitted a job, from the submitter's token; absent on
// jobs submitted while auth was off.
type JobOwner struct {
	Subject  string `json:"subject" bson:"subject"`
	Username string `json:"username" bson:"username" doc:"the token's preferred_username"`
}

// PostController is the on-demand post controller of a job.
type PostController struct {
	Status      string     `json:"status" bson:"status" doc:"pending, admitted, running, stopped"`
	RequestedAt time.Time  `json:"requested_at" bson:"requested_at"`
	StartedAt   *time.Time `json:"started_at,omitempty" bson:"started_at,omitempty"`
	StoppedAt   *time.Time `json:"stopped_at,omitempty" bson:"stopped_at,omitempty"`
	// StopRequested is the user's request to stop it (the API's); the
	// launcher carries it out and sets status stopped.
	StopRequested bool `json:"stop_requested,omitempty" bson:"stop_requested,omitempty"`
}

// Retry kinds of Job.RetryOn.
const (
	RetryOnFailed = "failed"
	RetryOnLost   = "lost"
)

// JobAttempt is the outcome of one attempt of a job that was retried.
type JobAttempt struct {
	Attempt    int        `json:"attempt" bson:"attempt"`
	Outcome    string     `json:"outcome" bson:"outcome" enum:"failed,lost" doc:"why the attempt ended"`
	Reason     string     `json:"reason,omitempty" bson:"reason,omitempty" doc:"e.g. InstanceFailed, InstanceLost"`
	Message    string     `json:"message,omitempty" bson:"message,omitempty" doc:"e.g. worker 3 exited with code 2"`
	AdmittedAt *time.Time `json:"admitted_at,omitempty" bson:"admitted_at,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty" bson:"started_at,omitempty"`
	FinishedAt time.Time  `json:"finished_at" bson:"finished_at"`
}

// CurrentAttempt is j's attempt, 1-based (a stored 0 is 1).
func (j *Job) CurrentAttempt() int { return max(j.Attempt, 1) }

// Dependency conditions: succeeded waits for the job to succeed; finished
// for it to end whatever its outcome.
const (
	DependencySucceeded = "succeeded"
	DependencyFinished  = "finished"
)

// JobDependency is one job a job waits for, and what it waits for.
type JobDependency struct {
	JobID     string `json:"job_id" bson:"job_id" minLength:"1" maxLength:"63" doc:"the id of an existing job"`
	Condition string `json:"condition" bson:"condition" enum:"succeeded,finished" doc:"succeeded: the job must succeed (else this one is cancelled with DependencyFailed); finished: it must end, whatever its outcome"`
}

// Job asks for WorkerInstances workers on its queue plus one controller on
// simulation-controller-queue, admitted all at once or not at all.
type Job struct {
	Meta                 `bson:",inline"`
	Name                 string            `json:"name" bson:"name"`
	QueueID              string            `json:"queue_id" bson:"queue_id"`
	QueueName            string            `json:"queue_name" bson:"queue_name" readOnly:"true"`
	Application          JobApplication    `json:"application" bson:"application"`
	WorkerInstances      int               `json:"worker_instances" bson:"worker_instances"`
	EnvironmentVariables map[string]string `json:"environment_variables,omitempty" bson:"environment_variables,omitempty"`
	Command              []string          `json:"command,omitempty" bson:"command,omitempty" doc:"overrides the runtime's command (and its args)"`
	Args                 []string          `json:"args,omitempty" bson:"args,omitempty" doc:"overrides the runtime's args"`
	Priority             int               `json:"priority" bson:"priority"`
	Labels               Labels            `json:"labels,omitempty" bson:"labels,omitempty" doc:"Kubernetes-style keys"`
	Owner                *JobOwner         `json:"owner,omitempty" bson:"owner,omitempty" readOnly:"true"`
	// MaxRunSeconds is the job's wall-clock limit once running; nil: the
	// queue's scheduling.default_max_run_seconds, else none.
	MaxRunSeconds *int `json:"max_run_seconds,omitempty" bson:"max_run_seconds,omitempty" minimum:"1" maximum:"31536000" doc:"fails with reason DeadlineExceeded when running longer; absent: the queue's scheduling.default_max_run_seconds"`
	// MaxRetries is how many times a failed attempt is retried (RetryOn).
	MaxRetries int `json:"max_retries,omitempty" bson:"max_retries,omitempty" minimum:"0" maximum:"100" doc:"retries after a failed attempt; default 0"`
	// RetryOn says which failures are retried: failed (an instance exited
	// non-zero), lost (the runtime lost an instance). Empty: both.
	RetryOn []string `json:"retry_on,omitempty" bson:"retry_on,omitempty" maxItems:"2" uniqueItems:"true" enum:"failed,lost" doc:"failures that are retried; absent: failed and lost"`
	// DependsOn: the job is not admitted before each of these jobs has met
	// its condition, and is cancelled (DependencyFailed) when one no longer can.
	DependsOn []JobDependency `json:"depends_on,omitempty" bson:"depends_on,omitempty" maxItems:"100"`
	// ArrayID and ArrayIndex place a job in its job array (POST /job-arrays).
	ArrayID    string `json:"array_id,omitempty" bson:"array_id,omitempty" readOnly:"true"`
	ArrayIndex *int   `json:"array_index,omitempty" bson:"array_index,omitempty" readOnly:"true" doc:"0-based; also RM_ARRAY_INDEX in the environment"`

	Status     string      `json:"status" bson:"status" readOnly:"true" enum:"submitted,pending,admitted,running,succeeded,failed,cancelled"`
	Conditions []Condition `json:"conditions" bson:"conditions" readOnly:"true"`
	Warnings   []string    `json:"warnings" bson:"warnings" readOnly:"true"`
	// Attempt is the current attempt, 1-based; 0 (stored before retries
	// existed, or never retried) reads as 1: see CurrentAttempt.
	Attempt int `json:"attempt" bson:"attempt,omitempty" readOnly:"true" doc:"the current attempt, 1-based"`
	// Attempts are the outcomes of the earlier attempts, oldest first.
	Attempts []JobAttempt `json:"attempts,omitempty" bson:"attempts,omitempty" readOnly:"true" doc:"the outcome of each earlier attempt"`
	// Instances are stored apart from the job (package jobdoc) and never
	// travel in events: GET /jobs/{id} shows at most 1,000 of them,
	// GET /jobs/{id}/instances pages through all.
	Instances          []Instance     `json:"instances,omitzero" bson:"-" readOnly:"true"`
	InstancesTruncated bool           `json:"instances_truncated,omitempty" bson:"-" readOnly:"true" doc:"true when instances shows only the first 1,000"`
	InstanceCounts     InstanceCounts `json:"instance_counts" bson:"instance_counts,omitempty" readOnly:"true" doc:"per role, per status"`
	// InstanceChunks is how many chunk documents hold the instances (jobdoc).
	InstanceChunks int `json:"-" bson:"instance_chunks,omitempty"`
	// InlineInstances are the instances of a job that has few, kept in the
	// job document itself instead of in chunks (jobdoc); never in events.
	InlineInstances []Instance      `json:"-" bson:"instances_inline,omitempty"`
	PostController  *PostController `json:"post_controller,omitempty" bson:"post_controller,omitempty" readOnly:"true"`

	SubmittedAt time.Time  `json:"submitted_at" bson:"submitted_at" readOnly:"true"`
	AdmittedAt  *time.Time `json:"admitted_at,omitempty" bson:"admitted_at,omitempty" readOnly:"true"`
	StartedAt   *time.Time `json:"started_at,omitempty" bson:"started_at,omitempty" readOnly:"true"`
	FinishedAt  *time.Time `json:"finished_at,omitempty" bson:"finished_at,omitempty" readOnly:"true"`
	CleanedAt   *time.Time `json:"cleaned_at,omitempty" bson:"cleaned_at,omitempty" readOnly:"true"`

	// The start estimate of a pending job: not stored on the job but joined
	// on read from its queue's snapshot (QueueEstimates, the scheduler's).
	QueuePosition    *int          `json:"queue_position,omitempty" bson:"-" readOnly:"true" doc:"while pending: 1-based place in the order the scheduler considers the queue's pending jobs"`
	EstimatedStartAt EstimatedTime `json:"estimated_start_at,omitzero" bson:"-" readOnly:"true" nullable:"true" format:"date-time" doc:"while pending: when the job is expected to be admitted; null when unknown"`
	EstimateBasis    string        `json:"estimate_basis,omitempty" bson:"-" readOnly:"true" enum:"free_capacity,max_run_seconds,default_max_run_seconds,median_run_time,unknown" doc:"while pending: the least certain run time the estimate rests on"`

	// CancelRequested is set by the API; the launcher (or the scheduler, for a
	// job not admitted yet) carries it out.
	CancelRequested bool `json:"cancel_requested,omitempty" bson:"cancel_requested,omitempty" readOnly:"true"`
	// CleanupRequested likewise, for POST /jobs/{id}/cleanup.
	CleanupRequested bool `json:"cleanup_requested,omitempty" bson:"cleanup_requested,omitempty" readOnly:"true"`

	Runtime RuntimeSpec `json:"-" bson:"runtime"`
}
