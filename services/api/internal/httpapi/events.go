package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/danielgtaylor/huma/v2"
	"github.com/nats-io/nats.go/jetstream"
)

// sseKeepAlive is how often an idle event stream sends a comment, so proxies
// and clients can tell a quiet stream from a dead one.
const sseKeepAlive = 15 * time.Second

type eventsInput struct {
	JobID       string `query:"job_id" maxLength:"63" doc:"only events about this job"`
	QueueID     string `query:"queue_id" maxLength:"63" doc:"only events about resources on this queue (id or name; a deleted queue's id still selects its events)"`
	Type        string `query:"type" maxLength:"1024" doc:"only these CloudEvent types, comma-separated, e.g. rm.job.admitted,rm.job.running"`
	LastEventID string `header:"Last-Event-ID" maxLength:"20" doc:"resume after this stream sequence; 0 replays every stored event; absent: only new events"`
}

var (
	subjectToken = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	eventType    = regexp.MustCompile(`^rm\.[a-z-]+\.[a-z-]+$`)
)

func (s *Server) registerEvents() {
	huma.Register(s.API, huma.Operation{
		OperationID: "stream-events", Method: http.MethodGet, Path: BasePath + "/events",
		Summary: "Stream events (Server-Sent Events)", Tags: []string{"Events"},
		Description: "Each message has `id` (the stream sequence), `event` (the CloudEvent type) and `data` " +
			"(the CloudEvent in structured-mode JSON, its data the resource as the API returns it). " +
			"Reconnecting with `Last-Event-ID` resumes without losing or repeating events; " +
			"a `Last-Event-ID` beyond the last event of the stream answers 416 (the id did not come from this stream).",
		Responses: map[string]*huma.Response{
			"200": {Description: "an endless stream of events", Content: map[string]*huma.MediaType{
				"text/event-stream": {Schema: &huma.Schema{Type: "string"}},
			}},
		},
		Errors: []int{http.StatusRequestedRangeNotSatisfiable, http.StatusUnprocessableEntity, http.StatusServiceUnavailable},
	}, s.streamEvents)
}

// checkResumePoint answers 416 when a client resumes after an event the
// stream has not stored yet: the id cannot have come from this stream, and
// waiting for it would hide that the client is talking to another one.
func (s *Server) checkResumePoint(ctx context.Context, after uint64) error {
	st, err := s.opts.JS.Stream(ctx, events.StreamName)
	if err != nil {
		return fmt.Errorf("look up the event stream: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("look up the event stream: %w", err)
	}
	if last := info.State.LastSeq; after > last {
		return problem.New(http.StatusRequestedRangeNotSatisfiable,
			fmt.Sprintf("Last-Event-ID %d is beyond the last event of the stream (%d)", after, last),
			problem.Field("Last-Event-ID", "beyond the last event (%d); reconnect without it, or with 0 to replay every stored event", last))
	}
	return nil
}

// streamFilter turns the query into subject filters and a type set.
func (s *Server) streamFilter(ctx context.Context, in *eventsInput) (subjects []string, types map[string]bool, err error) {
	var errs []*problem.FieldError
	if in.JobID != "" && (!subjectToken.MatchString(in.JobID) || !strings.HasPrefix(in.JobID, "job-")) {
		// Else a mistyped id would stream nothing, forever.
		errs = append(errs, problem.Field("job_id", "not a job id (job-…)"))
	}
	queue := in.QueueID
	if queue != "" {
		if !subjectToken.MatchString(strings.ReplaceAll(queue, ".", "_")) {
			errs = append(errs, problem.Field("queue_id", "not a queue id or name"))
		} else if id, err := s.filterQueue(ctx, "queue_id", queue); err != nil {
			var fe *problem.FieldError
			if !asField(err, &fe) {
				return nil, nil, err
			}
			errs = append(errs, fe)
		} else {
			queue = id
		}
	}
	kinds := map[string]bool{}
	if in.Type != "" {
		types = map[string]bool{}
		for _, t := range strings.Split(in.Type, ",") {
			t = strings.TrimSpace(t)
			if !eventType.MatchString(t) {
				errs = append(errs, problem.Field("type", "%q is not an event type (rm.<kind>.<action>)", t))
				continue
			}
			types[t] = true
			kinds[events.KindOf(t)] = true
		}
	}
	if in.LastEventID != "" {
		if _, err := strconv.ParseUint(in.LastEventID, 10, 64); err != nil {
			errs = append(errs, problem.Field("Last-Event-ID", "must be a stream sequence number"))
		}
	}
	if len(errs) > 0 {
		return nil, nil, problem.Invalid(errs...)
	}
	kindList := []string{""}
	if len(kinds) > 0 {
		kindList = kindList[:0]
		for k := range kinds {
			kindList = append(kindList, k)
		}
	}
	if in.JobID != "" {
		kindList = []string{events.KindJob}
	}
	for _, k := range kindList {
		subjects = append(subjects, events.FilterSubject(k, queue, in.JobID))
	}
	return subjects, types, nil
}

func (s *Server) streamEvents(ctx context.Context, in *eventsInput) (*huma.StreamResponse, error) {
	if s.opts.JS == nil {
		return nil, problem.New(http.StatusServiceUnavailable, "the event stream is not connected")
	}
	subjects, types, err := s.streamFilter(ctx, in)
	if err != nil {
		return nil, err
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverNewPolicy}
	if in.LastEventID != "" {
		after, _ := strconv.ParseUint(in.LastEventID, 10, 64)
		if err := s.checkResumePoint(ctx, after); err != nil {
			return nil, err
		}
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, after+1
	}
	answer := func(hctx huma.Context) {
		hctx.SetHeader("Content-Type", "text/event-stream")
		hctx.SetHeader("Cache-Control", "no-cache")
		hctx.SetHeader("X-Accel-Buffering", "no")
		hctx.SetStatus(http.StatusOK)
	}
	if isHEAD(ctx) {
		return &huma.StreamResponse{Body: answer}, nil // the headers are the answer: no consumer
	}
	cons, err := s.opts.JS.OrderedConsumer(ctx, events.StreamName, cfg)
	if err != nil {
		return nil, fmt.Errorf("open event stream: %w", err)
	}
	return &huma.StreamResponse{Body: func(hctx huma.Context) {
		answer(hctx)
		w := hctx.BodyWriter()
		flush := func() {
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
		}
		flush()
		s.pump(hctx.Context(), cons, types, s.newEventFilter(ctx), w, flush)
	}}, nil
}

// pump copies events to the client until it goes away.
func (s *Server) pump(ctx context.Context, cons jetstream.Consumer, types map[string]bool, may *eventFilter, w interface{ Write([]byte) (int, error) }, flush func()) {
	it, err := cons.Messages()
	if err != nil {
		s.opts.Logger.Warn("event stream", "err", err)
		return
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	msgs := make(chan jetstream.Msg)
	go func() {
		defer close(msgs)
		for {
			m, err := it.Next()
			if err != nil {
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	tick := time.NewTicker(sseKeepAlive)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if _, err := w.Write([]byte(": keep-alive\n\n")); err != nil {
				return
			}
			flush()
		case m, ok := <-msgs:
			if !ok {
				return
			}
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			e, err := events.Decode(m.Headers(), m.Data())
			if err != nil || (types != nil && !types[e.Type]) || !may.allows(ctx, e) {
				continue
			}
			data, err := e.StructuredJSON()
			if err != nil {
				continue
			}
			if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", md.Sequence.Stream, e.Type, data); err != nil {
				return
			}
			flush()
		}
	}
}
