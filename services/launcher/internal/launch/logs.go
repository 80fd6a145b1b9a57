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
//	         body    {"offset": <bytes to skip>, "max": <bytes wanted>}
//	reply    headers Rm-Logs-Status (200, 404, 501 or 500), Rm-Logs-Eof
//	                 ("true" when nothing follows), Rm-Logs-Error (the reason
//	                 when not 200); body: up to max bytes of the log from offset
//
// A reader asks for consecutive chunks until Rm-Logs-Eof is true; each
// answer is one message, so flow control is the reader's pace. The
// responders form the queue group rm-launcher.
const (
	LogsSubjectPrefix = "rm.launcher.logs"
	LogsQueueGroup    = "rm-launcher"
	HeaderLogsStatus  = "Rm-Logs-Status"
	HeaderLogsEOF     = "Rm-Logs-Eof"
	HeaderLogsError   = "Rm-Logs-Error"
	// LogsMaxChunk bounds one answer, well under NATS's default 1 MiB payload.
	LogsMaxChunk = 256 << 10
)

type logsRequest struct {
	Offset int64 `json:"offset"`
	Max    int   `json:"max"`
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
	status, data, eof, err := s.readLogs(ctx, m)
	reply.Header.Set(HeaderLogsStatus, strconv.Itoa(status))
	reply.Header.Set(HeaderLogsEOF, strconv.FormatBool(eof))
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

// readLogs returns a chunk of the log m asks for, with an HTTP-like status.
func (s *Service) readLogs(ctx context.Context, m *nats.Msg) (int, []byte, bool, error) {
	toks := strings.Split(strings.TrimPrefix(m.Subject, LogsSubjectPrefix+"."), ".")
	if len(toks) != 3 {
		return 400, nil, true, errors.New("subject is not rm.launcher.logs.<job>.<role>.<index>")
	}
	idx, err := strconv.Atoi(toks[2])
	if err != nil || idx < 0 {
		return 400, nil, true, fmt.Errorf("index %q is not a number", toks[2])
	}
	ref := driver.Ref{JobID: toks[0], Role: driver.Role(toks[1]), Index: idx}
	var req logsRequest
	if len(m.Data) > 0 {
		if err := json.Unmarshal(m.Data, &req); err != nil || req.Offset < 0 {
			return 400, nil, true, errors.New("body is not {\"offset\": n, \"max\": n}")
		}
	}
	if req.Max <= 0 || req.Max > LogsMaxChunk {
		req.Max = LogsMaxChunk
	}
	pd := s.pool.find(ref)
	if pd == nil {
		if pd, err = s.driverOfInstance(ctx, ref); err != nil {
			if errors.Is(err, jobdoc.ErrNotFound) {
				err = fmt.Errorf("job %q", ref.JobID) // the API adds "not found"
				if ref.Role == driver.RoleReplica {
					err = fmt.Errorf("logs of %s", ref)
				}
			}
			return 404, nil, true, err
		}
	}
	rc, err := pd.d.Logs(ctx, ref)
	switch {
	case errors.Is(err, driver.ErrNotFound):
		return 404, nil, true, fmt.Errorf("logs of %s", ref) // the API adds "not found"
	case errors.Is(err, driver.ErrNotSupported):
		return 501, nil, true, fmt.Errorf("the %s driver keeps no logs", pd.plugin.Type)
	case err != nil:
		return 500, nil, true, err
	}
	defer rc.Close()
	if sk, ok := rc.(io.Seeker); ok {
		if _, err := sk.Seek(req.Offset, io.SeekStart); err != nil {
			return 500, nil, true, fmt.Errorf("seek log: %w", err)
		}
	} else if _, err := io.CopyN(io.Discard, rc, req.Offset); err != nil && !errors.Is(err, io.EOF) {
		return 500, nil, true, fmt.Errorf("skip to offset: %w", err)
	}
	buf, err := io.ReadAll(io.LimitReader(rc, int64(req.Max)+1))
	if err != nil {
		return 500, nil, true, fmt.Errorf("read log: %w", err)
	}
	if len(buf) > req.Max {
		return 200, buf[:req.Max], false, nil
	}
	return 200, buf, true, nil
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
		return nil, fmt.Errorf("role %q has no logs", ref.Role)
	}
	queue, err := s.queue(ctx, q)
	if err != nil {
		return nil, err
	}
	return s.driverFor(ctx, queue)
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
	queue, err := s.queue(ctx, d.QueueID)
	if err != nil {
		return nil, err
	}
	return s.driverFor(ctx, queue)
}
