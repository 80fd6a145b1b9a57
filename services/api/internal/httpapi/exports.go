package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/avxrm/rm/pkg/blob"
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/exportdoc"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/avxrm/rm/services/api/internal/store"
	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humaecho"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Scenario exports: the API stores the request (pending, with
// rm.export.requested through the outbox) and serves the result;
// services/scenario-export claims it, builds the zip into the GridFS bucket
// export_zips and marks it ready or failed. The document shape is shared with
// that service (docs/scenario-export.md).

// Export statuses (package exportdoc holds the record both services share).
const (
	exportPending  = exportdoc.StatusPending
	exportBuilding = exportdoc.StatusBuilding
	exportReady    = exportdoc.StatusReady
	exportFailed   = exportdoc.StatusFailed
)

// typeExportDeleted announces the removal of an export (its job was deleted).
const typeExportDeleted = events.TypeExportDeleted

// ExportRequest says what a scenario export holds.
type ExportRequest = exportdoc.ExportRequest

// ScenarioExport is a zip of chosen artifacts of a job.
type ScenarioExport = exportdoc.ScenarioExport

func (s *Server) exportsColl() *mongo.Collection {
	return s.opts.Store.DB.Collection(exportdoc.Collection)
}

func (s *Server) registerExports() {
	tags := []string{"Scenario exports"}
	path := BasePath + "/jobs/{id}/scenario-exports"
	op := s.op("create-scenario-export", http.MethodPost, path, "Request a zip of chosen samples and kinds of document",
		tags, http.StatusAccepted, http.StatusNotFound, http.StatusUnprocessableEntity)
	op.Description = "The zip holds scenarios/<sample_id>/<path> for each concrete scenario file, assets/<path> for common asset data, " +
		"assets/<declaration>/<path> for the assets of a declaration, and manifest.json (path, size and sha256 of each file). " +
		"Poll GET /scenario-exports/{id} until ready, then download it."
	s.idempotentPost(path)
	huma.Register(s.API, op, s.createExport)
	s.registerJobExportList(tags)
	huma.Register(s.API, s.op("get-scenario-export", http.MethodGet, BasePath+"/scenario-exports/{id}", "Get a scenario export",
		tags, http.StatusOK, http.StatusNotFound), s.getExport)
	op = s.op("download-scenario-export", http.MethodGet, BasePath+"/scenario-exports/{id}/download", "Download a scenario export's zip",
		tags, http.StatusOK, http.StatusNotFound, http.StatusConflict, http.StatusGone, http.StatusRequestedRangeNotSatisfiable)
	op.Description = "409 until the export is ready. Supports Range and If-None-Match (the ETag is the zip's sha256). " + unsatisfiableRange
	zip := map[string]*huma.MediaType{"application/zip": {Schema: &huma.Schema{Type: "string", Format: "binary"}}}
	hdr := map[string]*huma.Param{
		"ETag":           {Description: `"<sha256>" of the zip`, Schema: &huma.Schema{Type: "string"}},
		"Content-Length": {Schema: &huma.Schema{Type: "integer"}},
		"Accept-Ranges":  {Schema: &huma.Schema{Type: "string"}},
	}
	op.Responses = map[string]*huma.Response{
		"200": {Description: "the zip", Content: zip, Headers: hdr},
		"206": {Description: "the requested range of the zip", Content: zip, Headers: hdr},
	}
	huma.Register(s.API, op, s.downloadExport)
	op = s.op("delete-scenario-export", http.MethodDelete, BasePath+"/scenario-exports/{id}", "Delete a scenario export and its zip",
		tags, http.StatusNoContent, http.StatusNotFound, http.StatusPreconditionFailed)
	op.Description = "Before it expires, at any status: an export being built is not built further. A download under way breaks off."
	huma.Register(s.API, op, s.deleteExport)
}

type createExportInput struct {
	ID             string `path:"id" maxLength:"63" doc:"the job's id"`
	IdempotencyKey string `header:"Idempotency-Key" maxLength:"255" doc:"the same key with the same body replays the original response; with a different body: 422"`
	Body           ExportRequest
}

type exportRef struct {
	ID string `path:"id" maxLength:"63" doc:"the export's id"`
}

type exportOutput struct {
	Location string `header:"Location" doc:"on create: the export's URL"`
	ETag     string `header:"ETag"`
	Body     *ScenarioExport
}

func (s *Server) createExport(ctx context.Context, in *createExportInput) (*exportOutput, error) {
	var job struct {
		QueueID string `bson:"queue_id"`
		Deleted bool   `bson:"_deleted"`
	}
	err := s.opts.Store.DB.Collection(store.Jobs).FindOne(ctx, bson.D{{Key: "_id", Value: in.ID}},
		options.FindOne().SetProjection(bson.D{{Key: "queue_id", Value: 1}, {Key: outbox.DeletedField, Value: 1}})).Decode(&job)
	if errors.Is(err, mongo.ErrNoDocuments) || job.Deleted {
		return nil, jobNotFound(in.ID)
	}
	if err != nil {
		return nil, fmt.Errorf("look up job %s: %w", in.ID, err)
	}
	if errs, err := s.checkExportRequest(ctx, in.ID, &in.Body); err != nil {
		return nil, err
	} else if len(errs) > 0 {
		return nil, problem.Invalid(errs...)
	}
	now := s.now()
	e := &ScenarioExport{
		Meta:  events.Meta{ID: newID(ctx, "exp"), CreatedAt: now, UpdatedAt: now, Version: 1},
		JobID: in.ID, QueueID: job.QueueID, Status: exportPending, Request: in.Body,
		ExpiresAt: now.Add(s.artifactConfig().ExportTTL),
	}
	return createOnce(ctx, func() (*exportOutput, error) {
		ev, err := events.New(events.TypeExportRequested, s.opts.Source, e.QueueID, e.ID, e)
		if err != nil {
			return nil, err
		}
		if err := s.opts.Store.Outbox.Insert(ctx, s.exportsColl(), e.ID, e.Version, e, ev); err != nil {
			return nil, fmt.Errorf("store export: %w", err)
		}
		return &exportOutput{Location: BasePath + "/scenario-exports/" + e.ID, ETag: etag(e.Version), Body: e}, nil
	}, func() (*exportOutput, error) {
		l, err := s.loadExport(ctx, e.ID)
		if err != nil {
			return nil, err
		}
		return &exportOutput{Location: BasePath + "/scenario-exports/" + e.ID, ETag: etag(l.Res.Version), Body: l.Res}, nil
	})
}

// checkExportRequest names every sample without a scenario file in the job and
// every declaration without an asset in it.
func (s *Server) checkExportRequest(ctx context.Context, jobID string, r *ExportRequest) ([]*problem.FieldError, error) {
	docs, err := s.jobArtifacts(ctx, jobID)
	if err != nil {
		return nil, err
	}
	samples, decls := map[string]bool{}, map[string]bool{}
	for _, d := range docs {
		switch {
		case d.Kind == kindScenario:
			samples[d.SampleID] = true
		case d.Declaration != "":
			decls[d.Declaration] = true
		}
	}
	var errs []*problem.FieldError
	for i, id := range r.Samples {
		if !samples[id] {
			errs = append(errs, problem.Field("samples["+strconv.Itoa(i)+"]", "job %q has no scenario file of sample %q; %s",
				jobID, id, theOnes("samples", "it has scenario files of", samples)))
		}
	}
	for i, d := range r.FilterByAssetDeclaration {
		if !decls[d] {
			errs = append(errs, problem.Field("filter_by_asset_declaration["+strconv.Itoa(i)+"]", "job %q has no asset of declaration %q; %s",
				jobID, d, theOnes("declarations", "it has assets of", decls)))
		}
	}
	errs = append(errs, listedTwice("samples", r.Samples)...)
	errs = append(errs, listedTwice("filter_by_asset_declaration", r.FilterByAssetDeclaration)...)
	return append(errs, listedTwice("include", r.Include)...), nil
}

// theOnes says which names a job has, for a refusal of one it lacks: "it
// has scenario files of samples s-0, s-1" (the first 10 in order, and how
// many more), or that it has none.
func theOnes(what, has string, set map[string]bool) string {
	if len(set) == 0 {
		return "it has none"
	}
	names := slices.Sorted(maps.Keys(set))
	more := ""
	if len(names) > 10 {
		more = fmt.Sprintf(" and %d more", len(names)-10)
		names = names[:10]
	}
	return fmt.Sprintf("%s %s %s%s", has, what, strings.Join(names, ", "), more)
}

// listedTwice names each element of list field that repeats an earlier one.
func listedTwice(field string, list []string) []*problem.FieldError {
	var errs []*problem.FieldError
	seen := make(map[string]bool, len(list))
	for i, x := range list {
		if seen[x] {
			errs = append(errs, problem.Field(field+"["+strconv.Itoa(i)+"]", "%q is listed twice", x))
		}
		seen[x] = true
	}
	return errs
}

// loadExport reads export id with the outbox entries beside it. The filter is
// {_id} alone (the one FerretDB answers from an index); tombstones are skipped here.
func (s *Server) loadExport(ctx context.Context, id string) (store.Loaded[*ScenarioExport], error) {
	var out store.Loaded[*ScenarioExport]
	raw, err := s.exportsColl().FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return out, fmt.Errorf("scenario export %q: %w", id, problem.ErrNotFound)
	}
	if err != nil {
		return out, fmt.Errorf("get scenario export %q: %w", id, err)
	}
	var env outbox.Envelope
	if err := bson.Unmarshal(raw, &env); err != nil {
		return out, fmt.Errorf("decode scenario export %q: %w", id, err)
	}
	if env.Deleted {
		return out, fmt.Errorf("scenario export %q: %w", id, problem.ErrNotFound)
	}
	out.Res = &ScenarioExport{}
	if err := bson.Unmarshal(raw, out.Res); err != nil {
		return out, fmt.Errorf("decode scenario export %q: %w", id, err)
	}
	out.Pending = env.Outbox
	return out, nil
}

func (s *Server) getExport(ctx context.Context, in *exportRef) (*exportOutput, error) {
	l, err := s.loadExport(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	return &exportOutput{ETag: etag(l.Res.Version), Body: l.Res}, nil
}

func (s *Server) downloadExport(ctx context.Context, in *exportRef) (*huma.StreamResponse, error) {
	l, err := s.loadExport(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	e := l.Res
	switch {
	case s.opts.Now().After(e.ExpiresAt):
		return nil, problem.New(http.StatusGone, fmt.Sprintf("scenario export %s expired at %s", e.ID, e.ExpiresAt.Format(time.RFC3339)))
	case e.Status != exportReady:
		detail := fmt.Sprintf("scenario export %s is %s, not ready", e.ID, e.Status)
		if e.Reason != "" {
			detail += ": " + e.Reason
		}
		return nil, fmt.Errorf("%s: %w", detail, problem.ErrConflict)
	}
	r, err := blob.NewBucket(s.opts.Store.DB, zipBucket, 0).Open(ctx, e.ZipFileID)
	if err != nil {
		return nil, fmt.Errorf("open zip of scenario export %s: %w", e.ID, err)
	}
	modified := e.UpdatedAt
	if e.ReadyAt != nil {
		modified = *e.ReadyAt
	}
	return &huma.StreamResponse{Body: func(hctx huma.Context) {
		c := humaecho.Unwrap(hctx)
		h := c.Response().Header()
		h.Set("Content-Type", "application/zip")
		h.Set("ETag", `"`+e.SHA256+`"`)
		h.Set("Content-Disposition", `attachment; filename="`+e.ID+`.zip"`)
		live := &whileExportLives{r: r, exists: func() error {
			_, err := s.loadExport(hctx.Context(), e.ID)
			return err
		}}
		if err := serveContent(c, modified, live); err != nil {
			c.Echo().HTTPErrorHandler(err, c)
		}
	}}, nil
}

// exportLiveCheck is how many bytes of a zip a download sends between two
// checks that its export still exists.
const exportLiveCheck = 8 << 20

// whileExportLives reads a zip, checking every exportLiveCheck bytes that its
// export still exists: DELETE removes the zip's bytes after answering
// (removeBlobsLater), and a download under way must break off then rather
// than finish from the chunks not yet removed.
type whileExportLives struct {
	r      io.ReadSeeker
	exists func() error
	read   int64 // since the last check
}

func (w *whileExportLives) Read(p []byte) (int, error) {
	if w.read >= exportLiveCheck {
		if err := w.exists(); err != nil {
			return 0, err
		}
		w.read = 0
	}
	n, err := w.r.Read(p)
	w.read += int64(n)
	return n, err
}

func (w *whileExportLives) Seek(offset int64, whence int) (int64, error) {
	return w.r.Seek(offset, whence)
}

type exportIfMatch struct {
	ID string `path:"id" maxLength:"63" doc:"the export's id"`
	IfMatchParam
}

func (s *Server) deleteExport(ctx context.Context, in *exportIfMatch) (*struct{}, error) {
	if _, err := s.loadExport(ctx, in.ID); err != nil {
		return nil, err
	}
	return nil, s.removeExport(ctx, in.ID, in.IfMatch)
}

// exportIDsOfJob returns the ids of job's live exports: on the embedded
// store by the index of job_id and _id that the job's pages of exports
// read too (jobExportsPage), on MongoDB by its index of the same.
func (s *Server) exportIDsOfJob(ctx context.Context, jobID string) ([]string, error) {
	r := &indexed.Reader{Coll: s.exportsColl(), Lookup: s.opts.Lookup}
	docs, err := r.AllWhere(ctx, ofJob(jobID), []indexed.Cond{outbox.NotDeletedCond()})
	if err != nil {
		return nil, fmt.Errorf("list exports of %s: %w", jobID, err)
	}
	ids := make([]string, 0, len(docs))
	for _, d := range docs {
		if id, ok := d.Lookup("_id").StringValueOK(); ok {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// removeExport deletes export id with an rm.export.deleted event, and queues
// its zip for removal after the answer (removeBlobsLater), if its version
// matches ifMatch (an If-Match header; "" for any). A
// builder working on it finds the export gone when it finishes and removes
// the zip it built.
func (s *Server) removeExport(ctx context.Context, id, ifMatch string) error {
	for attempt := 0; ; attempt++ {
		l, err := s.loadExport(ctx, id)
		if errors.Is(err, problem.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := checkIfMatch(ifMatch, l.Res.Version); err != nil {
			return err
		}
		gone := *l.Res
		gone.Version++
		gone.UpdatedAt = s.now()
		ev, err := events.New(typeExportDeleted, s.opts.Source, gone.QueueID, gone.ID, &gone)
		if err != nil {
			return err
		}
		err = s.opts.Store.Outbox.Delete(ctx, s.exportsColl(), id, l.Res.Version, l.Pending, ev)
		if errors.Is(err, outbox.ErrVersionConflict) && attempt < 20 {
			continue // the export service moved it on meanwhile
		}
		if err != nil {
			return fmt.Errorf("delete scenario export %s: %w", id, err)
		}
		s.removeBlobsLater(zipBucket, l.Res.ZipFileID)
		return nil
	}
}
