package avxrm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm/api"
)

// Event is one message of the event stream.
type Event struct {
	// ID is the stream sequence; WatchOptions.After resumes after it.
	ID uint64
	// Type is the CloudEvent type, such as rm.job.running.
	Type       string
	CloudEvent CloudEvent
}

// CloudEvent is the structured-mode CloudEvent of a message: encoded as
// JSON again it is still a CloudEvent, with its specversion.
type CloudEvent struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject"` // the resource's id
	Time            time.Time `json:"time"`
	QueueID         string    `json:"queueid,omitempty"`
	DataContentType string    `json:"datacontenttype,omitempty"`
	// Data is the resource as the API returns it.
	Data json.RawMessage `json:"data"`
}

// Job decodes the data of a job event.
func (e Event) Job() (*api.Job, error) {
	var j api.Job
	if err := json.Unmarshal(e.CloudEvent.Data, &j); err != nil {
		return nil, fmt.Errorf("event %d (%s): %w", e.ID, e.Type, err)
	}
	return &j, nil
}

// WatchOptions selects the events of Watch; zero values select all new ones.
type WatchOptions struct {
	JobID   string
	QueueID string
	Types   []string // CloudEvent types, such as rm.job.failed
	// After resumes after this event id: 0 replays every stored event. Nil:
	// only the events from the first connection on; a reconnect before the
	// first event resumes from where the stream stood then, which the
	// server's first message says (a server that does not say it is
	// resumed from the reconnection).
	After *uint64
	// OnDisconnect, if set, is told of each lost connection before Watch
	// waits attempt's backoff and connects again. A first connection that
	// fails counts as one lost (OnConnect tells them apart).
	OnDisconnect func(err error, attempt int)
	// OnConnect, if set, is told of each connection the server took: it
	// answered the stream's request and events may come.
	OnConnect func()
}

// ErrMalformedEvent is the error of an event of the stream that cannot be
// read: its data is not a CloudEvent, its id not a stream sequence. Watch
// ends with it, as a reconnect would receive the same event again.
var ErrMalformedEvent = errors.New("malformed event")

// deadStream is how long a stream may be silent before Watch takes it for
// dead: the server sends a keep-alive comment every 15s.
const deadStream = 45 * time.Second

// Watch yields the events o selects, in stream order, until ctx ends or the
// caller stops. A lost connection is reopened with Last-Event-ID, after a
// backoff, so no event is lost or repeated; an answer of 400 or above other
// than 5xx ends the iteration with an *Error (a 416 means After is beyond the
// stream's end), and an event that cannot be read with ErrMalformedEvent
// (the events before it are yielded). A stream the server ends because its
// token expired is reopened at once with a token the TokenSource gives
// anew, without telling OnDisconnect: a token that cannot be renewed (a
// StaticToken) then ends the iteration with the server's 401.
func (c *Client) Watch(ctx context.Context, o WatchOptions) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		var last *uint64
		if o.After != nil {
			a := *o.After
			last = &a
		}
		for attempt := 0; ; {
			opened := time.Now()
			received, err := c.stream(ctx, o, last, func(e Event) bool {
				id := e.ID
				last = &id
				return yield(e, nil)
			}, func(at uint64) { last = &at })
			if received {
				attempt = 0
			}
			if errors.Is(err, errStop) || ctx.Err() != nil {
				return
			}
			if errors.Is(err, errTokenExpired) && time.Since(opened) >= time.Second {
				continue // nothing was lost: the token's life is over, not the connection
			}
			var pe *Error
			if errors.As(err, &pe) && pe.StatusCode < 500 || errors.Is(err, ErrMalformedEvent) {
				yield(Event{}, err)
				return
			}
			if err == nil {
				err = io.EOF // the server ended the stream
			}
			if o.OnDisconnect != nil {
				o.OnDisconnect(err, attempt)
			} else if c.onDisconnect != nil {
				c.onDisconnect(err, attempt)
			}
			if Sleep(ctx, c.backoff.Wait(attempt)) != nil {
				return
			}
			attempt++
		}
	}
}

var errStop = errors.New("stopped by the caller")

// errTokenExpired is the end of a stream that the server ended with a
// message of event token-expired alone: the token it was opened with is no
// longer accepted. A stream that ends so within a second of its opening is
// waited for as a lost connection is: a new token should not expire at once.
var errTokenExpired = errors.New("the server ended the stream: its token expired")

// stream reads one connection of the event stream; it reports whether any
// event came, and why it ended (errStop when yield said stop). A message of
// an id alone, which the server sends first to a reader without
// Last-Event-ID, is no event: position is told the id, where the stream
// stood when it took the reader.
func (c *Client) stream(ctx context.Context, o WatchOptions, after *uint64, yield func(Event) bool, position func(uint64)) (bool, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	p := &api.StreamEventsParams{}
	if o.JobID != "" {
		p.JobId = &o.JobID
	}
	if o.QueueID != "" {
		p.QueueId = &o.QueueID
	}
	if len(o.Types) > 0 {
		t := strings.Join(o.Types, ",")
		p.Type = &t
	}
	if after != nil {
		id := strconv.FormatUint(*after, 10)
		p.LastEventID = &id
	}
	resp, err := c.API.StreamEvents(ctx, p, func(_ context.Context, req *http.Request) error {
		req.Header.Set("Accept", "text/event-stream")
		return nil
	})
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return false, problemError(resp, raw)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "text/event-stream") {
		if err := notAPIAnswer(resp); err != nil {
			return false, err
		}
	}
	if o.OnConnect != nil {
		o.OnConnect()
	}
	watchdog := time.AfterFunc(deadStream, func() { cancel(fmt.Errorf("no keep-alive for %s", deadStream)) })
	defer watchdog.Stop()

	br := bufio.NewReaderSize(resp.Body, 64<<10)
	var (
		received bool
		e        Event
		id       string // the event's id line, "" if none
		data     strings.Builder
	)
	malformed := func(err error) error {
		return fmt.Errorf("%w (id %q) from %s: %v", ErrMalformedEvent, id, c.root, err)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil && !errors.Is(cause, context.Canceled) {
				return received, cause
			}
			return received, err
		}
		watchdog.Reset(deadStream)
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if data.Len() == 0 {
				if e.Type == "token-expired" {
					return received, errTokenExpired
				}
				if at, err := strconv.ParseUint(id, 10, 64); err == nil {
					position(at)
				}
				e, id = Event{}, ""
				continue
			}
			// Each event carries its stream sequence, which a reconnect
			// resumes after: without one, it would resume from the start.
			if e.ID, err = strconv.ParseUint(id, 10, 64); err != nil || e.ID == 0 {
				return received, malformed(errors.New("its id is not a stream sequence"))
			}
			if err := json.Unmarshal([]byte(data.String()), &e.CloudEvent); err != nil {
				return received, malformed(err)
			}
			if e.Type == "" {
				e.Type = e.CloudEvent.Type
			}
			received = true
			if !yield(e) {
				return received, errStop
			}
			e, id, data = Event{}, "", strings.Builder{}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id:"):
			id = strings.TrimSpace(line[3:])
		case strings.HasPrefix(line, "event:"):
			e.Type = strings.TrimSpace(line[6:])
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(line[5:], " "))
		}
	}
}

// JobFinal says whether a job's status is final.
func JobFinal(j *api.Job) bool {
	return j != nil && j.Status != nil && jobStatusFinal(string(*j.Status))
}

// jobStatusFinal says whether a job's status is final.
func jobStatusFinal(s string) bool { return s == "succeeded" || s == "failed" || s == "cancelled" }

// FollowJob yields the job now, then each newer state of it as the event
// stream reports it, and ends after a final one. It follows the job's
// events from the moment it reads the job, not from the stream's start
// (whose replay would read the job's whole history, holding one of the
// API's replay slots while it does): the API subscribes a reader before
// it answers, so reading the job again once each connection is open finds
// a state that came between (a reconnect after an event resumes with
// Last-Event-ID). It never polls.
func (c *Client) FollowJob(ctx context.Context, id string, o WatchOptions) iter.Seq2[*api.Job, error] {
	return func(yield func(*api.Job, error) bool) {
		j, err := c.GetJob(ctx, id)
		if err != nil {
			yield(nil, err)
			return
		}
		if !yield(j, nil) || JobFinal(j) {
			return
		}
		version := int64(0)
		if j.Version != nil {
			version = *j.Version
		}
		// newer yields nj if the caller has not seen it; false: stop.
		newer := func(nj *api.Job) bool {
			if nj.Version == nil || *nj.Version <= version {
				return true // a state the caller has seen already
			}
			version, j = *nj.Version, nj
			return yield(nj, nil) && !JobFinal(nj)
		}
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		var (
			done    bool // the caller stopped, or the job ended
			readErr error
		)
		onConnect := o.OnConnect
		o.JobID, o.After = id, nil
		o.OnConnect = func() {
			if onConnect != nil {
				onConnect()
			}
			nj, err := c.GetJob(wctx, id)
			switch {
			case err != nil && wctx.Err() == nil:
				readErr = fmt.Errorf("follow job %s: %w", id, err)
				stop()
			case err == nil && !newer(nj):
				done = true
				stop()
			}
		}
		for e, err := range c.Watch(wctx, o) {
			if err != nil {
				yield(nil, err)
				return
			}
			if e.Type == "rm.job.deleted" {
				yield(nil, &Error{StatusCode: http.StatusNotFound, Problem: api.Problem{
					Status: http.StatusNotFound, Title: "Not Found", Detail: ptr("job " + id + " was deleted")}})
				return
			}
			nj, err := e.Job()
			if err != nil {
				// Skipping it could skip the job's final state.
				yield(nil, fmt.Errorf("follow job %s: %w", id, err))
				return
			}
			if !newer(nj) {
				return
			}
		}
		switch {
		case done:
		case readErr != nil:
			yield(nil, readErr)
		case ctx.Err() != nil:
			yield(nil, ended(ctx, "job "+id, j.Status))
		}
	}
}

// ended is the error of a wait for what that ctx ended while its status
// (nil: unknown) was still not final: it says so, and errors.Is finds
// ctx's error (and its cause).
func ended[S ~string](ctx context.Context, what string, status *S) error {
	state := "not final"
	if status != nil {
		state = string(*status)
	}
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != err {
		return fmt.Errorf("%s is still %s: %w (%w)", what, state, err, cause)
	}
	return fmt.Errorf("%s is still %s: %w", what, state, err)
}

// WaitJob returns the job, as GetJob does, once its status is final (succeeded, failed or
// cancelled), driven by the event stream.
func (c *Client) WaitJob(ctx context.Context, id string) (*api.Job, error) {
	return c.WaitJobWatching(ctx, id, WatchOptions{})
}

// WaitJobWatching is WaitJob with the job's event stream watched with o:
// its OnConnect and OnDisconnect are told of the stream's connections (o's
// selection is the job's own).
func (c *Client) WaitJobWatching(ctx context.Context, id string, o WatchOptions) (*api.Job, error) {
	var last *api.Job
	for j, err := range c.FollowJob(ctx, id, o) {
		if err != nil {
			return last, err
		}
		last = j
	}
	if !JobFinal(last) {
		return last, fmt.Errorf("wait for job %s: %w", id, context.Cause(ctx))
	}
	// Events carry instance_counts, not instances: return the record as
	// GetJob does (the event's copy if the job is gone meanwhile).
	if j, err := c.GetJob(ctx, id); err == nil {
		return j, nil
	}
	return last, nil
}

// exportFinal says whether an export's status is final.
func exportFinal(x *api.ScenarioExport) bool {
	return x != nil && x.Status != nil && (*x.Status == "ready" || *x.Status == "failed")
}

// WaitExport returns the export once it is ready or failed, driven by the
// event stream: it reads the export, then follows the stream of the
// export's queue from that moment on, not from the stream's start (whose
// replay would read the whole history, and hold one of the API's replay
// slots while it does). The API subscribes a reader before it answers, so
// an end between the read and the stream's start is found by reading the
// export again once each connection is open (a reconnection before any
// event also starts from that moment). An export deleted meanwhile is
// ErrNotFound.
func (c *Client) WaitExport(ctx context.Context, id string) (*api.ScenarioExport, error) {
	x, err := c.GetExport(ctx, id)
	if err != nil || exportFinal(x) {
		return x, err
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		found   *api.ScenarioExport
		readErr error
	)
	o := WatchOptions{Types: []string{"rm.export.ready", "rm.export.failed", "rm.export.deleted"},
		OnConnect: func() {
			nx, err := c.GetExport(wctx, id)
			switch {
			case err != nil && wctx.Err() == nil:
				readErr = fmt.Errorf("wait for export %s: %w", id, err)
				stop()
			case exportFinal(nx):
				found = nx
				stop()
			case err == nil:
				x = nx
			}
		}}
	if x.QueueId != nil && *x.QueueId != "" {
		o.QueueID = *x.QueueId // the queue's id: its events, even if it is deleted meanwhile
	}
	for e, err := range c.Watch(wctx, o) {
		if err != nil {
			return x, fmt.Errorf("wait for export %s: %w", id, err)
		}
		if e.CloudEvent.Subject != id {
			continue
		}
		if e.Type == "rm.export.deleted" {
			return x, &Error{StatusCode: http.StatusNotFound, Problem: api.Problem{
				Status: http.StatusNotFound, Title: "Not Found", Detail: ptr("scenario export " + id + " was deleted")}}
		}
		var nx api.ScenarioExport
		if err := json.Unmarshal(e.CloudEvent.Data, &nx); err != nil {
			// Skipping it could skip the export's end.
			return x, fmt.Errorf("wait for export %s: event %d (%s): %w", id, e.ID, e.Type, err)
		}
		if exportFinal(&nx) {
			return &nx, nil
		}
	}
	switch {
	case found != nil:
		return found, nil
	case readErr != nil:
		return x, readErr
	}
	return x, ended(ctx, "export "+id, x.Status)
}

func ptr[T any](v T) *T { return &v }
