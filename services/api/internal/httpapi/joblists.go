package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/exportdoc"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/avxrm/rm/services/api/internal/store"
	"github.com/danielgtaylor/huma/v2"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Lists under a job: its events (from the stream) and its scenario exports.

// GET /jobs/{id}/events: the job's own events in stream order, like
// kubectl describe's event list, read from RM_EVENTS by the job's subject
// (rm.events.job.<queue_id>.<job_id>) one stored message at a time, so a
// page costs limit+1 message gets and leaves no consumer behind.

func (s *Server) registerJobEvents(tags []string) {
	op := s.op("list-job-events", http.MethodGet, BasePath+"/jobs/{id}/events", "List a job's events in order",
		tags, http.StatusOK, http.StatusBadRequest, http.StatusNotFound, http.StatusUnprocessableEntity, http.StatusServiceUnavailable)
	op.Description = "The events about the job that the stream RM_EVENTS still holds (it keeps them for its max age), oldest first, " +
		"paged: next_cursor is the stream sequence of the last item. Each item is the event as GET /events sends it, " +
		"its data the job as it was after the event (with instance_counts, without instances)."
	huma.Register(s.API, op, s.listJobEvents)
}

type listJobEventsInput struct {
	ID     string `path:"id" maxLength:"63" doc:"the job's id"`
	Limit  int    `query:"limit" minimum:"1" maximum:"1000" default:"50"`
	Cursor string `query:"cursor" maxLength:"128" doc:"next_cursor of the previous page"`
}

// JobEvent is one stored event about a job.
type JobEvent struct {
	Sequence uint64      `json:"sequence" doc:"the stream sequence, as the id of the same event on GET /events"`
	ID       string      `json:"id" doc:"the CloudEvent id"`
	Type     string      `json:"type" doc:"the CloudEvent type, e.g. rm.job.admitted"`
	Source   string      `json:"source" doc:"the service that made the change, e.g. /rm/scheduler"`
	Time     time.Time   `json:"time"`
	Data     *events.Job `json:"data" doc:"the job after the change, with instance_counts and no instances"`
}

// JobEventList is a page of a job's events.
type JobEventList struct {
	Items      []JobEvent `json:"items"`
	NextCursor string     `json:"next_cursor,omitempty"`
}

type jobEventListOutput struct {
	Body JobEventList
}

func (s *Server) listJobEvents(ctx context.Context, in *listJobEventsInput) (*jobEventListOutput, error) {
	after, err := eventCursor(in.Cursor)
	if err != nil {
		return nil, err
	}
	j, err := s.loadJob(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	if s.opts.JS == nil {
		return nil, problem.New(http.StatusServiceUnavailable, "the event stream is not connected")
	}
	st, err := s.opts.JS.Stream(ctx, events.StreamName)
	if err != nil {
		return nil, fmt.Errorf("look up the event stream: %w", err)
	}
	limit := in.Limit
	if limit == 0 {
		limit = 50
	}
	subject := events.Subject(events.KindJob, j.QueueID, j.ID)
	out := JobEventList{Items: []JobEvent{}}
	for seq := after + 1; ; {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read the events of job %s: %w", j.ID, err)
		}
		if len(out.Items) == limit {
			out.NextCursor = strconv.FormatUint(out.Items[limit-1].Sequence, 10)
			break
		}
		seq = m.Sequence + 1
		e, err := events.Decode(m.Header, m.Data)
		if err != nil {
			continue // not an event of this contract: GET /events skips it too
		}
		item := JobEvent{Sequence: m.Sequence, ID: e.ID, Type: e.Type, Source: e.Source, Time: e.Time}
		if err := json.Unmarshal(e.Data, &item.Data); err != nil {
			continue
		}
		out.Items = append(out.Items, item)
	}
	for _, it := range out.Items {
		normalizeJob(it.Data)
	}
	return &jobEventListOutput{Body: out}, nil
}

// eventCursor is the stream sequence a cursor of this list stands for;
// 0 for none. Anything else (a cursor of another list) is a 400.
func eventCursor(cursor string) (uint64, error) {
	if cursor == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(cursor, 10, 64)
	// No item has the last sequence: the page after it would start at
	// sequence 0, the stream's first event, again.
	if err != nil || n == 0 || n == math.MaxUint64 {
		return 0, problem.New(http.StatusBadRequest, fmt.Sprintf("cursor %q is not a next_cursor of this list", cursor),
			problem.Field("cursor", "not a next_cursor of this list; start again without cursor"))
	}
	return n, nil
}

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

// jobExportsPage is at most limit of job jobID's live exports after after,
// in _id order, and whether more follow: on the embedded store their _ids
// come from the Lookup's index of job_id and _id (the one a job's deletion
// reads them by), so a page reads its exports only; FerretDB answers the
// find by decoding every export. On MongoDB (or when the index's order is
// not the strings') the find goes to the store, whose index of job_id and
// _id serves it.
func (s *Server) jobExportsPage(ctx context.Context, jobID, after string, limit int) ([]*ScenarioExport, bool, error) {
	var items []*ScenarioExport
	r := &indexed.Reader{Coll: s.exportsColl(), Lookup: s.opts.Lookup}
	err := r.ScanWhere(ctx, ofJob(jobID), after, limit+1, []indexed.Cond{outbox.NotDeletedCond()}, func(raw bson.Raw) (bool, error) {
		x := new(ScenarioExport)
		if err := bson.Unmarshal(raw, x); err != nil {
			return false, fmt.Errorf("decode scenario export: %w", err)
		}
		items = append(items, x)
		return true, nil
	})
	if errors.Is(err, errors.ErrUnsupported) {
		return s.exportKind().List(ctx, bson.D{{Key: "job_id", Value: jobID}}, after, limit)
	}
	if err != nil {
		return nil, false, fmt.Errorf("list exports of %s: %w", jobID, err)
	}
	if len(items) > limit {
		return items[:limit], true, nil
	}
	return items, false, nil
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
	items, more, err := s.jobExportsPage(ctx, in.ID, in.Cursor, limit)
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
