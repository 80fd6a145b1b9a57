package launch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/nats-io/nats.go"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Instance logs are served over NATS request/reply, so that the API finds
// them whether the launcher runs in its process or elsewhere:
//
//	request  subject rm.launcher.logs.<job_id>.<role>.<index>
//	         body    {"offset": <bytes to skip>, "max": <bytes wanted>,
//	                  "tail": <lines>}
//	reply    headers Rm-Logs-Status (200, 404, 501, 503 or 500), Rm-Logs-Eof
//	                 ("true" when nothing follows), Rm-Logs-Error (the reason
//	                 when not 200), Rm-Logs-Offset (where the body starts);
//	         body: up to max bytes of the log from offset
//
// With tail (lines, instead of an offset) the answer starts at the last
// tail lines of the log, and Rm-Logs-Offset says where that is. A reader
// asks for consecutive chunks (by offset) until Rm-Logs-Eof is true; each
// answer is one message, so flow control is the reader's pace. The
// responders form the queue group rm-launcher.
const (
	LogsSubjectPrefix = "rm.launcher.logs"
	LogsQueueGroup    = "rm-launcher"
	HeaderLogsStatus  = "Rm-Logs-Status"
	HeaderLogsEOF     = "Rm-Logs-Eof"
	HeaderLogsError   = "Rm-Logs-Error"
	HeaderLogsOffset  = "Rm-Logs-Offset"
	// LogsMaxChunk bounds one answer, well under NATS's default 1 MiB payload.
	LogsMaxChunk = 256 << 10
)

type logsRequest struct {
	Offset int64 `json:"offset"`
	Max    int   `json:"max"`
	Tail   int   `json:"tail,omitempty"` // lines; instead of Offset
}

// serveLogs answers log requests until ctx ends or stop is called.
func (s *Service) serveLogs(ctx context.Context) (stop func(), err error) {
	nc := s.deps.JS.Conn()
	sub, err := nc.QueueSubscribe(LogsSubjectPrefix+".>", LogsQueueGroup, func(m *nats.Msg) {
		go s.answerLogs(ctx, m)
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", LogsSubjectPrefix, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

func (s *Service) answerLogs(ctx context.Context, m *nats.Msg) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	reply := nats.NewMsg(m.Reply)
	status, data, start, eof, err := s.readLogs(ctx, m)
	reply.Header.Set(HeaderLogsStatus, strconv.Itoa(status))
	reply.Header.Set(HeaderLogsEOF, strconv.FormatBool(eof))
	reply.Header.Set(HeaderLogsOffset, strconv.FormatInt(start, 10))
	if err != nil {
		reply.Header.Set(HeaderLogsError, err.Error())
		if status == 500 {
			s.log.Warn("serve logs", "subject", m.Subject, "err", err)
		}
	}
	reply.Data = data
	if m.Reply != "" {
		_ = m.RespondMsg(reply)
	}
}

// readLogs returns a chunk of the log m asks for, with an HTTP-like status
// and the offset the chunk starts at.
func (s *Service) readLogs(ctx context.Context, m *nats.Msg) (status int, data []byte, start int64, eof bool, err error) {
	toks := strings.Split(strings.TrimPrefix(m.Subject, LogsSubjectPrefix+"."), ".")
	if len(toks) != 3 {
		return 400, nil, 0, true, errors.New("subject is not rm.launcher.logs.<job>.<role>.<index>")
	}
	idx, err := strconv.Atoi(toks[2])
	if err != nil || idx < 0 {
		return 400, nil, 0, true, fmt.Errorf("index %q is not a number", toks[2])
	}
	ref := driver.Ref{JobID: toks[0], Role: driver.Role(toks[1]), Index: idx}
	var req logsRequest
	if len(m.Data) > 0 {
		if err := json.Unmarshal(m.Data, &req); err != nil || req.Offset < 0 || req.Tail < 0 {
			return 400, nil, 0, true, errors.New("body is not {\"offset\": n, \"max\": n, \"tail\": n}")
		}
	}
	if req.Max <= 0 || req.Max > LogsMaxChunk {
		req.Max = LogsMaxChunk
	}
	pd := s.pool.find(ref)
	if pd == nil {
		limit := s.pool.bounds.logs
		lctx, cancel := context.WithTimeoutCause(ctx, limit, errNoAnswer)
		pd, err = s.driverOfInstance(lctx, ref)
		// The store's client may give up at the deadline a moment before
		// the context says so: its error then wraps DeadlineExceeded.
		late := context.Cause(lctx) == errNoAnswer || errors.Is(err, context.DeadlineExceeded)
		cancel()
		if err != nil && late {
			// The API waits 10 s in all: the reason is ours, not its
			// "did not answer".
			return 503, nil, 0, true, fmt.Errorf("finding the runtime of %s took over %s (the store or the runtime does not answer): %w", ref, limit, err)
		}
		if err != nil {
			switch {
			case errors.Is(err, jobdoc.ErrNotFound):
				err = fmt.Errorf("job %q", ref.JobID) // the API adds "not found"
				if ref.Role == driver.RoleReplica {
					err = fmt.Errorf("logs of %s", ref)
				}
				return 404, nil, 0, true, err
			case permanent(err):
				// No such role, or its queue or plugin is gone: no log to
				// find.
				return 404, nil, 0, true, err
			}
			// The runtime cannot answer, or the store cannot be read: to
			// ask again (the API answers 503 with Retry-After). Before, a
			// store failure was 404, saying a log that may well exist
			// did not.
			return 503, nil, 0, true, err
		}
	}
	open := func() (io.ReadCloser, int, error) {
		rc, err := pd.logs(ctx, ref)
		switch {
		case errors.Is(err, driver.ErrNotFound):
			return nil, 404, fmt.Errorf("logs of %s", ref) // the API adds "not found"
		case errors.Is(err, driver.ErrNotSupported):
			return nil, 501, fmt.Errorf("the %s driver keeps no logs", pd.plugin.Type)
		case unavailable(err):
			return nil, 503, err
		case err != nil:
			return nil, 500, err
		}
		return rc, 200, nil
	}
	rc, status, err := open()
	if err != nil {
		return status, nil, 0, true, err
	}
	defer func() {
		if rc != nil { // nil: opening it again failed (below)
			rc.Close()
		}
	}()
	start = req.Offset
	if req.Tail > 0 {
		if start, err = tailStart(rc, req.Tail); err != nil {
			return 500, nil, 0, true, fmt.Errorf("find the last %d lines: %w", req.Tail, err)
		}
		if _, ok := rc.(io.Seeker); !ok { // read to its end: from the start again
			rc.Close()
			if rc, status, err = open(); err != nil {
				return status, nil, 0, true, err
			}
		}
	}
	if sk, ok := rc.(io.Seeker); ok {
		if _, err := sk.Seek(start, io.SeekStart); err != nil {
			return 500, nil, 0, true, fmt.Errorf("seek log: %w", err)
		}
	} else if _, err := io.CopyN(io.Discard, rc, start); err != nil && !errors.Is(err, io.EOF) {
		return 500, nil, 0, true, fmt.Errorf("skip to offset: %w", err)
	}
	buf, err := io.ReadAll(io.LimitReader(rc, int64(req.Max)+1))
	if err != nil {
		return 500, nil, 0, true, fmt.Errorf("read log: %w", err)
	}
	if len(buf) > req.Max {
		return 200, buf[:req.Max], start, false, nil
	}
	return 200, buf, start, true, nil
}

// unavailable reports whether err is a runtime that cannot answer now
// but may soon: its driver being made (at the launcher's start, a try
// takes up to 10 s), or the runtime unreachable or not answering. The log
// request gets 503, which the API passes on with Retry-After.
func unavailable(err error) bool {
	var pending *tryUnderWay
	return errors.As(err, &pending) || errors.Is(err, driver.ErrUnavailable)
}

// tailBlock is how much of a seekable log tailStart reads at a time, from
// its end backwards.
const tailBlock = 64 << 10

// tailStart is the offset at which the last n lines of the log r begin (a
// last line without its newline counts as a line). A seekable log is read
// from its end backwards, as far as those lines go; any other is read to
// its end once.
func tailStart(r io.Reader, n int) (int64, error) {
	if rs, ok := r.(io.ReadSeeker); ok {
		return tailStartSeeking(rs, n)
	}
	// Forward: the starts of the last n lines, in a ring.
	starts := make([]int64, n)
	lines, pos, lineStart := 0, int64(0), true
	buf := make([]byte, 32<<10)
	for {
		k, err := r.Read(buf)
		for _, b := range buf[:k] {
			if lineStart {
				starts[lines%n] = pos
				lines++
			}
			lineStart = b == '\n'
			pos++
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	if lines <= n {
		return 0, nil
	}
	return starts[lines%n], nil
}

// tailStartSeeking is tailStart of a seekable log, read backwards.
func tailStartSeeking(rs io.ReadSeeker, n int) (int64, error) {
	size, err := rs.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, tailBlock)
	end, newlines := size, 0
	for end > 0 {
		from := max(0, end-tailBlock)
		if _, err := rs.Seek(from, io.SeekStart); err != nil {
			return 0, err
		}
		b := buf[:end-from]
		if _, err := io.ReadFull(rs, b); err != nil {
			return 0, err
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] != '\n' || from+int64(i) == size-1 { // the log's own last newline ends its last line
				continue
			}
			if newlines++; newlines == n {
				return from + int64(i) + 1, nil
			}
		}
		end = from
	}
	return 0, nil
}

// driverOfInstance finds the driver an instance runs (or ran) on from its
// job's queues, for instances no driver lists any more (logs outlive a
// cleanup in the local driver).
func (s *Service) driverOfInstance(ctx context.Context, ref driver.Ref) (*pooled, error) {
	if ref.Role == driver.RoleReplica {
		return s.driverOfReplica(ctx, ref)
	}
	j, err := s.record.Get(ctx, ref.JobID)
	if err != nil {
		return nil, err
	}
	q := j.QueueID
	switch ref.Role {
	case driver.RoleController:
		q = events.ControllerQueue
	case driver.RolePostController:
		q = events.PostControllerQueue
	case driver.RoleWorker:
	default:
		return nil, errPermanent{fmt.Errorf("role %q has no logs", ref.Role)}
	}
	return s.queueDriver(ctx, q)
}

// driverOfReplica finds the driver of a deployment's replica from its
// deployment's queue.
func (s *Service) driverOfReplica(ctx context.Context, ref driver.Ref) (*pooled, error) {
	dep, _, ok := splitSlot(ref.JobID)
	if !ok {
		return nil, fmt.Errorf("%q is not a replica slot: %w", ref.JobID, jobdoc.ErrNotFound)
	}
	var d struct {
		QueueID string `bson:"queue_id"`
	}
	err := s.deployments.FindOne(ctx, bson.D{{Key: "_id", Value: dep}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, fmt.Errorf("deployment %q: %w", dep, jobdoc.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return s.queueDriver(ctx, d.QueueID)
}
