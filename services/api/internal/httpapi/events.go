package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/api/internal/auth"
	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/danielgtaylor/huma/v2"
	"github.com/nats-io/nats.go/jetstream"
)

// sseKeepAlive is how often an idle event stream sends a comment, so proxies
// and clients can tell a quiet stream from a dead one.
const sseKeepAlive = 15 * time.Second

// sseWriteTimeout is how long the client may take to receive what the
// stream writes at once. A reader that stops reading fills the socket's
// buffers and blocks its writer: without a deadline it held its connection
// and goroutine for good, even after the hub had cut it off for falling
// behind, and kept a shutdown waiting. A variable so that a test can shorten it.
var sseWriteTimeout = time.Minute

// sseTokenExpired names the message (no id, no data, so no event) that ends
// a stream once the token it was opened with is no longer accepted: the
// client reconnects with Last-Event-ID and a new token.
const sseTokenExpired = "token-expired"

// errTokenExpired is the cause of a stream's end at its token's expiry.
var errTokenExpired = errors.New("the token expired")

// maxStreamsPerCaller bounds the event streams one caller (a token's
// subject) holds open at once, while auth is on. A stream costs the API a
// connection, a goroutine and a reader of the hub (about 50 KB): without a
// bound, any token with a role could open streams until the process ran
// out of file descriptors, and every other client was refused. A web view
// tab and each watch (avxrm watch, an SDK's) hold one.
const maxStreamsPerCaller = 64

// callerStreams counts the open event streams of each caller. The zero
// value is ready.
type callerStreams struct {
	mu   sync.Mutex
	open map[string]int // by subject
}

// take counts a new stream of subject; false, counting nothing, when it
// holds maxStreamsPerCaller already.
func (c *callerStreams) take(subject string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[subject] >= maxStreamsPerCaller {
		return false
	}
	if c.open == nil {
		c.open = map[string]int{}
	}
	c.open[subject]++
	return true
}

// release uncounts a stream that take counted.
func (c *callerStreams) release(subject string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[subject]--; c.open[subject] <= 0 {
		delete(c.open, subject)
	}
}

type eventsInput struct {
	JobID       string `query:"job_id" maxLength:"63" doc:"only events about this job: its own and its scenario exports' (their data.job_id). Without Last-Event-ID an id no job has → 422 and, with auth on, a job the caller may not read → 403 (as GET /jobs/{id}); with it any job id is taken, so a deleted job's stored events stay replayable"`
	QueueID     string `query:"queue_id" maxLength:"63" doc:"only events about resources on this queue (id or name; a deleted queue's id still selects its events)"`
	Type        string `query:"type" maxLength:"1024" doc:"only these CloudEvent types, comma-separated, e.g. rm.job.admitted,rm.job.running; a type there is none of → 422"`
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
			"A stream opened without `Last-Event-ID` begins with a message of an `id` alone (no event): " +
			"the stream sequence it starts after, which a reconnect sends as `Last-Event-ID`. " +
			"Reconnecting with `Last-Event-ID` resumes without losing or repeating events; " +
			"with auth on, the stream ends when its token is no longer accepted (its `exp` plus the clock skew allowed), " +
			"with a message of `event: token-expired` alone: reconnect with `Last-Event-ID` and a new token; " +
			"a `Last-Event-ID` beyond the last event of the stream answers 416 (the id did not come from this stream).",
		Responses: map[string]*huma.Response{
			"200": {Description: "an endless stream of events", Content: map[string]*huma.MediaType{
				"text/event-stream": {Schema: &huma.Schema{Type: "string"}},
			}},
		},
		Errors: []int{http.StatusRequestedRangeNotSatisfiable, http.StatusUnprocessableEntity, http.StatusTooManyRequests, http.StatusServiceUnavailable},
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
	} else if in.JobID != "" && in.LastEventID == "" {
		if err := s.filterJob(ctx, in.JobID); err != nil {
			var fe *problem.FieldError
			if !asField(err, &fe) {
				return nil, nil, err
			}
			errs = append(errs, fe)
		}
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
			if !slices.Contains(events.Types, t) {
				// A filter no event can pass would stream nothing, forever.
				errs = append(errs, problem.Field("type", "%s", unknownType(t)))
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
		// The job's events and its exports' (which the pump tells by
		// their data.job_id), of the kinds types asks for.
		kindList = kindList[:0]
		for _, k := range []string{events.KindJob, events.KindExport} {
			if len(kinds) == 0 || kinds[k] {
				kindList = append(kindList, k)
			}
		}
		if len(kindList) == 0 {
			kindList = []string{events.KindJob} // types leaves nothing about a job: nothing comes
		}
	}
	for _, k := range kindList {
		id := in.JobID
		if k != events.KindJob {
			id = "" // an export's own id is in its subject, its job's in its data
		}
		subjects = append(subjects, events.FilterSubject(k, queue, id))
	}
	return subjects, types, nil
}

// filterJob refuses a job_id that no job has, as filterQueue refuses a
// queue name: a mistyped id would stream nothing, forever. A resume
// (Last-Event-ID) is not asked about, so a deleted job's stored events stay
// replayable and a stream whose job is deleted meanwhile reconnects. A job
// the caller may not read is refused as GET /jobs/{id} refuses it (403
// naming the access list), so the stream tells no more than that does.
func (s *Server) filterJob(ctx context.Context, id string) error {
	j, err := s.jobAuth(ctx, id)
	if err != nil {
		return err
	}
	if j == nil {
		return problem.Field("job_id", "no job %q; a deleted job's stored events can still be replayed with Last-Event-ID (0 replays every stored event)", id)
	}
	refusal, err := s.readRefusalOf(ctx, auth.From(ctx), j.Owner, j.QueueID)
	if err != nil {
		return err
	}
	if refusal != "" {
		return problem.New(http.StatusForbidden, refusal)
	}
	return nil
}

// unknownType says that t is no event type, and which there are: those of
// its kind, or the kinds.
func unknownType(t string) string {
	var same []string
	kinds := []string{}
	for _, typ := range events.Types {
		if k := events.KindOf(typ); k == events.KindOf(t) {
			same = append(same, typ)
		} else if !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
		}
	}
	if len(same) > 0 {
		return fmt.Sprintf("%q is no event type; those of a %s are %s", t, events.KindOf(t), strings.Join(same, ", "))
	}
	return fmt.Sprintf("%q is no event type: %q is no kind; the kinds are %s", t, events.KindOf(t), strings.Join(kinds, ", "))
}

func (s *Server) streamEvents(ctx context.Context, in *eventsInput) (*huma.StreamResponse, error) {
	if s.opts.JS == nil {
		return nil, problem.New(http.StatusServiceUnavailable, "the event stream is not connected")
	}
	subjects, types, err := s.streamFilter(ctx, in)
	if err != nil {
		return nil, err
	}
	var after *uint64
	if in.LastEventID != "" {
		a, _ := strconv.ParseUint(in.LastEventID, 10, 64)
		if err := s.checkResumePoint(ctx, a); err != nil {
			return nil, err
		}
		after = &a
	}
	answer := func(hctx huma.Context) {
		hctx.SetHeader("Content-Type", "text/event-stream")
		hctx.SetHeader("Cache-Control", "no-cache")
		hctx.SetHeader("X-Accel-Buffering", "no")
		hctx.SetStatus(http.StatusOK)
	}
	if isHEAD(ctx) {
		return &huma.StreamResponse{Body: answer}, nil // the headers are the answer: no reader
	}
	release := func() {}
	if p := auth.From(ctx); s.opts.Auth != nil && p != nil {
		if !s.callerStreams.take(p.Subject) {
			return nil, problem.New(http.StatusTooManyRequests, fmt.Sprintf("%s holds %d event streams open, as many as one caller may; "+
				"close one (each tab of the web view and each watch holds one) and retry", p.Username, maxStreamsPerCaller))
		}
		release = func() { s.callerStreams.release(p.Subject) }
	}
	sub, backlog, upTo, covered, err := s.hub.subscribe(ctx, subjects, after)
	if err != nil {
		release()
		return nil, streamUnreachable(err)
	}
	var replay jetstream.MessagesContext
	if !covered {
		if replay, err = s.replayFrom(ctx, subjects, *after, upTo); err != nil {
			s.hub.unsubscribe(sub)
			release()
			return nil, err
		}
	}
	return &huma.StreamResponse{Body: func(hctx huma.Context) {
		defer release()
		defer s.hub.unsubscribe(sub)
		answer(hctx)
		w := hctx.BodyWriter()
		pctx, stop := s.streamContext(hctx.Context())
		defer stop()
		if until := s.opts.Auth.Until(auth.From(ctx)); !until.IsZero() {
			// The roles the stream was opened with decide what it may
			// read: not beyond the token's life.
			var cancel context.CancelFunc
			pctx, cancel = context.WithDeadlineCause(pctx, until, errTokenExpired)
			defer cancel()
		}
		p := &eventPump{ctx: pctx, types: types, job: in.JobID, may: s.newEventFilter(ctx), w: w}
		if rw, ok := w.(http.ResponseWriter); ok {
			p.rc = http.NewResponseController(rw)
		}
		defer func() {
			if errors.Is(context.Cause(pctx), errTokenExpired) {
				p.tokenExpired()
			}
		}()
		if after != nil {
			// The hub may not have taken yet what the client has seen:
			// those come on its channel and are not sent again.
			p.floor = *after
		} else if !p.position(upTo) {
			return
		}
		p.flush()
		if replay != nil {
			caughtUp := p.replay(replay, upTo)
			replay.Stop()
			<-s.hub.catchUp
			if !caughtUp {
				return
			}
		}
		for _, e := range backlog {
			if !p.send(e) {
				return
			}
		}
		p.flush()
		p.live(sub)
	}}, nil
}

// replayFrom opens a consumer of the stored events matching subjects from
// after+1, for a reader resuming from before what the hub holds (its channel
// carries the events after upTo); nil when none of them is stored up to upTo,
// which the stream answers from its subject index without a consumer.
func (s *Server) replayFrom(ctx context.Context, subjects []string, after, upTo uint64) (jetstream.MessagesContext, error) {
	st, err := s.opts.JS.Stream(ctx, events.StreamName)
	if err != nil {
		return nil, streamUnreachable(err)
	}
	stored := false
	for _, subj := range subjects {
		m, err := st.GetMsg(ctx, after+1, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, streamUnreachable(err)
		}
		if m.Sequence <= upTo {
			stored = true
			break
		}
	}
	if !stored {
		return nil, nil
	}
	select {
	case s.hub.catchUp <- struct{}{}:
	default:
		return nil, problem.New(http.StatusServiceUnavailable, fmt.Sprintf("%d event streams are replaying stored events at the moment; retry shortly", catchUpMax))
	}
	cons, err := s.opts.JS.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: subjects,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: after + 1})
	var it jetstream.MessagesContext
	if err == nil {
		it, err = cons.Messages()
	}
	if err != nil {
		<-s.hub.catchUp
		return nil, streamUnreachable(err)
	}
	return it, nil
}

// streamUnreachable answers a failure to read the event stream as a 503:
// NATS is down or at a limit for now, which a client waits out and retries.
func streamUnreachable(err error) error {
	return problem.New(http.StatusServiceUnavailable, "the event stream cannot be read at the moment; retry shortly: "+err.Error())
}

// eventPump writes one reader's events as Server-Sent Events.
type eventPump struct {
	ctx   context.Context
	types map[string]bool
	may   *eventFilter
	w     io.Writer
	rc    *http.ResponseController // sets w's write deadline; nil if it has none
	job   string                   // only events about this job, if set
	floor uint64                   // the client has the events up to this sequence
}

// due gives the next write sseWriteTimeout: a client that takes longer
// has stopped reading, and its stream ends (it resumes with Last-Event-ID
// when it reads again).
func (p *eventPump) due() {
	if p.rc != nil {
		_ = p.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	}
}

func (p *eventPump) flush() {
	p.due()
	if f, ok := p.w.(http.Flusher); ok {
		f.Flush()
	}
}

// position tells a reader that came without Last-Event-ID where in the
// stream it starts: a message of an id alone, which sets the id a client
// resumes after (as EventSource does) and is no event. Without it a reader
// that lost its connection before its first event could only resume with new
// events, losing those of the gap.
func (p *eventPump) position(seq uint64) bool {
	p.due()
	_, err := fmt.Fprintf(p.w, "id: %d\n\n", seq)
	return err == nil
}

// send writes e unless the reader's types or access leave it out; false
// once the client is gone.
func (p *eventPump) send(e *hubEvent) bool {
	if e.seq <= p.floor || (p.types != nil && !p.types[e.ev.Type]) || (p.job != "" && e.job != p.job) || !p.may.allows(p.ctx, e.ev, e.job) {
		return true
	}
	p.due()
	_, err := fmt.Fprintf(p.w, "id: %d\nevent: %s\ndata: %s\n\n", e.seq, e.ev.Type, e.data)
	return err == nil
}

// tokenExpired ends the stream of a reader whose token is no longer
// accepted, after the last whole message, with a message that says so.
func (p *eventPump) tokenExpired() {
	p.due()
	_, _ = fmt.Fprintf(p.w, ": the token is no longer accepted; reconnect with Last-Event-ID and a new token\nevent: %s\n\n", sseTokenExpired)
	p.flush()
}

// replay writes the replayed events up to upTo, and says whether it got
// there (false: the client went away or the stream failed).
func (p *eventPump) replay(it jetstream.MessagesContext, upTo uint64) bool {
	stop := context.AfterFunc(p.ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			return false
		}
		md, err := m.Metadata()
		if err != nil {
			continue
		}
		if md.Sequence.Stream > upTo {
			return true // the hub's channel has it
		}
		if e, err := events.Decode(m.Headers(), m.Data()); err == nil {
			if data, err := e.StructuredJSON(); err == nil && !p.send(&hubEvent{seq: md.Sequence.Stream, ev: e, job: jobOf(e), data: data}) {
				return false
			}
		}
		if md.Sequence.Stream == upTo || md.NumPending == 0 {
			return true // nothing more stored up to upTo
		}
	}
}

// live writes the hub's events to the client until it goes away or the
// hub cuts it off (it then reconnects with Last-Event-ID).
func (p *eventPump) live(sub *hubSub) {
	tick := time.NewTicker(sseKeepAlive)
	defer tick.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-tick.C:
			p.due()
			if _, err := io.WriteString(p.w, ": keep-alive\n\n"); err != nil {
				return
			}
			p.flush()
		case e, ok := <-sub.ch:
			if !ok || !p.send(e) {
				return
			}
			// What is already waiting goes out with it, in one flush.
			for n := len(sub.ch); n > 0; n-- {
				if e, ok = <-sub.ch; !ok || !p.send(e) {
					return
				}
			}
			p.flush()
		}
	}
}
