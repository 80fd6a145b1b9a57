package httpapi

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"

	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/danielgtaylor/huma/v2"
	"github.com/labstack/echo/v4"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Artifact downloads: GET on an upload's URL answers the stored bytes, for
// the web view's links and for people who want one file without building a
// scenario export. Like the uploads they are echo routes (the path of a file
// is the rest of the URL), documented by hand.

func (s *Server) registerArtifactDownloads() {
	s.Echo.GET(scenarioUploadRoute, s.getArtifact(kindScenario))
	s.Echo.GET(assetUploadRoute, s.getArtifact(kindAsset))
	s.documentDownloads()
}

// getArtifact streams a stored artifact: 200 with its bytes (Range and
// If-None-Match answered: serveContent), 404 for an unknown job or file.
func (s *Server) getArtifact(kind string) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		ctx := r.Context()
		ref, err := s.artifactOfJob(ctx, kind, r.URL)
		if err != nil {
			return err
		}
		var doc artifactDoc
		err = s.artifactsColl().FindOne(ctx, bson.D{{Key: "_id", Value: ref.key()}}).Decode(&doc)
		if errors.Is(err, mongo.ErrNoDocuments) {
			return fmt.Errorf("%s artifact %q of job %q: %w", kind, ref.Path, ref.JobID, problem.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("look up artifact %s: %w", ref.key(), err)
		}
		rd, err := s.artifactBlobs().Open(ctx, doc.FileID)
		if err != nil {
			return fmt.Errorf("open artifact %s: %w", ref.key(), err)
		}
		h := c.Response().Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("ETag", `"`+doc.SHA256+`"`)
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": path.Base(doc.Path)}))
		return serveContent(c, doc.CreatedAt, rd)
	}
}

// artifactOfJob reads the artifact an upload's or download's URL names, and
// checks that its job exists: 422 naming a bad part, 404 for an unknown job.
func (s *Server) artifactOfJob(ctx context.Context, kind string, u *url.URL) (artifactRef, error) {
	ref, errs := parseArtifactRef(kind, u)
	if len(errs) > 0 {
		return ref, problem.Invalid(errs...)
	}
	if ok, err := s.jobExists(ctx, ref.JobID); err != nil {
		return ref, err
	} else if !ok {
		return ref, jobNotFound(ref.JobID)
	}
	return ref, nil
}

// documentDownloads adds the two GET operations to the document.
func (s *Server) documentDownloads() {
	oapi := s.API.OpenAPI()
	put := func(p string) *huma.Operation {
		if item := oapi.Paths[p]; item != nil {
			return item.Put
		}
		return nil
	}
	for _, x := range []struct{ id, path, summary string }{
		{"get-scenario-artifact", BasePath + "/jobs/{id}/artifacts/scenarios/{sample_id}/{path}", "Download a concrete scenario file of one sample"},
		{"get-asset-artifact", BasePath + "/jobs/{id}/artifacts/assets/{path}", "Download an asset file"},
	} {
		up := put(x.path)
		if up == nil {
			panic("artifact download documented before its upload: " + x.path)
		}
		resp := map[string]*huma.Response{"200": {Description: "the file's bytes (Range requests are answered with 206)",
			Headers: map[string]*huma.Param{"ETag": {Description: `"<sha256>" of the stored file`, Schema: &huma.Schema{Type: "string"}}},
			Content: map[string]*huma.MediaType{"application/octet-stream": {Schema: &huma.Schema{Type: "string", Format: "binary"}}}}}
		for _, code := range []string{"400", "404", "422"} {
			resp[code] = up.Responses[code]
		}
		resp["416"] = &huma.Response{Description: unsatisfiableRange, Content: up.Responses["404"].Content}
		oapi.AddOperation(&huma.Operation{
			OperationID: x.id, Method: http.MethodGet, Path: x.path, Summary: x.summary, Tags: up.Tags,
			Description: "The stored bytes of an uploaded artifact, named as its upload was.",
			Parameters:  withoutHeaders(up.Parameters), Responses: resp,
		})
	}
}

// withoutHeaders is ps without the header parameters (an upload's
// Content-Digest, which a download does not take).
func withoutHeaders(ps []*huma.Param) []*huma.Param {
	return slices.DeleteFunc(slices.Clone(ps), func(p *huma.Param) bool { return p.In == "header" })
}
