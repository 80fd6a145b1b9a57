package avxrm

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm/api"
	"github.com/oapi-codegen/nullable"
)

// pages yields the items of fetch's pages of the list at path, following
// next_cursor, until the last page, an error (yielded once, then the
// iteration ends) or the caller stops.
func pages[T any](path string, fetch func(cursor *string) ([]T, *string, error)) iter.Seq2[T, error] {
	return items(pageSeq(path, fetch))
}

// items yields the items of each page of seq, then its error, if any.
func items[T any](seq iter.Seq2[[]T, error]) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for page, err := range seq {
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, it := range page {
				if !yield(it, nil) {
					return
				}
			}
		}
	}
}

// pageSeq yields fetch's pages of the list at path as pages does its
// items: each page as the server sent it (an empty one too), then an
// error, if any, alone. A cursor the server gave before is an error: its
// pages would repeat for ever.
func pageSeq[T any](path string, fetch func(cursor *string) ([]T, *string, error)) iter.Seq2[[]T, error] {
	return func(yield func([]T, error) bool) {
		var cursor *string
		seen := map[string]bool{}
		for {
			page, next, err := fetch(cursor)
			if err == nil && next != nil && seen[*next] {
				err = fmt.Errorf("list %s: the server answered the cursor %q again; stopped, as its pages would repeat", path, *next)
			}
			if len(page) > 0 || err == nil {
				if !yield(page, nil) {
					return
				}
			}
			if err != nil {
				yield(nil, err)
				return
			}
			if next == nil || *next == "" {
				return
			}
			seen[*next] = true
			cursor = next
		}
	}
}

// PathSegment is an id or a name as one segment of an API path, for Do:
// escaped, so that a '/', '?', '#' or space stays part of it, and "." and
// ".." too, which a URL would resolve to another path.
func PathSegment(idOrName string) string {
	if idOrName == "." || idOrName == ".." {
		return strings.ReplaceAll(idOrName, ".", "%2E")
	}
	return url.PathEscape(idOrName)
}

// at is the request editor that sends a generated client's request to path,
// its %s filled with id as one segment (PathSegment), and refuses an empty
// id (what names it) before anything is sent. The generated client escapes
// ids but then resolves "." and ".." (url.URL.Parse): GetJob("..") would
// ask for the API's root.
func (c *Client) at(path, what, id string) api.RequestEditorFn {
	if id == "" {
		return func(context.Context, *http.Request) error { return fmt.Errorf("%s: empty", what) }
	}
	return c.atPath(strings.Replace(path, "%s", PathSegment(id), 1))
}

// atPath is the request editor that sends a generated client's request to
// path, an API path whose segments are escaped already (PathSegment).
func (c *Client) atPath(path string) api.RequestEditorFn {
	return func(_ context.Context, req *http.Request) error {
		u, err := url.Parse(c.URL(path))
		if err != nil {
			return err
		}
		req.URL.Path, req.URL.RawPath = u.Path, u.RawPath
		return nil
	}
}

// JobFilter selects jobs; zero values select all.
type JobFilter struct {
	QueueID string
	Status  api.JobStatus
	Labels  []string // key=value, all must match
	Owner   string   // the owner's subject or username
	ArrayID string   // the jobs of this job array (arr-…)
}

// Jobs iterates over the jobs f selects, page by page.
func (c *Client) Jobs(ctx context.Context, f JobFilter) iter.Seq2[api.Job, error] {
	return pages("/jobs", func(cursor *string) ([]api.Job, *string, error) {
		limit := int64(c.pageSize)
		p := &api.ListJobsParams{Limit: &limit, Cursor: cursor}
		if f.QueueID != "" {
			p.QueueId = &f.QueueID
		}
		if f.Status != "" {
			s := api.ListJobsParamsStatus(f.Status)
			p.Status = &s
		}
		if len(f.Labels) > 0 {
			p.Label = &f.Labels
		}
		if f.Owner != "" {
			p.Owner = &f.Owner
		}
		if f.ArrayID != "" {
			p.ArrayId = &f.ArrayID
		}
		r, err := c.API.ListJobsWithResponse(ctx, p)
		l, err := result(err, func() (*http.Response, []byte, *api.JobList) { return r.HTTPResponse, r.Body, r.JSON200 })
		if err != nil {
			return nil, nil, err
		}
		items, _ := l.Items.Get() // absent or null: none
		return items, l.NextCursor, nil
	})
}

// Queues iterates over every queue.
func (c *Client) Queues(ctx context.Context) iter.Seq2[api.Queue, error] {
	return pages("/queues", func(cursor *string) ([]api.Queue, *string, error) {
		limit := int64(c.pageSize)
		r, err := c.API.ListQueuesWithResponse(ctx, &api.ListQueuesParams{Limit: &limit, Cursor: cursor})
		l, err := result(err, func() (*http.Response, []byte, *api.QueueList) { return r.HTTPResponse, r.Body, r.JSON200 })
		if err != nil {
			return nil, nil, err
		}
		return l.Items, l.NextCursor, nil
	})
}

// List iterates over the raw items of any list path, such as "/plugins" or
// "/jobs?status=running" (query adds to the path's own), for callers that want the JSON as the server
// sent it (the CLI's -o json).
func (c *Client) List(ctx context.Context, path string, query url.Values) iter.Seq2[json.RawMessage, error] {
	return items(c.ListPages(ctx, path, query))
}

// ListPages iterates over the list at path as List does, a page at a
// time: each page's raw items as the server sent them (an empty page
// too), then an error, if any, alone. A caller that shows a long list can
// show each page as it comes and hold no more than one.
func (c *Client) ListPages(ctx context.Context, path string, query url.Values) iter.Seq2[[]json.RawMessage, error] {
	path, own, _ := strings.Cut(path, "?")
	return pageSeq(path, func(cursor *string) ([]json.RawMessage, *string, error) {
		q, err := url.ParseQuery(own)
		if err != nil {
			return nil, nil, fmt.Errorf("list %s: its query %q: %w", path, own, err)
		}
		for k, v := range query {
			q[k] = append(q[k], v...)
		}
		q.Set("limit", strconv.Itoa(c.pageSize))
		if cursor != nil {
			q.Set("cursor", *cursor)
		}
		var page struct {
			Items      []json.RawMessage `json:"items"`
			NextCursor *string           `json:"next_cursor"`
		}
		if _, err := c.Do(ctx, http.MethodGet, path+"?"+q.Encode(), nil, &page); err != nil {
			return nil, nil, err
		}
		return page.Items, page.NextCursor, nil
	})
}

// CreateQueue creates a queue.
func (c *Client) CreateQueue(ctx context.Context, q api.QueueBody) (*api.Queue, error) {
	r, err := c.API.CreateQueueWithResponse(ctx, &api.CreateQueueParams{}, q)
	return result(err, func() (*http.Response, []byte, *api.Queue) { return r.HTTPResponse, r.Body, r.JSON201 })
}

// GetQueue returns a queue by id or name.
func (c *Client) GetQueue(ctx context.Context, idOrName string) (*api.Queue, error) {
	r, err := c.API.GetQueueWithResponse(ctx, idOrName, c.at("/queues/%s", "queue", idOrName))
	return result(err, func() (*http.Response, []byte, *api.Queue) { return r.HTTPResponse, r.Body, r.JSON200 })
}

// Whoami is who the client's token stands for, its access and when it
// ends, and on which queues it may read jobs and submit (GET /whoami);
// with queue (an id or a name) only that queue, ErrNotFound if there is
// none. Any valid token may ask, a job's RM_JOB_TOKEN too.
func (c *Client) Whoami(ctx context.Context, queue string) (*api.Whoami, error) {
	var params api.GetWhoamiParams
	if queue != "" {
		params.Queue = &queue
	}
	r, err := c.API.GetWhoamiWithResponse(ctx, &params)
	return result(err, func() (*http.Response, []byte, *api.Whoami) { return r.HTTPResponse, r.Body, r.JSON200 })
}

// CreateApplication registers an application.
func (c *Client) CreateApplication(ctx context.Context, a api.ApplicationBody) (*api.Application, error) {
	r, err := c.API.CreateApplicationWithResponse(ctx, &api.CreateApplicationParams{}, a)
	return result(err, func() (*http.Response, []byte, *api.Application) { return r.HTTPResponse, r.Body, r.JSON201 })
}

// SubmitJob submits a job. The request carries an Idempotency-Key, so a
// retry after a lost connection does not submit it twice.
func (c *Client) SubmitJob(ctx context.Context, j api.JobBody) (*api.Job, error) {
	r, err := c.API.SubmitJobWithResponse(ctx, &api.SubmitJobParams{}, j)
	return result(err, func() (*http.Response, []byte, *api.Job) { return r.HTTPResponse, r.Body, r.JSON201 })
}

// CreateJobArray submits count jobs of one body, at most MaxParallel of
// them admitted at once (POST /job-arrays, with an Idempotency-Key).
func (c *Client) CreateJobArray(ctx context.Context, a api.JobArrayBody) (*api.JobArray, error) {
	// The API answers once every job is stored: about 0.7 ms a job on the
	// embedded store (docs/benchmarks.md, "Job arrays": 6.7 s for 10,000), so
	// some 70 s for 100,000.
	ctx = withHeaderTimeout(ctx, ResponseHeaderTimeout+time.Duration(a.Count)*arrayJobAnswerTime)
	r, err := c.API.CreateJobArrayWithResponse(ctx, &api.CreateJobArrayParams{}, a)
	return result(err, func() (*http.Response, []byte, *api.JobArray) { return r.HTTPResponse, r.Body, r.JSON201 })
}

// GetJobArray returns a job array with how many of its jobs have each status.
func (c *Client) GetJobArray(ctx context.Context, id string) (*api.JobArray, error) {
	r, err := c.API.GetJobArrayWithResponse(ctx, id, c.at("/job-arrays/%s", "job array id", id))
	return result(err, func() (*http.Response, []byte, *api.JobArray) { return r.HTTPResponse, r.Body, r.JSON200 })
}

// GetJob returns a job.
func (c *Client) GetJob(ctx context.Context, id string) (*api.Job, error) {
	r, err := c.API.GetJobWithResponse(ctx, id, c.at("/jobs/%s", "job id", id))
	return result(err, func() (*http.Response, []byte, *api.Job) { return r.HTTPResponse, r.Body, r.JSON200 })
}

// CancelJob asks for a job to be cancelled; 409 (ErrConflict) when it has ended.
func (c *Client) CancelJob(ctx context.Context, id string) (*api.Job, error) {
	r, err := c.API.CancelJobWithResponse(ctx, id, c.at("/jobs/%s/cancel", "job id", id))
	return result(err, func() (*http.Response, []byte, *api.Job) { return r.HTTPResponse, r.Body, r.JSON202 })
}

// Artifacts iterates over a job's artifacts.
func (c *Client) Artifacts(ctx context.Context, jobID string) iter.Seq2[api.Artifact, error] {
	return pages("/jobs/"+PathSegment(jobID)+"/artifacts", func(cursor *string) ([]api.Artifact, *string, error) {
		limit := int64(c.pageSize)
		r, err := c.API.ListArtifactsWithResponse(ctx, jobID, &api.ListArtifactsParams{Limit: &limit, Cursor: cursor},
			c.at("/jobs/%s/artifacts", "job id", jobID))
		l, err := result(err, func() (*http.Response, []byte, *api.ArtifactList) { return r.HTTPResponse, r.Body, r.JSON200 })
		if err != nil {
			return nil, nil, err
		}
		return l.Items, l.NextCursor, nil
	})
}

// CreateExport asks for a zip of a job's scenario files: the concrete
// scenario files of the samples req.Samples names (none when it names
// none) and the job's asset data (req.FilterByAssetDeclaration picks the
// declarations; none: the common asset data), as req.Include picks the
// kinds (none: both). WaitExport waits until it is ready.
func (c *Client) CreateExport(ctx context.Context, jobID string, req api.ExportRequest) (*api.ScenarioExport, error) {
	r, err := c.API.CreateScenarioExportWithResponse(ctx, jobID, &api.CreateScenarioExportParams{}, req,
		c.at("/jobs/%s/scenario-exports", "job id", jobID))
	return result(err, func() (*http.Response, []byte, *api.ScenarioExport) { return r.HTTPResponse, r.Body, r.JSON202 })
}

// GetExport returns a scenario export.
func (c *Client) GetExport(ctx context.Context, id string) (*api.ScenarioExport, error) {
	r, err := c.API.GetScenarioExportWithResponse(ctx, id, c.at("/scenario-exports/%s", "export id", id))
	return result(err, func() (*http.Response, []byte, *api.ScenarioExport) { return r.HTTPResponse, r.Body, r.JSON200 })
}

// Exports iterates over a job's scenario exports, oldest first.
func (c *Client) Exports(ctx context.Context, jobID string) iter.Seq2[api.ScenarioExport, error] {
	return pages("/jobs/"+PathSegment(jobID)+"/scenario-exports", func(cursor *string) ([]api.ScenarioExport, *string, error) {
		limit := int64(c.pageSize)
		r, err := c.API.ListJobScenarioExportsWithResponse(ctx, jobID, &api.ListJobScenarioExportsParams{Limit: &limit, Cursor: cursor},
			c.at("/jobs/%s/scenario-exports", "job id", jobID))
		l, err := result(err, func() (*http.Response, []byte, *api.ScenarioExportList) { return r.HTTPResponse, r.Body, r.JSON200 })
		if err != nil {
			return nil, nil, err
		}
		return Values(l.Items), l.NextCursor, nil
	})
}

// DeleteExport removes a scenario export and its zip before it expires, at
// any status (a build under way is dropped); ErrNotFound if there is none.
func (c *Client) DeleteExport(ctx context.Context, id string) error {
	r, err := c.API.DeleteScenarioExportWithResponse(ctx, id, &api.DeleteScenarioExportParams{}, c.at("/scenario-exports/%s", "export id", id))
	if err != nil {
		return err
	}
	switch resp := r.HTTPResponse; {
	case resp.StatusCode >= 400:
		return problemError(resp, r.Body)
	case resp.StatusCode != http.StatusNoContent:
		if err := notAPIAnswer(resp); err != nil {
			return err
		}
		return fmt.Errorf("%s %s: unexpected answer %d", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode)
	}
	return nil
}

// Values is the list a nullable field of the API's types holds (the
// generated types say nullable.Nullable so that a merge patch can send
// null): nil when it is absent or null.
func Values[T any](n nullable.Nullable[[]T]) []T {
	v, _ := n.Get()
	return v
}
