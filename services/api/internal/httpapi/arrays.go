package httpapi

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"strings"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/services/api/internal/auth"
	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/avxrm/rm/services/api/internal/store"
	"github.com/danielgtaylor/huma/v2"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Job arrays (POST /job-arrays): count jobs from one job body, validated and
// resolved once, stored many per write with their rm.job.submitted events
// (jobdoc.CreateMany). The array record says what was asked (count,
// max_parallel); how many of its jobs have each status is read from the
// jobs by the index on (array_id, status) whenever it is read
// (jobdoc.CountArray), so no job's writer writes it. The scheduler admits at
// most max_parallel of them at once (services/scheduler/arrays.go).
// Cancelling an array asks all its jobs at once (jobdoc.UpdateMatching).

// EnvArrayIndex is the environment variable that tells a job of an array
// its index.
const EnvArrayIndex = "RM_ARRAY_INDEX"

// maxArrayCount bounds the jobs of one array.
const maxArrayCount = 100000

// JobArrayBody is what a client sends to create an array.
type JobArrayBody struct {
	Job         JobBody `json:"job" doc:"the body of every job of the array, as for POST /jobs; the jobs are named <name>-<index> (name defaults to the array's id)"`
	Count       int     `json:"count" minimum:"1" maximum:"100000" doc:"how many jobs"`
	MaxParallel int     `json:"max_parallel,omitempty" minimum:"1" maximum:"100000" doc:"at most this many of them admitted at once; at most count; default count"`
}

type createJobArrayInput struct {
	idempotencyParam // served by the idempotency middleware
	Body             JobArrayBody
}

type jobArrayOutput struct {
	Status   int
	Location string `header:"Location"`
	Body     *events.JobArray
}

type jobArrayRef struct {
	ID string `path:"id" maxLength:"63" doc:"the job array's id"`
}

type listJobArraysInput struct {
	ListParams
}

type jobArrayListOutput struct {
	Body ListBody[*events.JobArray]
}

func (s *Server) jobArrayKind() store.Kind[*events.JobArray] {
	return store.Kind[*events.JobArray]{S: s.opts.Store, Coll: events.JobArraysCollection, Name: "job array", IDPrefix: "arr"}
}

func (s *Server) registerJobArrays() {
	tags := []string{"Job arrays"}
	op := s.op("create-job-array", http.MethodPost, BasePath+"/job-arrays", "Submit an array of jobs", tags, http.StatusCreated, http.StatusUnprocessableEntity)
	op.Description = "Creates count jobs from one job body, named <name>-<index>, each with RM_ARRAY_INDEX (0-based) in its environment and array_id, array_index on the job; at most max_parallel of them are admitted at once."
	huma.Register(s.API, op, s.createJobArray)
	huma.Register(s.API, s.op("list-job-arrays", http.MethodGet, BasePath+"/job-arrays", "List job arrays", tags, http.StatusOK), s.listJobArrays)
	op = s.op("get-job-array", http.MethodGet, BasePath+"/job-arrays/{id}", "Get a job array", tags, http.StatusOK, http.StatusNotFound)
	op.Description = "counts says how many of its jobs have each status; failed_indexes lists the array_index of each failed job. GET /jobs?array_id= lists the jobs."
	huma.Register(s.API, op, s.getJobArray)
	op = s.op("cancel-job-array", http.MethodPost, BasePath+"/job-arrays/{id}/cancel", "Cancel the jobs of an array that have not ended",
		tags, http.StatusAccepted, http.StatusNotFound, http.StatusConflict)
	op.Description = "Records the cancel on the array (cancel_requested) and answers at once; then every job of the array that is not final is asked to cancel, as POST /jobs/{id}/cancel does, in the background (for 10,000 jobs, seconds). The answer shows the counts at that moment. An array whose jobs have all ended: 409, nothing written."
	huma.Register(s.API, op, s.cancelJobArray)
}

// arrayEnded reports whether every job of arr that exists is final, by its
// counts, and says how many ended how ("2 succeeded, 1 failed").
func arrayEnded(arr *events.JobArray) (bool, string) {
	var parts []string
	for _, status := range events.JobFinalStatuses() {
		if n := arr.Counts[status]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, status))
		}
	}
	if !events.AllFinal(arr.Counts) {
		return false, ""
	}
	if len(parts) == 0 {
		return true, "no job left"
	}
	return true, strings.Join(parts, ", ")
}

// prefixed names fields as parts of the array's job body.
func prefixed(errs []*problem.FieldError) []*problem.FieldError {
	for _, e := range errs {
		if e.Field == "" {
			e.Field = "job"
		} else {
			e.Field = "job." + e.Field
		}
	}
	return errs
}

func (s *Server) createJobArray(ctx context.Context, in *createJobArrayInput) (*jobArrayOutput, error) {
	b := in.Body
	if b.MaxParallel == 0 {
		b.MaxParallel = b.Count
	}
	var errs []*problem.FieldError
	if b.MaxParallel > b.Count {
		errs = append(errs, problem.Field("max_parallel", "%d is more than count (%d)", b.MaxParallel, b.Count))
	}
	if _, set := b.Job.EnvironmentVariables[EnvArrayIndex]; set {
		errs = append(errs, problem.Field("job.environment_variables."+EnvArrayIndex, "set by the array for each job"))
	}
	arrID := newID(ctx, "arr")
	name := b.Job.Name
	if name == "" {
		name = arrID
	}
	if last := name + "-" + strconv.Itoa(b.Count-1); len(last) > 63 {
		errs = append(errs, problem.Field("job.name", "the jobs' names %s-<index> would be up to %d characters (%s); a name has at most 63", name, len(last), last))
	}
	// The job body as it is for the job of the largest index, so that the
	// size rule counts RM_ARRAY_INDEX.
	tmpl := b.Job
	tmpl.EnvironmentVariables = maps.Clone(b.Job.EnvironmentVariables)
	if tmpl.EnvironmentVariables == nil {
		tmpl.EnvironmentVariables = map[string]string{}
	}
	tmpl.EnvironmentVariables[EnvArrayIndex] = strconv.Itoa(b.Count - 1)
	errs = append(errs, prefixed(tmpl.validate())...)
	if len(errs) > 0 {
		return nil, problem.Invalid(errs...)
	}
	j, err := s.newJob(ctx, &tmpl)
	if err != nil {
		var p *problem.Problem
		if errors.As(err, &p) && p.Status == http.StatusUnprocessableEntity {
			return nil, problem.Invalid(prefixed(p.Errors)...)
		}
		return nil, err
	}
	if err := s.beforeSubmit(ctx, j); err != nil {
		return nil, err
	}
	now := j.SubmittedAt
	arr := &events.JobArray{
		Meta: events.Meta{ID: arrID, CreatedAt: now, UpdatedAt: now, Version: 1},
		Name: name, QueueID: j.QueueID, Count: b.Count, MaxParallel: b.MaxParallel, Owner: j.Owner,
		Counts: map[string]int{events.JobSubmitted: b.Count}, FailedIndexes: []int{},
	}
	jobs, err := s.arrayJobs(j, arr)
	if err != nil {
		return nil, err
	}
	return createOnce(ctx, func() (*jobArrayOutput, error) {
		// The array first: the scheduler reads its max_parallel when it sees
		// its jobs.
		if err := s.jobArrayKind().Insert(ctx, arr); err != nil {
			return nil, err
		}
		if err := s.jobs.CreateMany(ctx, jobs, events.TypeJobSubmitted); err != nil {
			return nil, fmt.Errorf("create the jobs of array %s: %w", arrID, err)
		}
		return &jobArrayOutput{Status: http.StatusCreated, Location: BasePath + "/job-arrays/" + arrID, Body: arr}, nil
	}, func() (*jobArrayOutput, error) { return s.completeJobArray(ctx, arrID, jobs) })
}

// arrayJobs makes the jobs of arr from the resolved job tmpl.
func (s *Server) arrayJobs(tmpl *events.Job, arr *events.JobArray) ([]*events.Job, error) {
	jobs := make([]*events.Job, arr.Count)
	var err error
	for i := range jobs {
		j := *tmpl
		if j.ID, err = arrayJobID(arr.ID, i); err != nil {
			return nil, err
		}
		j.Name = arr.Name + "-" + strconv.Itoa(i)
		j.ArrayID, j.ArrayIndex = arr.ID, &i
		idx := strconv.Itoa(i)
		j.EnvironmentVariables = maps.Clone(tmpl.EnvironmentVariables)
		j.EnvironmentVariables[EnvArrayIndex] = idx
		j.Runtime.EnvironmentVariables = maps.Clone(tmpl.Runtime.EnvironmentVariables)
		if j.Runtime.EnvironmentVariables == nil {
			j.Runtime.EnvironmentVariables = map[string]string{}
		}
		j.Runtime.EnvironmentVariables[EnvArrayIndex] = idx
		j.Conditions, j.Warnings = []events.Condition{}, []string{}
		if s.opts.JobTokens != nil && tmpl.Runtime.JobToken != "" {
			tok, err := s.opts.JobTokens.Mint(j.ID)
			if err != nil {
				return nil, err
			}
			j.Runtime.JobToken = tok
		}
		jobs[i] = &j
	}
	return jobs, nil
}

func (s *Server) getJobArray(ctx context.Context, in *jobArrayRef) (*jobArrayOutput, error) {
	arr, err := s.loadJobArray(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	return &jobArrayOutput{Status: http.StatusOK, Body: arr}, nil
}

// loadJobArray reads array id with its counts, if the caller may read it:
// an array is read as its jobs are (its queue's access.read, or owning it).
func (s *Server) loadJobArray(ctx context.Context, id string) (*events.JobArray, error) {
	if !strings.HasPrefix(id, "arr-") {
		return nil, fmt.Errorf("job array %q: %w", id, problem.ErrNotFound)
	}
	l, err := s.jobArrayKind().FindOne(ctx, bson.D{{Key: "_id", Value: id}}, id)
	if err != nil {
		return nil, err
	}
	arr := l.Res
	if s.opts.Auth != nil {
		refusal, err := s.readRefusalOf(ctx, auth.From(ctx), arr.Owner, arr.QueueID)
		if err != nil {
			return nil, err
		}
		if refusal != "" {
			return nil, problem.New(http.StatusForbidden, refusal)
		}
	}
	if err := s.countArray(ctx, arr); err != nil {
		return nil, err
	}
	return arr, nil
}

// countArray fills in the counts per status and the failed indexes of arr,
// read from its jobs by index.
func (s *Server) countArray(ctx context.Context, arr *events.JobArray) error {
	counts, failed, err := jobdoc.CountArray(ctx, s.active, arr.ID, arr.Count) // the jobs collection by index
	if err != nil {
		return err
	}
	arr.Counts, arr.FailedIndexes = counts, failed
	return nil
}

func (s *Server) listJobArrays(ctx context.Context, in *listJobArraysInput) (*jobArrayListOutput, error) {
	if err := checkCursor(in.Cursor, "arr"); err != nil {
		return nil, err
	}
	filter, err := s.readableJobsFilter(ctx) // queue_id and owner.subject, as on a job
	if err != nil {
		return nil, err
	}
	limit := in.Limit
	if limit == 0 {
		limit = 50
	}
	items, more, err := s.jobArrayKind().List(ctx, filter, in.Cursor, limit)
	if err != nil {
		return nil, err
	}
	out := ListBody[*events.JobArray]{Items: items}
	if out.Items == nil {
		out.Items = []*events.JobArray{}
	}
	for _, a := range out.Items {
		if err := s.countArray(ctx, a); err != nil {
			return nil, err
		}
	}
	if more {
		out.NextCursor = items[len(items)-1].ID
	}
	return &jobArrayListOutput{Body: out}, nil
}

// cancelJobArray records the cancel request on the array and on each of
// its jobs that is not final, as POST /jobs/{id}/cancel does, all at once
// (one query, one conditional write per job, one wait for their events per
// thousand).
func (s *Server) cancelJobArray(ctx context.Context, in *jobArrayRef) (*jobArrayOutput, error) {
	arr, err := s.loadJobArray(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	if p := auth.From(ctx); s.opts.Auth != nil && p != nil && p.Level < auth.LevelAdmin && (arr.Owner == nil || arr.Owner.Subject != p.Subject) {
		return nil, problem.New(http.StatusForbidden, fmt.Sprintf("job array %s belongs to another user: only its owner or %s may cancel it", arr.ID, p.RoleFor(auth.LevelAdmin)))
	}
	if ended, counts := arrayEnded(arr); ended {
		// As for a job that has ended: nothing is left to cancel, and
		// nothing is written.
		return nil, problem.New(http.StatusConflict, fmt.Sprintf("job array %s has ended (%s): only an array with a job that has not ended can be cancelled", arr.ID, counts))
	}
	if _, err := s.opts.Store.DB.Collection(events.JobArraysCollection).UpdateOne(ctx, bson.D{{Key: "_id", Value: arr.ID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "cancel_requested", Value: true}, {Key: "updated_at", Value: s.opts.Now().UTC().Truncate(timePrecision)}}},
			{Key: "$inc", Value: bson.D{{Key: "version", Value: 1}}}}); err != nil {
		return nil, fmt.Errorf("cancel job array %s: %w", arr.ID, err)
	}
	s.cancelArrayJobsLater(arr.ID)
	arr, err = s.loadJobArray(ctx, in.ID) // the counts as they are now
	if err != nil {
		return nil, err
	}
	return &jobArrayOutput{Status: http.StatusAccepted, Body: arr}, nil
}
