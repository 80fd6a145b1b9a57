package httpapi

import (
	"context"
	"net/http"

	"github.com/avxrm/rm/pkg/events/exportdoc"
	"github.com/avxrm/rm/services/api/internal/store"
	"github.com/danielgtaylor/huma/v2"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// GET /jobs/{id}/scenario-exports: a job's exports, oldest first, paged
// like every list.

func (s *Server) registerJobExportList(tags []string) {
	op := s.op("list-job-scenario-exports", http.MethodGet, BasePath+"/jobs/{id}/scenario-exports", "List a job's scenario exports",
		tags, http.StatusOK, http.StatusNotFound, http.StatusUnprocessableEntity)
	op.Description = "Oldest first, every status; an expired export is gone from the list once the export service removes it."
	huma.Register(s.API, op, s.listJobExports)
}

type listJobExportsInput struct {
	ID     string `path:"id" maxLength:"63" doc:"the job's id"`
	Limit  int    `query:"limit" minimum:"1" maximum:"1000" default:"50"`
	Cursor string `query:"cursor" maxLength:"128"`
}

// ScenarioExportList is a page of scenario exports.
type ScenarioExportList struct {
	Items      []*ScenarioExport `json:"items"`
	NextCursor string            `json:"next_cursor,omitempty"`
}

type exportListOutput struct {
	Body ScenarioExportList
}

func (s *Server) exportKind() store.Kind[*ScenarioExport] {
	return store.Kind[*ScenarioExport]{S: s.opts.Store, Coll: exportdoc.Collection, Name: "scenario export", IDPrefix: "exp"}
}

func (s *Server) listJobExports(ctx context.Context, in *listJobExportsInput) (*exportListOutput, error) {
	if err := checkCursor(in.Cursor, "exp"); err != nil {
		return nil, err
	}
	if _, err := s.loadJob(ctx, in.ID); err != nil {
		return nil, err
	}
	limit := in.Limit
	if limit == 0 {
		limit = 50
	}
	items, more, err := s.exportKind().List(ctx, bson.D{{Key: "job_id", Value: in.ID}}, in.Cursor, limit)
	if err != nil {
		return nil, err
	}
	out := ScenarioExportList{Items: items}
	if out.Items == nil {
		out.Items = []*ScenarioExport{}
	}
	if more {
		out.NextCursor = items[len(items)-1].ID
	}
	return &exportListOutput{Body: out}, nil
}
