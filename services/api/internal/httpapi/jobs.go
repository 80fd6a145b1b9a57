package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/api/internal/auth"
	"github.com/avxrm/rm/services/api/internal/jobspec"
	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/avxrm/rm/services/api/internal/store"
	"github.com/danielgtaylor/huma/v2"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// The jobs API stores a job with status submitted and announces it; the
// scheduler decides everything after that (pending, admitted, cancelled for a
// job not admitted yet) and the launcher the rest (running, succeeded, failed,
// cancelled for an admitted job). Requests that change a job after submission
// (cancel, cleanup, post controller) only record what was asked, in one
// version-conditioned write with its event, and answer 202.

// JobApplicationRef names what a job runs: a registered application by id, by
// name and version, or inline details.
type JobApplicationRef struct {
	ID                   string            `json:"id,omitempty" maxLength:"127" doc:"a registered application: its id, or name:version, or its name when only one version exists"`
	Name                 string            `json:"name,omitempty" maxLength:"63" pattern:"^[A-Za-z0-9][A-Za-z0-9._-]*$" doc:"with version: a registered application, or the name of an inline one"`
	Version              string            `json:"version,omitempty" maxLength:"63"`
	Image                string            `json:"image,omitempty" maxLength:"512" pattern:"^[A-Za-z0-9\\[][A-Za-z0-9._/:@+\\[\\]-]*$" doc:"inline: the image to run unless an app-runtime-config of the queue says otherwise (a container image reference, as an application's)"`
	EnvironmentVariables map[string]string `json:"environment_variables,omitempty"`
}

// JobBody is what a client submits.
type JobBody struct {
	Name                 string            `json:"name,omitempty" maxLength:"63" pattern:"^[A-Za-z0-9][A-Za-z0-9._-]*$" doc:"defaults to the job's id"`
	QueueID              string            `json:"queue_id" minLength:"1" maxLength:"63" doc:"the queue's id or name"`
	Application          JobApplicationRef `json:"application"`
	WorkerInstances      int               `json:"worker_instances" minimum:"1" maximum:"100000" doc:"admitted all at once with one controller on simulation-controller-queue"`
	EnvironmentVariables map[string]string `json:"environment_variables,omitempty"`
	Command              []string          `json:"command,omitempty" maxItems:"256" doc:"overrides the runtime's command and args, like a Kubernetes container's command; on a queue of a local plugin, or one whose controller's queue (simulation-controller-queue) runs on one, the job, its app-runtime-config or its application must give command or args (422 otherwise)"`
	Args                 []string          `json:"args,omitempty" maxItems:"1024" doc:"overrides the runtime's args (with command: the args of that command)"`
	Priority             int               `json:"priority,omitempty" minimum:"-1000000" maximum:"1000000" doc:"higher first; then submission order"`
	Labels               map[string]string `json:"labels,omitempty"`
	MaxRunSeconds        *int              `json:"max_run_seconds,omitempty" minimum:"1" maximum:"31536000" doc:"wall-clock limit once running: the job fails with reason DeadlineExceeded and its instances are stopped; absent: the queue's scheduling.default_max_run_seconds, else none"`
	MaxRetries           int               `json:"max_retries,omitempty" minimum:"0" maximum:"100" doc:"how many times a failed attempt is retried (same id, attempt+1); default 0"`
	RetryOn              []string          `json:"retry_on,omitempty" maxItems:"2" enum:"failed,lost" doc:"which failures are retried, each named once: failed (an instance exited non-zero), lost (the runtime lost an instance); absent: both"`

	// DependsOn: see deps.go.
	DependsOn []events.JobDependency `json:"depends_on,omitempty" maxItems:"100" doc:"jobs that must meet their condition before this one is admitted; one that no longer can cancels it (DependencyFailed)"`
}

func (b *JobBody) validate() []*problem.FieldError {
	errs := validateEnv("environment_variables", b.EnvironmentVariables)
	errs = append(errs, validateEnv("application.environment_variables", b.Application.EnvironmentVariables)...)
	errs = append(errs, validateImage("application.image", b.Application.Image)...)
	errs = append(errs, validateLabels("labels", b.Labels, 63)...)
	errs = append(errs, validateCommand("command", b.Command)...)
	errs = append(errs, validateArgs("args", b.Args)...)
	errs = append(errs, b.validateSize()...)
	errs = append(errs, validateDependencies("depends_on", b.DependsOn)...)
	errs = append(errs, validateRetryOn("retry_on", b.RetryOn)...)
	a := b.Application
	switch {
	case a.ID != "" && (a.Name != "" || a.Version != "" || a.Image != ""):
		errs = append(errs, problem.Field("application.id", "give either an id or name and version (with an optional inline image), not both"))
	case a.ID == "" && a.Name == "" && a.Image == "":
		errs = append(errs, problem.Field("application", "give an id, a name and version, or an inline image"))
	case a.ID == "" && a.Image == "" && a.Version == "":
		errs = append(errs, problem.Field("application.version", "required to find a registered application by name"))
	}
	return errs
}

// validateRetryOn refuses a kind of failure named twice. (The schema cannot
// say uniqueItems: huma's check of it panics on an item that is an array or
// an object, before the items' own type is checked.)
func validateRetryOn(field string, kinds []string) []*problem.FieldError {
	for i, k := range kinds {
		if slices.Contains(kinds[:i], k) {
			return []*problem.FieldError{problem.Field(field+"["+itoa(i)+"]", "%q is named twice", k)}
		}
	}
	return nil
}

// maxJobSpecBytes bounds what a job carries in every event about it (its
// environment variables, its application's, its labels, command and args,
// as JSON), so
// that no event is larger than 64 KiB whatever the job (docs/API.md).
const maxJobSpecBytes = 48 << 10

// validateSize refuses a job whose maps would make its events too large,
// naming the largest of them.
func (b *JobBody) validateSize() []*problem.FieldError {
	sizes := map[string]int{}
	total := 0
	for field, m := range map[string]any{
		"environment_variables": b.EnvironmentVariables, "application.environment_variables": b.Application.EnvironmentVariables, "labels": b.Labels,
		"command": b.Command, "args": b.Args,
	} {
		raw, _ := json.Marshal(m)
		sizes[field] = len(raw)
		total += len(raw)
	}
	if total <= maxJobSpecBytes {
		return nil
	}
	largest := "environment_variables"
	for f, n := range sizes {
		if n > sizes[largest] {
			largest = f
		}
	}
	return []*problem.FieldError{problem.Field(largest, "environment variables, labels, command and args total %d bytes as JSON; a job may carry at most %d (its events stay under 64 KiB)", total, maxJobSpecBytes)}
}

type createJobInput struct {
	idempotencyParam // served by the idempotency middleware
	Body             JobBody
}

type jobRef struct {
	ID string `path:"id" maxLength:"63" doc:"the job's id"`
}

// jobIfMatch is the input of the DELETEs on a job: If-Match is compared with the job's version.
type jobIfMatch struct {
	ID string `path:"id" maxLength:"63" doc:"the job's id"`
	IfMatchParam
}

type jobOutput struct {
	Status   int
	Location string `header:"Location"`
	ETag     string `header:"ETag"`
	Body     *events.Job
}

type jobAcceptedOutput struct {
	ETag string `header:"ETag"`
	Body *events.Job
}

type listJobsInput struct {
	QueueID string   `query:"queue_id" maxLength:"63" doc:"the queue's id or name; a deleted queue's id still finds its jobs"`
	ArrayID string   `query:"array_id" maxLength:"63" doc:"only the jobs of this job array"`
	Status  string   `query:"status" enum:"submitted,pending,admitted,running,succeeded,failed,cancelled"`
	Label   []string `query:"label,explode" doc:"key=value; repeat for several (all must match)"`
	Owner   string   `query:"owner" maxLength:"256" doc:"the owner's subject or username (owner.subject or owner.username)"`
	Limit   int      `query:"limit" minimum:"1" maximum:"1000" default:"50"`
	Cursor  string   `query:"cursor" maxLength:"128"`
}

type listQueueJobsInput struct {
	QueueID string   `path:"queue_id" maxLength:"63" doc:"the queue's id or name"`
	Status  string   `query:"status" enum:"submitted,pending,admitted,running,succeeded,failed,cancelled"`
	Label   []string `query:"label,explode" doc:"key=value; repeat for several (all must match)"`
	Owner   string   `query:"owner" maxLength:"256" doc:"the owner's subject or username (owner.subject or owner.username)"`
	Limit   int      `query:"limit" minimum:"1" maximum:"1000" default:"50"`
	Cursor  string   `query:"cursor" maxLength:"128"`
}

// JobList is a page of jobs.
type JobList struct {
	Items      []*events.Job `json:"items"`
	NextCursor string        `json:"next_cursor,omitempty"`
}

type jobListOutput struct {
	Body JobList
}

type deleteJobOutput struct{}

// maxJobInstances is how many instances GET /jobs/{id} shows at most.
const maxJobInstances = 1000

func (s *Server) jobKind() store.Kind[*events.Job] {
	return store.Kind[*events.Job]{S: s.opts.Store, Coll: store.Jobs, Name: "job", IDPrefix: "job"}
}

func (s *Server) registerJobs() {
	tags := []string{"Jobs"}
	op := s.op("submit-job", http.MethodPost, BasePath+"/jobs", "Submit a job", tags, http.StatusCreated, http.StatusUnprocessableEntity)
	op.Description = "The job waits with status submitted until the scheduler admits it (all its workers and one controller at once) or says why it is pending."
	huma.Register(s.API, op, s.submitJob)
	huma.Register(s.API, s.op("list-jobs", http.MethodGet, BasePath+"/jobs", "List jobs", tags, http.StatusOK, http.StatusUnprocessableEntity), s.listJobs)
	huma.Register(s.API, s.op("list-queue-jobs", http.MethodGet, BasePath+"/queues/{queue_id}/jobs", "List the jobs of a queue",
		append([]string{"Queues"}, tags...), http.StatusOK, http.StatusNotFound, http.StatusUnprocessableEntity), s.listQueueJobs)
	op = s.op("get-job", http.MethodGet, BasePath+"/jobs/{id}", "Get a job", tags, http.StatusOK, http.StatusNotFound)
	op.Description = "instances holds the first 1,000 instances, with instances_truncated true when there are more: GET /jobs/{id}/instances pages through all of them."
	huma.Register(s.API, op, s.getJob)
	s.registerJobInstances(tags)
	s.registerJobEvents(tags)
	huma.Register(s.API, s.op("delete-job", http.MethodDelete, BasePath+"/jobs/{id}", "Cancel a job, clean it up and remove its record and artifacts",
		tags, http.StatusNoContent, http.StatusNotFound, http.StatusPreconditionFailed), s.deleteJob)
	op = s.op("cancel-job", http.MethodPost, BasePath+"/jobs/{id}/cancel", "Cancel a job", tags, http.StatusAccepted, http.StatusNotFound, http.StatusConflict)
	op.Description = "A job not admitted yet is cancelled by the scheduler; an admitted or running one by the launcher once its instances are stopped (status cancelled when it confirms). Cancelling a job in a final status is a conflict."
	huma.Register(s.API, op, s.cancelJob)
	op = s.op("cleanup-job", http.MethodPost, BasePath+"/jobs/{id}/cleanup", "Stop whatever still runs and release every lease and instance of a job",
		tags, http.StatusAccepted, http.StatusNotFound)
	op.Description = "The job keeps its record; cleaned_at is set once everything is released."
	huma.Register(s.API, op, s.cleanupJob)
	op = s.op("start-post-controller", http.MethodPost, BasePath+"/jobs/{id}/post-controller", "Start the job's post controller",
		tags, http.StatusAccepted, http.StatusNotFound, http.StatusConflict)
	op.Description = "It waits, with a PostControllerAdmitted condition saying why, while post-controller-queue is full."
	huma.Register(s.API, op, s.startPostController)
	huma.Register(s.API, s.op("stop-post-controller", http.MethodDelete, BasePath+"/jobs/{id}/post-controller", "Stop the job's post controller",
		tags, http.StatusAccepted, http.StatusNotFound, http.StatusConflict, http.StatusPreconditionFailed), s.stopPostController)
}

func (s *Server) submitJob(ctx context.Context, in *createJobInput) (*jobOutput, error) {
	if errs := in.Body.validate(); len(errs) > 0 {
		return nil, problem.Invalid(errs...)
	}
	j, err := s.newJob(ctx, &in.Body)
	if err != nil {
		return nil, err
	}
	if err := s.beforeSubmit(ctx, j); err != nil {
		return nil, err
	}
	return createOnce(ctx, func() (*jobOutput, error) {
		if err := s.jobs.Create(ctx, j, events.TypeJobSubmitted); err != nil {
			return nil, jobError(j.ID, err)
		}
		normalizeJob(j)
		j.Instances = []events.Instance{} // none yet
		return &jobOutput{Status: http.StatusCreated, Location: BasePath + "/jobs/" + j.ID, ETag: etag(j.Version), Body: j}, nil
	}, func() (*jobOutput, error) {
		out, err := s.getJob(ctx, &jobRef{ID: j.ID})
		if err != nil {
			return nil, err
		}
		out.Status, out.Location = http.StatusCreated, BasePath+"/jobs/"+j.ID
		return out, nil
	})
}

// newJob resolves the queue, the application and the runtime spec of a
// submission into a job with status submitted. Every reference that does not
// resolve is a 422 naming its field; the queue, the application and the
// dependencies are resolved each on its own, so one answer names every one
// of them that is wrong.
func (s *Server) newJob(ctx context.Context, b *JobBody) (*events.Job, error) {
	var bad []*problem.FieldError
	var q *events.Queue
	ql, err := s.queues.Get(ctx, b.QueueID)
	switch {
	case errors.Is(err, problem.ErrNotFound):
		bad = append(bad, problem.Field("queue_id", "no queue %q", b.QueueID))
	case err != nil:
		return nil, err
	default:
		q = ql.Res
		if lim := q.MaximumAllowedWorkerInstances; lim != nil && *lim == 0 {
			bad = append(bad, problem.Field("worker_instances",
				"queue %s admits no job while its limit (maximum_allowed_worker_instances) is 0; submit once it is raised", q.Name))
		} else if lim != nil && b.WorkerInstances > *lim {
			bad = append(bad, problem.Field("worker_instances",
				"queue %s allows at most %d worker instances, the job asks for %d", q.Name, *lim, b.WorkerInstances))
		}
	}
	app, err := s.resolveJobApplication(ctx, b.Application)
	if bad, err = fieldErrors(bad, err); err != nil {
		return nil, err
	}
	if bad, err = fieldErrors(bad, s.checkDependencies(ctx, "depends_on", b.DependsOn)); err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		return nil, problem.Invalid(bad...)
	}
	var arc *jobspec.RuntimeConfig
	if app != nil {
		if arc, err = s.findJobRuntimeConfig(ctx, q, app.ID); err != nil {
			return nil, err
		}
	}
	sub := jobspec.Submission{
		InlineImage: b.Application.Image, AppEnv: b.Application.EnvironmentVariables, Env: b.EnvironmentVariables,
		Command: b.Command, Args: b.Args,
	}
	rt, err := jobspec.Resolve(q, app, arc, sub)
	if errors.Is(err, jobspec.ErrNoImage) {
		hint, err := s.imageIgnoredOn(ctx, q)
		if err != nil {
			return nil, err
		}
		errs := []*problem.FieldError{problem.Field("application.image",
			"no image: the application has none, the job gives none inline and queue %s has no app-runtime-config for it%s", q.Name, hint)}
		if hint != "" {
			// The image is ignored there: whether it would have anything
			// to run is said now too, not after the image is given.
			sub.InlineImage = "local"
			if rt, err := jobspec.Resolve(q, app, arc, sub); err == nil {
				if msg, err := s.nothingToRunOn(ctx, q, rt); err != nil {
					return nil, err
				} else if msg != "" {
					errs = append(errs, problem.Field("command", "%s", msg))
				}
			}
		}
		return nil, problem.Invalid(errs...)
	}
	if err != nil {
		return nil, err
	}
	if msg, err := s.imageRefusedOn(ctx, q, rt.Image); err != nil {
		return nil, err
	} else if msg != "" {
		return nil, problem.Invalid(problem.Field("application.image", "%s", msg))
	}
	if msg, err := s.nothingToRunOn(ctx, q, rt); err != nil {
		return nil, err
	} else if msg != "" {
		return nil, problem.Invalid(problem.Field("command", "%s", msg))
	}
	if msg, err := s.nothingForTheController(ctx, q, rt); err != nil {
		return nil, err
	} else if msg != "" {
		return nil, problem.Invalid(problem.Field("command", "%s", msg))
	}

	now := s.opts.Now().UTC().Truncate(timePrecision)
	j := &events.Job{
		Meta:                 events.Meta{ID: newID(ctx, "job"), CreatedAt: now, UpdatedAt: now, Version: 1},
		Name:                 b.Name,
		QueueID:              q.ID,
		QueueName:            q.Name,
		WorkerInstances:      b.WorkerInstances,
		EnvironmentVariables: b.EnvironmentVariables,
		Command:              b.Command,
		Args:                 b.Args,
		Priority:             b.Priority,
		Labels:               b.Labels,
		MaxRunSeconds:        b.MaxRunSeconds,
		MaxRetries:           b.MaxRetries,
		RetryOn:              b.RetryOn,
		Attempt:              1,
		DependsOn:            b.DependsOn,
		Status:               events.JobSubmitted,
		Conditions:           []events.Condition{},
		Warnings:             []string{},
		SubmittedAt:          now,
		Runtime:              rt,
	}
	if j.Name == "" {
		j.Name = j.ID // API.md: name defaults to the job's id
	}
	j.Application = events.JobApplication{
		Name: b.Application.Name, Version: b.Application.Version,
		Image: b.Application.Image, EnvironmentVariables: b.Application.EnvironmentVariables,
	}
	if app != nil {
		j.Application.ID, j.Application.Name, j.Application.Version = app.ID, app.Name, app.Version
	}
	return j, nil
}

// resolveJobApplication returns the registered application a submission names,
// or nil for an inline one that names none.
func (s *Server) resolveJobApplication(ctx context.Context, a JobApplicationRef) (*jobspec.Application, error) {
	if a.ID == "" && (a.Name == "" || a.Version == "") {
		return nil, nil // inline, by image only
	}
	app, err := s.opts.Store.JobApplication(ctx, a.ID, a.Name, a.Version)
	if errors.Is(err, problem.ErrNotFound) && a.ID != "" {
		// Like every field that takes an application's id (API.md), this
		// takes name:version, or the name of an application of one version.
		id, rerr := s.resolveApplication(ctx, "application.id", a.ID)
		if rerr != nil {
			return nil, rerr
		}
		app, err = s.opts.Store.JobApplication(ctx, id, "", "")
	}
	switch {
	case errors.Is(err, problem.ErrNotFound) && a.ID == "" && a.Image != "":
		return nil, nil // an inline application that is not registered
	case errors.Is(err, problem.ErrNotFound) && a.ID != "":
		return nil, problem.Invalid(problem.Field("application.id", "no application %q", a.ID))
	case errors.Is(err, problem.ErrNotFound):
		return nil, problem.Invalid(problem.Field("application.name", "no application %q version %q", a.Name, a.Version))
	}
	return app, err
}

// fieldErrors adds to bad the fields a 422 names (err is problem.Invalid's,
// or a problem.FieldError) and returns any other error, to be returned as
// it is.
func fieldErrors(bad []*problem.FieldError, err error) ([]*problem.FieldError, error) {
	var p *problem.Problem
	var f *problem.FieldError
	switch {
	case errors.As(err, &p) && p.Status == http.StatusUnprocessableEntity && len(p.Errors) > 0:
		return append(bad, p.Errors...), nil
	case errors.As(err, &f):
		return append(bad, f), nil
	}
	return bad, err
}

// findJobRuntimeConfig returns the app-runtime-config of (q, appID), nil if none.
func (s *Server) findJobRuntimeConfig(ctx context.Context, q *events.Queue, appID string) (*jobspec.RuntimeConfig, error) {
	return s.opts.Store.JobRuntimeConfig(ctx, q, appID)
}

func (s *Server) getJob(ctx context.Context, in *jobRef) (*jobOutput, error) {
	j, err := s.loadJob(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	items, next, err := s.jobs.Instances(ctx, j, jobdoc.InstanceQuery{Limit: maxJobInstances})
	if err != nil {
		return nil, err
	}
	j.Instances, j.InstancesTruncated = items, next != ""
	normalizeJob(j)
	s.joinEstimates(ctx, j)
	return &jobOutput{Status: http.StatusOK, ETag: etag(j.Version), Body: j}, nil
}

// loadJob reads a job by id, without its instances; jobs have no unique
// name, so only ids are looked up.
func (s *Server) loadJob(ctx context.Context, id string) (*events.Job, error) {
	if !strings.HasPrefix(id, "job-") {
		return nil, fmt.Errorf("job %q: %w", id, problem.ErrNotFound)
	}
	j, err := s.jobs.Get(ctx, id)
	return j, jobError(id, err)
}

// jobError maps the job record's errors about job id to the API's.
func jobError(id string, err error) error {
	switch {
	case errors.Is(err, jobdoc.ErrNotFound):
		// The details read `job "<id>" not found` and `job "<id>" changed
		// concurrently; try again`, in the words of the API's other problems,
		// not the record's own.
		return fmt.Errorf("job %q: %w", id, problem.ErrNotFound)
	case errors.Is(err, jobdoc.ErrConflict):
		return fmt.Errorf("job %q changed concurrently; try again: %w", id, problem.ErrPreconditionFailed)
	}
	return err
}

// normalizeJob makes the always-present lists [] rather than null. A job
// in a list carries instance_counts and no instances.
func normalizeJob(j *events.Job) {
	if j.Conditions == nil {
		j.Conditions = []events.Condition{}
	}
	if j.Warnings == nil {
		j.Warnings = []string{}
	}
	if j.InstanceCounts == nil {
		j.InstanceCounts = events.InstanceCounts{}
	}
	j.Attempt = j.CurrentAttempt()
}

func (s *Server) listJobs(ctx context.Context, in *listJobsInput) (*jobListOutput, error) {
	q := jobQuery{arrayID: in.ArrayID, status: in.Status, labels: in.Label, owner: in.Owner}
	if in.QueueID != "" {
		// As the other lists' filters: a name is resolved to its queue's
		// id, anything else filters as given, so that the jobs of a deleted
		// queue are still found by its id.
		q.queueID = in.QueueID
		l, err := s.queues.Get(ctx, q.queueID)
		switch {
		case err == nil:
			q.queueID = l.Res.ID
		case !isNotFound(err):
			return nil, err
		}
	}
	return s.listJobsWhere(ctx, q, in.Limit, in.Cursor)
}

func (s *Server) listQueueJobs(ctx context.Context, in *listQueueJobsInput) (*jobListOutput, error) {
	l, err := s.queues.Get(ctx, in.QueueID)
	if err != nil {
		return nil, err
	}
	return s.listJobsWhere(ctx, jobQuery{queueID: l.Res.ID, status: in.Status, labels: in.Label, owner: in.Owner}, in.Limit, in.Cursor)
}

// jobQuery is what a job list selects: every field given must match.
type jobQuery struct {
	queueID, arrayID, status string
	labels                   []string // key=value
	owner                    string   // the owner's subject or username
}

func (s *Server) listJobsWhere(ctx context.Context, q jobQuery, limit int, cursor string) (*jobListOutput, error) {
	if err := checkCursor(cursor, "job"); err != nil {
		return nil, err
	}
	filter := bson.D{}
	for _, e := range []bson.E{{Key: "queue_id", Value: q.queueID}, {Key: "array_id", Value: q.arrayID}, {Key: "status", Value: q.status}} {
		if e.Value != "" {
			filter = append(filter, e)
		}
	}
	caller := auth.From(ctx)
	readable, err := s.readableQueues(ctx, caller)
	if err != nil {
		return nil, err
	}
	filter = append(filter, readableFilter(readable, caller.Subject)...)
	var errs []*problem.FieldError
	var all bson.A // one condition per label: the same key twice must not make a duplicate field
	labels := map[string][]string{}
	for _, l := range q.labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" || !labelKey.MatchString(k) {
			errs = append(errs, problem.Field("label", "%q is not key=value with a label key", l))
			continue
		}
		all = append(all, bson.D{{Key: events.LabelField(k), Value: v}})
		labels[k] = append(labels[k], v)
	}
	if len(errs) > 0 {
		return nil, problem.Invalid(errs...)
	}
	if q.owner != "" {
		all = append(all, ownerCondition(q.owner))
	}
	if len(all) > 0 {
		filter = append(filter, bson.E{Key: "$and", Value: all})
	}
	if limit == 0 {
		limit = 50
	}
	var items []*events.Job
	var more bool
	sel := jobSelection{q: q, labels: labels, readable: readable, subject: caller.Subject}
	switch {
	case s.opts.Lookup != nil && q.arrayID != "":
		items, more, err = s.listArrayJobs(ctx, sel, limit, cursor)
	case s.opts.Lookup != nil && q.status != "" && !events.JobFinal(q.status):
		items, more, err = s.listActiveJobs(ctx, sel, limit, cursor)
	case s.opts.Lookup != nil:
		items, more, err = s.listJobsInIDOrder(ctx, sel, limit, cursor)
		if errors.Is(err, errors.ErrUnsupported) { // a store over the wire that predates it
			items, more, err = s.jobKind().List(ctx, filter, cursor, limit)
		}
	default:
		items, more, err = s.jobKind().List(ctx, filter, cursor, limit)
	}
	if err != nil {
		return nil, err
	}
	out := JobList{Items: items}
	if out.Items == nil {
		out.Items = []*events.Job{}
	}
	for _, j := range out.Items {
		normalizeJob(j)
	}
	s.joinEstimates(ctx, out.Items...)
	if more {
		out.NextCursor = items[len(items)-1].ID
	}
	return &jobListOutput{Body: out}, nil
}

// jobSelection is a job list's selection as the indexed lists check it on
// each job they read: q's fields, its labels parsed (key to values), and
// the caller's access (the queues it may read, from readableQueues, nil:
// all; and its own jobs, by subject). It matches what listJobsWhere sends
// the store (TestJobListsByIndex compares the two on every filter,
// TestListJobsByOwner on the access rules).
type jobSelection struct {
	q        jobQuery
	labels   map[string][]string
	readable map[string]bool
	subject  string
}

// selects reports whether the list holds j.
func (sel jobSelection) selects(j *events.Job) bool {
	q := sel.q
	if q.status != "" && j.Status != q.status || q.queueID != "" && j.QueueID != q.queueID || q.arrayID != "" && j.ArrayID != q.arrayID {
		return false
	}
	if sel.readable != nil && !sel.readable[j.QueueID] && (j.Owner == nil || j.Owner.Subject != sel.subject) {
		return false
	}
	for k, vs := range sel.labels {
		for _, v := range vs {
			if got, ok := j.Labels[k]; !ok || got != v {
				return false
			}
		}
	}
	return q.owner == "" || j.Owner != nil && (j.Owner.Subject == q.owner || j.Owner.Username == q.owner)
}

// listActiveJobs is the page of the jobs sel selects, whose status is one
// of a job that has not ended, read by index on the embedded store: the
// _ids of the jobs of that status (jobdoc.ActiveStatus, no job read), then
// from the cursor on as many of those jobs as the page takes
// (indexed.Reader.ScanIDs), as listArrayJobs does. FerretDB would otherwise
// decode every job the store has ever held for each page (a list of the
// running jobs took 1.2 s with 4,000 jobs in the history), and reading
// every job of the status for each page made paging through 20,000 pending
// jobs cost 6 s a page (`avxrm jobs ls` gave up).
func (s *Server) listActiveJobs(ctx context.Context, sel jobSelection, limit int, cursor string) ([]*events.Job, bool, error) {
	ids, err := s.active.IDs(ctx, indexed.Filter{All: sel.conds(), Any: []indexed.Clause{{jobdoc.ActiveStatus(sel.q.status)}}})
	if err != nil {
		return nil, false, fmt.Errorf("list jobs: %w", err)
	}
	return s.pageOfIDs(ctx, sel, limit, cursor, ids)
}

// pageOfIDs is the page of the jobs sel selects among ids, the candidates
// an index gave (some may no longer match), in _id order from the cursor
// on: only as many of them are read as the page takes.
func (s *Server) pageOfIDs(ctx context.Context, sel jobSelection, limit int, cursor string, ids []string) ([]*events.Job, bool, error) {
	slices.Sort(ids)
	ids = slices.DeleteFunc(ids, func(id string) bool { return id <= cursor })
	return sel.page(limit, func(want int, all []indexed.Cond, keep func(bson.Raw) (bool, error)) error {
		return s.active.ScanIDs(ctx, ids, want, all, keep)
	})
}

// listJobsInIDOrder is the page of the jobs sel selects of any status or
// of one that has ended, read in _id order from the cursor on
// (indexed.Reader.Scan) on the embedded store: a page of every job reads
// its limit+1 jobs, a page that the filters select few jobs for the jobs
// from its cursor to its last (by a label, an owner or a queue,
// listByEndedIndex reads their own jobs instead, and of an ended status
// listEndedJobs, unless the store predates them); a find with the cursor
// and a sort by _id decoded every job the store holds for each page (23 s
// for `avxrm jobs ls -A` with 2,005 jobs stored, docs/benchmarks.md). An
// error wrapping errors.ErrUnsupported: the store does not read _ids in
// order (one over the wire that predates it).
func (s *Server) listJobsInIDOrder(ctx context.Context, sel jobSelection, limit int, cursor string) ([]*events.Job, bool, error) {
	if by, ok := sel.leadingIndex(); ok {
		items, more, err := s.listByEndedIndex(ctx, sel, by, limit, cursor)
		if !errors.Is(err, errors.ErrUnsupported) {
			return items, more, err
		}
	}
	if sel.q.status != "" { // one that has ended
		items, more, err := s.listEndedJobs(ctx, sel, limit, cursor)
		if !errors.Is(err, errors.ErrUnsupported) {
			return items, more, err
		}
	}
	return sel.page(limit, func(want int, all []indexed.Cond, keep func(bson.Raw) (bool, error)) error {
		return s.active.Scan(ctx, cursor, want, all, keep)
	})
}

// listEndedJobs is the page of the jobs sel selects of a status that has
// ended, read on the embedded store by the index of the ended jobs' status
// and _id (jobdoc.EndedStatus): their _ids in _id order from the cursor
// on, then those jobs, a batch at a time until the page is full
// (indexed.Reader.ScanWhere). A page of the failed jobs so reads about its
// own jobs; in _id order among all jobs (listJobsInIDOrder) it read every
// job after its cursor: 6–13 s for the page of the 6 failed jobs among
// 20,006, 7–20 ms now (docs/benchmarks.md). An error wrapping
// errors.ErrUnsupported: the store does not read that index (one over the
// wire that predates it).
func (s *Server) listEndedJobs(ctx context.Context, sel jobSelection, limit int, cursor string) ([]*events.Job, bool, error) {
	return sel.page(limit, func(want int, all []indexed.Cond, keep func(bson.Raw) (bool, error)) error {
		return s.active.ScanWhere(ctx, jobdoc.EndedStatus(sel.q.status), cursor, want, all, keep)
	})
}

// leadingIndex is how the field of sel that leads its list on the
// embedded store, when it asks for no status or one that has ended
// (listByEndedIndex), is read: a label (of several, the first key in
// order), else the owner, else the queue; false: none of them.
func (sel jobSelection) leadingIndex() (endedIndex, bool) {
	switch {
	case len(sel.labels) > 0:
		key := slices.Min(slices.Collect(maps.Keys(sel.labels)))
		value := sel.labels[key][0]
		return endedIndex{
			ended: func(statuses ...string) []indexed.Clause {
				return []indexed.Clause{jobdoc.Labelled(key, value, statuses...)}
			},
			active: []indexed.Cond{jobdoc.LabelCond(key, value)},
		}, true
	case sel.q.owner != "":
		return endedIndex{
			ended:  func(statuses ...string) []indexed.Clause { return jobdoc.OwnedEnded(sel.q.owner, statuses...) },
			active: jobdoc.OwnerConds(sel.q.owner),
		}, true
	case sel.q.queueID != "": // sel.conds has it
		return endedIndex{ended: func(statuses ...string) []indexed.Clause {
			return []indexed.Clause{jobdoc.QueueEnded(sel.q.queueID, statuses...)}
		}}, true
	}
	return endedIndex{}, false
}

// endedIndex is how listByEndedIndex finds the jobs of a field's value:
// the ended ones by the clauses ended gives for their statuses (indexes
// of the field, the status and _id), the active ones by theirs with
// sel.conds and one of active (none: sel.conds alone).
type endedIndex struct {
	ended  func(statuses ...string) []indexed.Clause
	active []indexed.Cond
}

// listByEndedIndex is the page of the jobs sel selects, which asks for no
// status or one that has ended, read on the embedded store by indexes of
// one of its fields (by, from leadingIndex): the _ids of the ended jobs of
// the field's value, after the cursor and in _id order, from an index of
// the field, the status and _id that holds the ended jobs (jobdoc.Labelled,
// OwnedEnded, QueueEnded: a job enters it with its final write, and the
// writes of active jobs leave it alone), merged with those of the active
// jobs of that value, from the active jobs' index with the field checked
// on its entries; then those jobs, a batch at a time until the page is
// full (indexed.Reader.ScanWhereOr). A campaign's label, an owner or a
// queue of a few jobs among many so costs those jobs; in _id order among
// all jobs it read every job after the cursor (docs/benchmarks.md). An
// error wrapping errors.ErrUnsupported: the store does not read such an
// index (one over the wire that predates it, or, for a label, one that has
// as many indexes on demand as it makes).
func (s *Server) listByEndedIndex(ctx context.Context, sel jobSelection, by endedIndex, limit int, cursor string) ([]*events.Job, bool, error) {
	statuses := events.JobFinalStatuses()
	var active []string
	if sel.q.status != "" {
		statuses = []string{sel.q.status}
	} else {
		alts := [][]indexed.Cond{nil}
		if len(by.active) > 0 {
			alts = alts[:0]
			for _, c := range by.active {
				alts = append(alts, []indexed.Cond{c})
			}
		}
		for _, alt := range alts {
			ids, err := s.active.IDs(ctx, indexed.Filter{All: append(sel.conds(), alt...),
				Any: []indexed.Clause{{jobdoc.ActiveStatus(events.JobActiveStatuses()...)}}})
			if err != nil {
				return nil, false, fmt.Errorf("list jobs: %w", err)
			}
			active = append(active, ids...)
		}
	}
	return sel.page(limit, func(want int, all []indexed.Cond, keep func(bson.Raw) (bool, error)) error {
		return s.active.ScanWhereOr(ctx, by.ended(statuses...), active, cursor, want, all, keep)
	})
}

// listArrayJobs is the page of the jobs sel selects of one array, read on
// the embedded store by the index its counts are read by (its jobs by
// status, jobdoc.ArrayJobs): their _ids from the cursor on, then as many
// of those jobs as the page takes (indexed.Reader.ScanIDs). A page of an
// array's failed jobs (the web view's link, `jobs resubmit --status
// failed`) so reads those, not the history after its cursor.
func (s *Server) listArrayJobs(ctx context.Context, sel jobSelection, limit int, cursor string) ([]*events.Job, bool, error) {
	statuses := jobdoc.ArrayStatuses()
	if sel.q.status != "" {
		statuses = []string{sel.q.status}
	}
	ids, err := s.active.IDs(ctx, jobdoc.ArrayJobs(sel.q.arrayID, statuses...))
	if err != nil {
		return nil, false, fmt.Errorf("list jobs: %w", err)
	}
	return s.pageOfIDs(ctx, sel, limit, cursor, ids)
}

// conds are the conditions of sel the store can check but its status: not
// deleted, and its queue and array if given.
func (sel jobSelection) conds() []indexed.Cond {
	all := []indexed.Cond{outbox.NotDeletedCond()}
	if sel.q.queueID != "" {
		all = append(all, indexed.Cond{Path: "queue_id", In: []any{sel.q.queueID}})
	}
	if sel.q.arrayID != "" {
		all = append(all, indexed.Cond{Path: "array_id", In: []any{sel.q.arrayID}})
	}
	return all
}

// page is the page of at most limit jobs sel selects of those scan passes
// to keep in _id order, and whether more follow: scan is to pass the
// documents that meet all (sel's fields the store can check) until keep
// has kept want of them.
func (sel jobSelection) page(limit int, scan func(want int, all []indexed.Cond, keep func(bson.Raw) (bool, error)) error) ([]*events.Job, bool, error) {
	all := sel.conds()
	if sel.q.status != "" {
		all = append(all, indexed.Cond{Path: "status", In: []any{sel.q.status}})
	}
	var jobs []*events.Job
	err := scan(limit+1, all, func(d bson.Raw) (bool, error) {
		var j events.Job
		if err := bson.Unmarshal(d, &j); err != nil {
			return false, fmt.Errorf("decode job %s: %w", d.Lookup("_id"), err)
		}
		if !sel.selects(&j) {
			return false, nil
		}
		jobs = append(jobs, &j)
		return true, nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("list jobs: %w", err)
	}
	if len(jobs) > limit {
		return jobs[:limit], true, nil
	}
	return jobs, false, nil
}

// changeJob records a request on job id through the job record's one
// update loop (jobdoc.Update): change returns no events when there is
// nothing to do; an error from change is returned as it is.
func (s *Server) changeJob(ctx context.Context, id string, change jobdoc.Mutator) (*events.Job, error) {
	if !strings.HasPrefix(id, "job-") {
		return nil, fmt.Errorf("job %q: %w", id, problem.ErrNotFound)
	}
	j, err := s.jobs.Update(ctx, id, change)
	if err != nil {
		return nil, jobError(id, err)
	}
	normalizeJob(j)
	return j, nil
}

func (s *Server) cancelJob(ctx context.Context, in *jobRef) (*jobAcceptedOutput, error) {
	j, err := s.changeJob(ctx, in.ID, func(j *events.Job, _ time.Time) ([]string, error) {
		if events.JobFinal(j.Status) {
			return nil, problem.New(http.StatusConflict, fmt.Sprintf("job %q has ended (%s): only a job that has not ended can be cancelled", j.ID, j.Status))
		}
		if j.CancelRequested {
			return nil, nil
		}
		j.CancelRequested = true
		return []string{events.TypeJobCancelRequested}, nil
	})
	if err != nil {
		return nil, err
	}
	return &jobAcceptedOutput{ETag: etag(j.Version), Body: j}, nil
}

func (s *Server) cleanupJob(ctx context.Context, in *jobRef) (*jobAcceptedOutput, error) {
	j, err := s.changeJob(ctx, in.ID, func(j *events.Job, _ time.Time) ([]string, error) {
		return requestCleanup(j, false), nil
	})
	if err != nil {
		return nil, err
	}
	return &jobAcceptedOutput{ETag: etag(j.Version), Body: j}, nil
}

// requestCleanup marks j for cleanup (and cancellation, if anything may still
// run) and returns the events that announce it; none if it was marked already.
// The scheduler cleans a job that holds no instance (not admitted yet, or
// final); the launcher stops the instances of one that does, and reports it
// final, after which the scheduler releases its leases and sets cleaned_at.
// Deleting (deleting) announces only the cancellation; rm.job.deleted follows.
func requestCleanup(j *events.Job, deleting bool) []string {
	var types []string
	if !events.JobFinal(j.Status) && !j.CancelRequested {
		j.CancelRequested = true
		types = append(types, events.TypeJobCancelRequested)
	}
	if j.CleanedAt == nil && !j.CleanupRequested {
		j.CleanupRequested = true
		if !deleting {
			types = append(types, events.TypeJobUpdated)
		}
	}
	return types
}

func (s *Server) deleteJob(ctx context.Context, in *jobIfMatch) (*deleteJobOutput, error) {
	// Artifacts and exports go first (the export feature's removeJobArtifacts):
	// if that fails the job is still there to delete again, rather than
	// leaving files no record points to.
	if l, err := s.loadJob(ctx, in.ID); err != nil {
		return nil, err
	} else if err := checkIfMatch(in.IfMatch, l.Version); err != nil {
		return nil, err
	}
	if err := s.removeJobArtifacts(ctx, in.ID); err != nil {
		return nil, fmt.Errorf("delete artifacts of job %s: %w", in.ID, err)
	}
	// The deletion is announced with cancel-requested first (the launcher
	// stops the instances) and deleted last (the scheduler releases the
	// job's leases; consumers forget the job).
	err := s.jobs.Delete(ctx, in.ID, func(j *events.Job, _ time.Time) ([]string, error) {
		if err := checkIfMatch(in.IfMatch, j.Version); err != nil {
			return nil, err
		}
		return requestCleanup(j, true), nil
	})
	if err != nil {
		return nil, jobError(in.ID, err)
	}
	return &deleteJobOutput{}, nil
}

func (s *Server) startPostController(ctx context.Context, in *jobRef) (*jobAcceptedOutput, error) {
	j, err := s.changeJob(ctx, in.ID, func(j *events.Job, now time.Time) ([]string, error) {
		if j.CleanedAt != nil || j.CleanupRequested {
			return nil, problem.New(http.StatusConflict, fmt.Sprintf("job %q is cleaned up; it can have no post controller", j.ID))
		}
		if pc := j.PostController; pc != nil && pc.Status != events.PostControllerStopped && !pc.StopRequested {
			return nil, nil // one is running or on its way
		}
		j.PostController = &events.PostController{Status: events.PostControllerPending, RequestedAt: now}
		return []string{events.TypeJobUpdated}, nil
	})
	if err != nil {
		return nil, err
	}
	return &jobAcceptedOutput{ETag: etag(j.Version), Body: j}, nil
}

// stopPostController records the stop request. The launcher stops the
// instance and marks the post controller stopped; the scheduler then
// releases its lease.
func (s *Server) stopPostController(ctx context.Context, in *jobIfMatch) (*jobAcceptedOutput, error) {
	j, err := s.changeJob(ctx, in.ID, func(j *events.Job, _ time.Time) ([]string, error) {
		if err := checkIfMatch(in.IfMatch, j.Version); err != nil {
			return nil, err
		}
		pc := j.PostController
		if pc == nil {
			return nil, problem.New(http.StatusConflict, fmt.Sprintf("job %s has no post controller to stop; POST /jobs/%s/post-controller starts one", j.ID, j.ID))
		}
		if pc.Status == events.PostControllerStopped || pc.StopRequested {
			return nil, nil
		}
		pc.StopRequested = true
		return []string{events.TypeJobUpdated}, nil
	})
	if err != nil {
		return nil, err
	}
	return &jobAcceptedOutput{ETag: etag(j.Version), Body: j}, nil
}
