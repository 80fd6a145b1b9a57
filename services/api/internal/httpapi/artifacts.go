package httpapi

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/avxrm/rm/pkg/blob"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/avxrm/rm/services/api/internal/store"
	"github.com/danielgtaylor/huma/v2"
	"github.com/labstack/echo/v4"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Artifacts are the files workers upload for a job: each sample's concrete
// scenario files and the asset files (of a declaration, or common asset data).
// The bytes are streamed into the GridFS bucket "artifacts" (see
// pkg/blob) and never held whole in memory; each file is recorded in
// the collection "artifacts" with its size and sha256, which the
// scenario-export service reads. The document shapes are the contract with
// that service, described in docs/scenario-export.md.

// Collection and bucket names shared with services/scenario-export.
const (
	artifactsColl  = store.Artifacts
	artifactBucket = "artifacts"
	zipBucket      = "export_zips"
)

// Artifact kinds.
const (
	kindScenario = "scenario"
	kindAsset    = "asset"
)

// Limits of artifact paths.
const (
	maxArtifactPath    = 1024
	maxArtifactSegment = 255
)

// ArtifactConfig tunes artifacts and scenario exports. The zero value works.
type ArtifactConfig struct {
	// UploadLimit bounds the bytes of one artifact upload. If zero, 1 GiB.
	UploadLimit int64
	// ExportTTL is how long a scenario export (and its zip) is kept after it
	// is requested. If zero, 7 days.
	ExportTTL time.Duration
}

func (c ArtifactConfig) withDefaults() ArtifactConfig {
	if c.UploadLimit <= 0 {
		c.UploadLimit = 1 << 30
	}
	if c.ExportTTL <= 0 {
		c.ExportTTL = 7 * 24 * time.Hour
	}
	return c
}

// ConfigureArtifacts sets the upload limit and export lifetime; it must be
// called before the server takes requests (tests use it; the API passes
// Options.Artifacts).
func (s *Server) ConfigureArtifacts(c ArtifactConfig) { s.opts.Artifacts = c.withDefaults() }

func (s *Server) artifactConfig() ArtifactConfig { return s.opts.Artifacts.withDefaults() }

// Artifact is an uploaded file as the API shows it.
type Artifact struct {
	Kind        string    `json:"kind" enum:"scenario,asset"`
	SampleID    string    `json:"sample_id,omitempty" doc:"scenario files: the sample"`
	Declaration string    `json:"declaration,omitempty" doc:"assets: the asset declaration; absent for common asset data"`
	Path        string    `json:"path" doc:"relative, '/'-separated"`
	Size        int64     `json:"size" doc:"bytes"`
	SHA256      string    `json:"sha256" doc:"hex"`
	CreatedAt   time.Time `json:"created_at" doc:"when this version was uploaded"`
}

// artifactDoc is a document of the artifacts collection. Its _id is
// "<job id>/s/<sample id>/<path>" or "<job id>/a/<declaration>/<path>" (empty
// declaration for common asset data): a re-upload finds its predecessor by
// _id, the only filter FerretDB serves from an index, and a job's artifacts
// sort by kind, group and path.
type artifactDoc struct {
	ID          string    `bson:"_id"`
	JobID       string    `bson:"job_id"`
	Kind        string    `bson:"kind"`
	SampleID    string    `bson:"sample_id,omitempty"`
	Declaration string    `bson:"declaration,omitempty"`
	Path        string    `bson:"path"`
	Size        int64     `bson:"size"`
	SHA256      string    `bson:"sha256"`
	FileID      string    `bson:"file_id"`
	CreatedAt   time.Time `bson:"created_at"`
}

func artifactKey(jobID, kind, group, path string) string {
	k := "a"
	if kind == kindScenario {
		k = "s"
	}
	return jobID + "/" + k + "/" + group + "/" + path
}

func (d artifactDoc) view() Artifact {
	return Artifact{Kind: d.Kind, SampleID: d.SampleID, Declaration: d.Declaration, Path: d.Path, Size: d.Size, SHA256: d.SHA256, CreatedAt: d.CreatedAt}
}

func (s *Server) artifactsColl() *mongo.Collection { return s.opts.Store.DB.Collection(artifactsColl) }

// ofJob is the clause of job jobID's records, in artifacts or exports.
func ofJob(jobID string) indexed.Clause { return indexed.Clause{{Path: "job_id", In: []any{jobID}}} }

// jobArtifacts returns every artifact record of job jobID, by an index of
// job_id (Server.artifacts): FerretDB answers any filter but {_id} by
// reading every record of every job.
func (s *Server) jobArtifacts(ctx context.Context, jobID string) ([]artifactDoc, error) {
	docs, err := indexed.AllWhereOf[artifactDoc](ctx, s.artifacts, ofJob(jobID), nil)
	if err != nil {
		return nil, fmt.Errorf("list artifacts of %s: %w", jobID, err)
	}
	return docs, nil
}

func (s *Server) artifactBlobs() *blob.Bucket {
	return blob.NewBucket(s.opts.Store.DB, artifactBucket, 0)
}

// Artifact routes, as echo spells them: the path of a file is the rest of the URL.
const (
	scenarioUploadRoute = BasePath + "/jobs/:id/artifacts/scenarios/:sample_id/*"
	assetUploadRoute    = BasePath + "/jobs/:id/artifacts/assets/*"
)

func (s *Server) registerArtifacts() {
	huma.Register(s.API, s.op("list-artifacts", http.MethodGet, BasePath+"/jobs/{id}/artifacts", "List a job's artifacts",
		[]string{"Artifacts"}, http.StatusOK, http.StatusNotFound, http.StatusUnprocessableEntity), s.listArtifacts)

	// Uploads are registered with echo, not huma: huma reads a body whole
	// before the handler runs, and an upload must be streamed. Their
	// operations are added to the document by hand below.
	s.Echo.Pre(uploadsAreNotJSON)
	s.Echo.PUT(scenarioUploadRoute, s.putArtifact(kindScenario))
	s.Echo.PUT(assetUploadRoute, s.putArtifact(kindAsset))
	s.documentUploads()
	s.registerArtifactDownloads()
}

// uploadsAreNotJSON marks artifact uploads as octet streams before the
// middleware that buffers and checks JSON bodies sees them: an upload sent
// with no Content-Type (or a JSON file's) would otherwise be held in memory
// and refused past the JSON body limit. Artifacts are stored as bytes,
// whatever their type.
func uploadsAreNotJSON(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, BasePath+"/jobs/") && strings.Contains(r.URL.Path, "/artifacts/") {
			r.Header.Set(echo.HeaderContentType, "application/octet-stream")
		}
		return next(c)
	}
}

// artifactRef is what an upload's URL names.
type artifactRef struct {
	JobID, Kind, SampleID, Declaration, Path string
}

func (r artifactRef) key() string {
	group := r.SampleID
	if r.Kind == kindAsset {
		group = r.Declaration
	}
	return artifactKey(r.JobID, r.Kind, group, r.Path)
}

var nameRE = regexp.MustCompile(NamePattern)

// checkName applies the name rule of API.md to a sample id or declaration.
func checkName(field, v string) *problem.FieldError {
	if len(v) == 0 || len(v) > 63 || !nameRE.MatchString(v) {
		return problem.Field(field, "%q is not a name: 1-63 letters, digits, '-', '_', '.', starting with a letter or digit", v)
	}
	return nil
}

// parseArtifactRef reads an upload's URL. It works on the escaped path, a
// segment at a time, so that an escaped '/' or '.' cannot smuggle a separator
// or a '..' past the checks.
func parseArtifactRef(kind string, u *url.URL) (artifactRef, []*problem.FieldError) {
	ref := artifactRef{Kind: kind}
	segs := strings.Split(strings.TrimPrefix(u.EscapedPath(), BasePath+"/jobs/"), "/")
	// segs: <id> artifacts scenarios <sample> <path...> | <id> artifacts assets <path...>
	unesc := func(s string) string {
		v, err := url.PathUnescape(s)
		if err != nil {
			return s
		}
		return v
	}
	ref.JobID = unesc(segs[0])
	rest := segs[3:]
	var errs []*problem.FieldError
	if kind == kindScenario {
		ref.SampleID = unesc(rest[0])
		if fe := checkName("sample_id", ref.SampleID); fe != nil {
			errs = append(errs, fe)
		}
		rest = rest[1:]
	}
	q := u.Query()
	// As checkQuery answers on huma's routes: a misspelt ?decl= would
	// otherwise store common asset data instead of a declaration's.
	var takes []string
	if kind == kindAsset {
		takes = []string{"declaration"}
	}
	d := q["declaration"]
	switch {
	case kind == kindScenario && len(d) > 0:
		errs = append(errs, problem.Field("declaration", "scenario files have no declaration"))
		q.Del("declaration")
	case len(d) == 1:
		ref.Declaration = d[0]
		if fe := checkName("declaration", ref.Declaration); fe != nil {
			errs = append(errs, fe)
		}
	}
	for _, qp := range queryProblems(q, takes, nil) {
		errs = append(errs, problem.Field(qp.name, "%s", qp.message))
	}
	p, fe := cleanArtifactPath(rest, unesc)
	if fe != nil {
		errs = append(errs, fe)
	}
	ref.Path = p
	return ref, errs
}

// cleanArtifactPath checks the escaped segments of a file's path and returns
// the path. Nothing is cleaned silently: a path that would need it is refused,
// so what is stored is exactly what was named.
func cleanArtifactPath(segs []string, unesc func(string) string) (string, *problem.FieldError) {
	bad := func(format string, args ...any) (string, *problem.FieldError) {
		return "", problem.Field("path", format, args...)
	}
	if len(segs) == 0 || (len(segs) == 1 && segs[0] == "") {
		return bad("is empty")
	}
	if segs[0] == "" {
		return bad("must be relative, not absolute")
	}
	out := make([]string, len(segs))
	for i, raw := range segs {
		seg := unesc(raw)
		switch {
		case seg == "":
			return bad("has an empty segment")
		case seg == "." || seg == "..":
			return bad("has a %q segment", seg)
		case strings.ContainsAny(seg, `/\`):
			return bad("segment %q contains a path separator", seg)
		case !utf8.ValidString(seg):
			return bad("is not valid UTF-8")
		case len(seg) > maxArtifactSegment:
			return bad("segment longer than %d bytes", maxArtifactSegment)
		}
		for _, r := range seg {
			switch {
			case unicode.IsControl(r):
				return bad("contains the control character %U", r)
			case unicode.Is(unicode.Bidi_Control, r):
				// "report\u202Efdp.exe" shows as "reportexe.pdf".
				return bad("contains the bidirectional control character %U, which makes a name read other than it is", r)
			}
		}
		out[i] = seg
	}
	p := strings.Join(out, "/")
	if len(p) > maxArtifactPath {
		return bad("longer than %d bytes", maxArtifactPath)
	}
	return p, nil
}

// jobExists reports whether job id exists (and is not being deleted). The
// filter is {_id} alone, which FerretDB answers from an index.
func (s *Server) jobExists(ctx context.Context, id string) (bool, error) {
	var doc struct {
		Deleted bool `bson:"_deleted"`
	}
	err := s.opts.Store.DB.Collection(store.Jobs).FindOne(ctx, bson.D{{Key: "_id", Value: id}},
		options.FindOne().SetProjection(bson.D{{Key: outbox.DeletedField, Value: 1}})).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up job %s: %w", id, err)
	}
	return !doc.Deleted, nil
}

func jobNotFound(id string) error { return fmt.Errorf("job %q: %w", id, problem.ErrNotFound) }

// putArtifact streams an upload into GridFS and records it, replacing the
// previous upload of the same file (whose blob is then removed). 201 for a
// new file, 200 for a replaced one; 413 past the upload limit, 400 when a
// Content-Digest does not match the body (contentdigest.go), and then
// nothing is kept.
func (s *Server) putArtifact(kind string) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		ctx := r.Context()
		limit := s.artifactConfig().UploadLimit
		if r.ContentLength > limit {
			if _, errs := parseArtifactRef(kind, r.URL); len(errs) > 0 {
				return problem.Invalid(errs...)
			}
			return problem.New(http.StatusRequestEntityTooLarge, fmt.Sprintf("artifact larger than the upload limit of %d bytes", limit), problem.Field("body", "%d bytes, limit %d", r.ContentLength, limit))
		}
		ref, err := s.artifactOfJob(ctx, kind, r.URL)
		if err != nil {
			return err
		}
		digest, err := parseContentDigest(r.Header)
		if err != nil {
			return err
		}
		blobs := s.artifactBlobs()
		w, err := blobs.Create(ctx, ref.key(), s.opts.Now())
		if err != nil {
			return err
		}
		w.SetLimit(limit)
		body := &bodyReader{r: r.Body}
		var src io.Reader = body
		if digest != nil {
			src = digest.reader(body)
		}
		if _, err := io.Copy(w, src); err != nil {
			if aerr := w.Abort(); aerr != nil {
				s.opts.Logger.Warn("removing a failed upload", "blob", w.ID(), "err", aerr)
			}
			switch {
			case errors.Is(err, blob.ErrTooLarge):
				return problem.New(http.StatusRequestEntityTooLarge, fmt.Sprintf("artifact larger than the upload limit of %d bytes", limit), problem.Field("body", "more than %d bytes", limit))
			case body.err != nil:
				return problem.New(http.StatusBadRequest, "reading the upload: "+body.err.Error(), problem.Field("body", "incomplete"))
			}
			return err
		}
		if digest != nil {
			if err := digest.check(); err != nil {
				if aerr := w.Abort(); aerr != nil {
					s.opts.Logger.Warn("removing an upload whose digest did not match", "blob", w.ID(), "err", aerr)
				}
				return err
			}
		}
		f, err := w.Commit()
		if err != nil {
			if aerr := w.Abort(); aerr != nil {
				s.opts.Logger.Warn("removing a failed upload", "blob", w.ID(), "err", aerr)
			}
			return err
		}
		doc := artifactDoc{ID: ref.key(), JobID: ref.JobID, Kind: ref.Kind, SampleID: ref.SampleID, Declaration: ref.Declaration,
			Path: ref.Path, Size: f.Length, SHA256: f.Metadata.SHA256, FileID: f.ID, CreatedAt: s.now()}
		replaced, err := s.recordArtifact(ctx, doc)
		if err != nil {
			// Committed but not recorded: remove it now rather than leave it
			// to the orphan sweep.
			if derr := blobs.Delete(context.WithoutCancel(ctx), f.ID); derr != nil {
				s.opts.Logger.Warn("removing an unrecorded upload", "blob", f.ID, "err", derr)
			}
			return err
		}
		// A DELETE of the job that ran during the upload has already removed
		// the job's artifacts; this one must not outlive it.
		if ok, err := s.jobExists(ctx, ref.JobID); err == nil && !ok {
			if err := s.removeArtifact(context.WithoutCancel(ctx), doc); err != nil {
				s.opts.Logger.Warn("removing an artifact of a deleted job", "artifact", doc.ID, "err", err)
			}
			return jobNotFound(ref.JobID)
		}
		status := http.StatusCreated
		if replaced {
			status = http.StatusOK
		}
		c.Response().Header().Set("ETag", `"`+doc.SHA256+`"`)
		return c.JSON(status, doc.view())
	}
}

// bodyReader remembers a failure to read the request body, to tell a client
// that broke off (400) from a store that failed (500).
type bodyReader struct {
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// recordArtifact stores doc in place of the previous record of the same file,
// and removes that record's blob. Concurrent uploads of one file each remove
// the blob they replaced, so the last record wins and no blob is left behind.
func (s *Server) recordArtifact(ctx context.Context, doc artifactDoc) (replaced bool, err error) {
	var prev artifactDoc
	err = s.artifactsColl().FindOneAndReplace(ctx, bson.D{{Key: "_id", Value: doc.ID}}, doc,
		options.FindOneAndReplace().SetUpsert(true).SetReturnDocument(options.Before)).Decode(&prev)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("record artifact %s: %w", doc.ID, err)
	}
	if prev.FileID != "" && prev.FileID != doc.FileID {
		// After the answer: a replaced file of a GiB takes a minute to
		// remove. One this misses is the orphan sweep's.
		s.removeBlobsLater(artifactBucket, prev.FileID)
	}
	return true, nil
}

// removeArtifact deletes a record, then queues its blob for removal after the
// answer (removeBlobsLater; a blob without a record is found by the orphan
// sweep; a record without a blob would break exports).
func (s *Server) removeArtifact(ctx context.Context, doc artifactDoc) error {
	if _, err := s.artifactsColl().DeleteOne(ctx, bson.D{{Key: "_id", Value: doc.ID}}); err != nil {
		return fmt.Errorf("delete artifact %s: %w", doc.ID, err)
	}
	s.removeBlobsLater(artifactBucket, doc.FileID)
	return nil
}

type listArtifactsInput struct {
	ID          string `path:"id" maxLength:"63" doc:"the job's id"`
	Kind        string `query:"kind" enum:"scenario,asset" doc:"only artifacts of this kind"`
	SampleID    string `query:"sample_id" maxLength:"63" doc:"only the scenario files of this sample"`
	Declaration string `query:"declaration" maxLength:"63" doc:"only the assets of this declaration"`
	Limit       int    `query:"limit" minimum:"1" maximum:"1000" default:"50" doc:"page size"`
	Cursor      string `query:"cursor" maxLength:"2048" doc:"next_cursor of the previous page"`
}

type artifactListOutput struct {
	Body ListBody[Artifact]
}

func (s *Server) listArtifacts(ctx context.Context, in *listArtifactsInput) (*artifactListOutput, error) {
	if ok, err := s.jobExists(ctx, in.ID); err != nil {
		return nil, err
	} else if !ok {
		return nil, jobNotFound(in.ID)
	}
	var after string
	if in.Cursor != "" {
		a, err := base64.RawURLEncoding.DecodeString(in.Cursor)
		if err != nil || !strings.HasPrefix(string(a), in.ID+"/") {
			return nil, problem.New(http.StatusBadRequest, fmt.Sprintf("cursor %q is not a next_cursor of this list", in.Cursor),
				problem.Field("cursor", "not a next_cursor of this list; start again without cursor"))
		}
		after = string(a)
	}
	limit := in.Limit
	if limit == 0 {
		limit = 50
	}
	docs, err := s.artifactsPage(ctx, in, after, limit+1)
	if err != nil {
		return nil, fmt.Errorf("list artifacts of %s: %w", in.ID, err)
	}
	out := &artifactListOutput{Body: ListBody[Artifact]{Items: make([]Artifact, 0, len(docs))}}
	for i, d := range docs {
		if i == limit {
			out.Body.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(docs[i-1].ID))
			break
		}
		out.Body.Items = append(out.Body.Items, d.view())
	}
	return out, nil
}

// artifactsPage is at most limit of the artifact records listArtifacts
// lists, those after after in _id order: on the embedded store their _ids
// come in that order from the Lookup's index of job_id and _id, so a page
// reads its records only; on MongoDB (or when the index's order is not
// the strings', for a path with a character before '#') the filter goes
// to the store, whose index of job_id and _id serves it.
func (s *Server) artifactsPage(ctx context.Context, in *listArtifactsInput, after string, limit int) ([]artifactDoc, error) {
	var also []indexed.Cond
	f := bson.D{{Key: "job_id", Value: in.ID}}
	for _, c := range []struct{ path, value string }{{"kind", in.Kind}, {"sample_id", in.SampleID}, {"declaration", in.Declaration}} {
		if c.value != "" {
			also = append(also, indexed.Cond{Path: c.path, In: []any{c.value}})
			f = append(f, bson.E{Key: c.path, Value: c.value})
		}
	}
	var docs []artifactDoc
	err := s.artifacts.ScanWhere(ctx, ofJob(in.ID), after, limit, also, func(raw bson.Raw) (bool, error) {
		var d artifactDoc
		if err := bson.Unmarshal(raw, &d); err != nil {
			return false, err
		}
		docs = append(docs, d)
		return true, nil
	})
	if !errors.Is(err, errors.ErrUnsupported) {
		return docs, err
	}
	if after != "" {
		f = append(f, bson.E{Key: "_id", Value: bson.D{{Key: "$gt", Value: after}}})
	}
	cur, err := s.artifactsColl().Find(ctx, f, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, err
	}
	docs = nil
	if err := cur.All(ctx, &docs); err != nil {
		return nil, err
	}
	return docs, nil
}

// removeJobArtifacts removes everything stored about job jobID besides its
// record: its artifacts (records; their blobs after the answer) and its
// scenario exports (with an rm.export.deleted event each; their zips after
// the answer). It is idempotent, so a retried DELETE /jobs/{id} finishes
// what a failed one started. An upload that completes after it has run
// notices the job is gone and removes itself.
func (s *Server) removeJobArtifacts(ctx context.Context, jobID string) error {
	docs, err := s.jobArtifacts(ctx, jobID)
	if err != nil {
		return err
	}
	for _, d := range docs {
		if err := s.removeArtifact(ctx, d); err != nil {
			return err
		}
	}
	ids, err := s.exportIDsOfJob(ctx, jobID)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := s.removeExport(ctx, id, ""); err != nil {
			return err
		}
	}
	return nil
}

// documentUploads adds the two upload operations to the OpenAPI document.
// Their {path} parameter is the rest of the URL and may contain '/'.
func (s *Server) documentUploads() {
	oapi := s.API.OpenAPI()
	reg := oapi.Components.Schemas
	artifactSchema := reg.Schema(reflect.TypeFor[Artifact](), true, "")
	// Errors look like every other operation's; borrow the list's.
	errResp := func(status int) *huma.Response {
		if item := oapi.Paths[BasePath+"/jobs/{id}/artifacts"]; item != nil && item.Get != nil {
			if r, ok := item.Get.Responses["default"]; ok {
				return &huma.Response{Description: http.StatusText(status), Content: r.Content}
			}
		}
		return &huma.Response{Description: http.StatusText(status)}
	}
	ok := func(desc string) *huma.Response {
		return &huma.Response{Description: desc,
			Headers: map[string]*huma.Param{"ETag": {Description: `"<sha256>" of the stored file`, Schema: &huma.Schema{Type: "string"}}},
			Content: map[string]*huma.MediaType{"application/json": {Schema: artifactSchema}}}
	}
	pathParam := func(name, desc string) *huma.Param {
		return &huma.Param{Name: name, In: "path", Required: true, Description: desc, Schema: &huma.Schema{Type: "string"}}
	}
	body := &huma.RequestBody{Required: true, Description: "the file's bytes, streamed; at most the upload limit (default 1 GiB)",
		Content: map[string]*huma.MediaType{"application/octet-stream": {Schema: &huma.Schema{Type: "string", Format: "binary"}}}}
	responses := func() map[string]*huma.Response {
		return map[string]*huma.Response{
			"200": ok("replaced the previous upload of the same file"), "201": ok("stored"),
			"400": errResp(http.StatusBadRequest), "404": errResp(http.StatusNotFound),
			"413": errResp(http.StatusRequestEntityTooLarge), "422": errResp(http.StatusUnprocessableEntity),
		}
	}
	digestParam := &huma.Param{Name: headerContentDigest, In: "header", Schema: &huma.Schema{Type: "string"},
		Description: "the body's digest (RFC 9530), e.g. sha-256=:<base64>:; sha-256 and sha-512 are checked against the bytes received, " +
			"and a mismatch is a 400 that stores nothing. A header naming neither algorithm is a 400 too."}
	pathDoc := "the file's path, relative, '/'-separated (may contain '/'); no empty, '.' or '..' segments, no control characters, at most " +
		strconv.Itoa(maxArtifactPath) + " bytes"
	oapi.AddOperation(&huma.Operation{
		OperationID: "put-scenario-artifact", Method: http.MethodPut, Path: BasePath + "/jobs/{id}/artifacts/scenarios/{sample_id}/{path}",
		Summary: "Upload a concrete scenario file of one sample", Tags: []string{"Artifacts"},
		Description: "A re-upload of the same sample and path replaces the file.",
		Parameters:  []*huma.Param{pathParam("id", "the job's id"), pathParam("sample_id", "the sample (a name)"), pathParam("path", pathDoc), digestParam},
		RequestBody: body, Responses: responses(),
	})
	oapi.AddOperation(&huma.Operation{
		OperationID: "put-asset-artifact", Method: http.MethodPut, Path: BasePath + "/jobs/{id}/artifacts/assets/{path}",
		Summary: "Upload an asset file", Tags: []string{"Artifacts"},
		Description: "With declaration, an asset of that declaration; without, common asset data. A re-upload of the same declaration and path replaces the file.",
		Parameters: []*huma.Param{pathParam("id", "the job's id"), pathParam("path", pathDoc),
			{Name: "declaration", In: "query", Description: "the asset declaration (a name); absent for common asset data", Schema: &huma.Schema{Type: "string", MaxLength: ptr(63), Pattern: NamePattern}},
			digestParam},
		RequestBody: body, Responses: responses(),
	})
}

func ptr[T any](v T) *T { return &v }
