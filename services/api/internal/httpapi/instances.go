package httpapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/danielgtaylor/huma/v2"
)

type listInstancesInput struct {
	ID     string `path:"id" maxLength:"63" doc:"the job's id"`
	Role   string `query:"role" enum:"controller,worker,post-controller"`
	Status string `query:"status" enum:"pending,running,succeeded,failed,stopped"`
	Limit  int    `query:"limit" minimum:"1" maximum:"1000" default:"50"`
	Cursor string `query:"cursor" maxLength:"32" doc:"next_cursor of the previous page"`
}

// InstanceList is a page of a job's instances, in order: the controller,
// the workers by index, the post controllers by index.
type InstanceList struct {
	Items      []events.Instance `json:"items"`
	NextCursor string            `json:"next_cursor,omitempty"`
}

type instanceListOutput struct {
	Body InstanceList
}

func (s *Server) registerJobInstances(tags []string) {
	op := s.op("list-job-instances", http.MethodGet, BasePath+"/jobs/{id}/instances", "List the instances of a job",
		tags, http.StatusOK, http.StatusBadRequest, http.StatusNotFound, http.StatusUnprocessableEntity)
	op.Description = "Every instance of the job, paged, optionally of one role and status; a malformed cursor is a 400 naming cursor."
	huma.Register(s.API, op, s.listJobInstances)
}

func (s *Server) listJobInstances(ctx context.Context, in *listInstancesInput) (*instanceListOutput, error) {
	j, err := s.loadJob(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	if in.Limit == 0 {
		in.Limit = 50
	}
	items, next, err := s.jobs.Instances(ctx, j, jobdoc.InstanceQuery{Role: in.Role, Status: in.Status, Limit: in.Limit, Cursor: in.Cursor})
	if errors.Is(err, jobdoc.ErrBadCursor) {
		return nil, problem.New(http.StatusBadRequest, "malformed cursor", problem.Field("cursor", "not a cursor of this list"))
	}
	if err != nil {
		return nil, err
	}
	return &instanceListOutput{Body: InstanceList{Items: items, NextCursor: next}}, nil
}
